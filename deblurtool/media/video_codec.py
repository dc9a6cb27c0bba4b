"""The video encoder's settings: which encoder (the container's usual one unless asked), its pixel format
(the input's where possible) and its options (constant quality), each choice that loses something said in a
``note:`` rather than done silently.

An input with an alpha channel keeps it: without ``--codec``, the input's own encoder where it keeps alpha
in the output's container, else the container's usual one if it does; where neither does, the job is refused
before any work, naming the encoders that would keep it. With ``--codec`` (or ``--pix-fmt``) that cannot, the
user chose: alpha is dropped with a note.
"""

from __future__ import annotations

import contextlib
import io

import av
import av.container
import av.error

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError
from deblurtool.media.colour import has_alpha
from deblurtool.media.stream_map import container_holds
from deblurtool.media.video_reader import VideoInfo

# Encoders that take a constant-quality ``crf`` option: (its largest value, our default).
_CRF = {
    "libx264": (51, 18),
    "libx264rgb": (51, 18),
    "libx265": (51, 18),
    "libvpx": (63, 24),
    "libvpx-vp9": (63, 24),
    "libsvtav1": (63, 24),
}

# Encoders without constant quality that take a fixed quantiser (``-q:v``): (the value, FFmpeg's lambda).
_QSCALE = {"mpeg4": 2, "mjpeg": 2, "msmpeg4": 2, "mpeg2video": 2, "mpeg1video": 2}
_QP2LAMBDA = 118

# The encoder used when none is asked for: by container, else the first the container can hold.
_USUAL_FOR = {"avi": "mpeg4", "webm": "libvpx-vp9"}
_USUAL = ("libx264", "libvpx-vp9", "libsvtav1", "ffv1")

# AVI stores the order of decoding only, at one frame rate; FFmpeg reads presentation times back from that,
# and for H.264 and HEVC it reads them back one frame late even without B-frames (measured with libx264,
# --bframes 0). Other encoders are fine there once they make no B-frames.
NO_REORDER_FORMATS = frozenset({"avi"})
# Encoders that code interlaced pictures as fields (interlaced DCT/ME flags): they stay interlaced.
INTERLACED_ENCODERS = frozenset({"libx264", "mpeg2video"})
_LATE_IN_AVI = frozenset({"h264", "hevc"})


def avi_refusal(codec: str) -> str | None:
    """Why ``codec`` cannot write an AVI that keeps every frame's time, or None."""
    with contextlib.suppress(av.error.FFmpegError, ValueError):
        if av.codec.Codec(codec, "w").canonical_name in _LATE_IN_AVI:
            return (
                f".avi files cannot keep the frame times of {codec} (players read them back a frame late); "
                "use .mkv, .mp4 or .mov, or --codec mpeg4, mjpeg or ffv1 for .avi"
            )
    return None


# Where an alpha plane survives, by codec: VP8/VP9 keep it only in Matroska/WebM (as BlockAdditional data);
# MP4 and AVI take the stream and drop the alpha silently. Other pairings that cannot work FFmpeg refuses.
_ALPHA_ONLY_IN = {"vp8": frozenset({"matroska", "webm"}), "vp9": frozenset({"matroska", "webm"})}
# Encoders that write alpha, named (where the container holds them) when an output cannot keep it.
_ALPHA_ENCODERS = ("libvpx-vp9", "ffv1", "prores_ks", "png", "qtrle", "utvideo")
# Encoders that list more formats with alpha than they write: libvpx encodes alpha as a second 4:2:0 plane.
_ALPHA_FORMATS_OF = {"libvpx-vp9": ("yuva420p",), "libvpx": ("yuva420p",)}
# Decoder name -> the encoder of the same codec, where they differ.
_ENCODER_OF = {
    "vp8": "libvpx",
    "vp9": "libvpx-vp9",
    "prores": "prores_ks",
    "h264": "libx264",
    "hevc": "libx265",
}


def keeps_alpha(codec: str, container: av.container.OutputContainer) -> bool:
    """Whether encoder ``codec`` can write an alpha channel that ``container``'s format keeps."""
    try:
        found = av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    if not _alpha_formats([f.name for f in found.video_formats or ()], codec):
        return False
    allowed = _ALPHA_ONLY_IN.get(found.canonical_name)
    return container_holds(container, codec) and (allowed is None or container.format.name in allowed)


def alpha_encoders(container: av.container.OutputContainer) -> list[str]:
    """The encoders of this FFmpeg that keep alpha in ``container``'s format."""
    return [name for name in _ALPHA_ENCODERS if keeps_alpha(name, container)]


def choose_codec(
    requested: str | None, container: av.container.OutputContainer, info: VideoInfo | None = None
) -> str:
    """``requested``, or the container's usual encoder: libx264; VP9 for WebM (which cannot hold H.264);
    MPEG-4 Part 2 for AVI (see ``avi_refusal``). For an ``info`` with alpha, the input's own encoder first
    where it keeps alpha in this container (see the module docstring)."""
    if requested is not None:
        return requested
    usual = _USUAL_FOR.get(container.format.name)
    if info is not None and info.alpha:
        own = _ENCODER_OF.get(info.codec_name, info.codec_name)
        for name in (own, usual or "libx264"):
            if keeps_alpha(name, container):
                return name
    for name in (usual, *_USUAL) if usual else _USUAL:
        if container_holds(container, name):
            with contextlib.suppress(av.error.FFmpegError, ValueError):
                av.codec.Codec(name, "w")
                return name
    return "libx264"  # no encoder fits: adding it gives the one-line refusal naming the container


def encoder_options(codec: str, encode: EncodeConfig, notes: list[str]) -> dict[str, str]:
    """The encoder's options for ``encode``: constant quality where the encoder has it (a ``--crf`` it does
    not have is ignored with a note, not silently)."""
    options: dict[str, str] = {}
    crf = _CRF.get(codec)
    if codec in _QSCALE:  # a fixed quantiser, as -q:v sets it: near-transparent at 2
        options.update(flags="+qscale", global_quality=str(_QSCALE[codec] * _QP2LAMBDA))
    if crf is None:
        if encode.crf is not None:
            notes.append(f"note: --crf {encode.crf} ignored: {codec} has no constant-quality setting")
        return options
    crf_max, default = crf
    value = default if encode.crf is None else encode.crf
    if value > crf_max:
        raise DeblurError(f"--crf for {codec} must be at most {crf_max}, got {value}")
    options["crf"] = str(value)
    if codec.startswith("libvpx"):
        options["b"] = "0"  # constant quality, not a bitrate cap
    if codec == "libx265":
        options["x265-params"] = "log-level=error"  # x265 prints info lines to stderr on its own
    return options


def alpha_note(
    codec: str,
    pix_fmt: str,
    info: VideoInfo,
    encode: EncodeConfig,
    container: av.container.OutputContainer,
    suffix: str,
) -> tuple[bool, str | None]:
    """``(keep, note)``: whether the output keeps the input's alpha channel, and the note when it does not
    because the user chose ``--codec``/``--pix-fmt`` (or keeps it with an encoder other than the container's
    usual one); refuses (:class:`DeblurError`) when alpha would be lost
    without the user having chosen (see the module docstring)."""
    if not info.alpha:
        return False, None
    if has_alpha(pix_fmt) and keeps_alpha(codec, container):
        if encode.codec is None and codec != choose_codec(None, container):
            return True, (
                f"note: the input has an alpha channel (transparency): written with {codec}, the input's "
                f"codec, which keeps it in {suffix} files"
            )
        return True, None
    cannot = (
        f"{codec} ({pix_fmt}) cannot keep alpha in {suffix} files"
        if has_alpha(pix_fmt) or encode.pix_fmt is None
        else f"--pix-fmt {pix_fmt} has no alpha channel"
    )
    if encode.codec is not None or encode.pix_fmt is not None:
        return False, f"note: the input's alpha channel (transparency) is dropped: {cannot}"
    others = alpha_encoders(container)
    named = f"{', '.join(others[:-1])} or {others[-1]}" if len(others) > 1 else "".join(others)
    keep = f"--codec {named} keeps it" if others else f"{suffix} files cannot keep it"
    raise DeblurError(
        f"the input has an alpha channel (transparency) and {cannot}; {keep} "
        f"(or pass --codec {codec} to drop it)"
    )


def depth_note(codec: str, pix_fmt: str, info: VideoInfo) -> str | None:
    """A note when the output keeps fewer bits per sample than the input has."""
    out_bits = max(c.bits for c in av.VideoFormat(pix_fmt).components)
    if info.bit_depth > out_bits:
        return (
            f"note: the input is {info.bit_depth}-bit but {codec} writes {pix_fmt} ({out_bits}-bit) here; "
            "for more bits use --codec libx265 or ffv1, or --pix-fmt"
        )
    return None


def _video_formats(codec_name: str) -> list[str]:
    try:
        codec = av.codec.Codec(codec_name, "w")
    except (av.error.FFmpegError, ValueError):
        raise DeblurError(f"--codec {codec_name!r} is not an encoder this FFmpeg build has") from None
    if codec.type != "video":
        raise DeblurError(f"--codec {codec_name!r} is a {codec.type} encoder, not a video one")
    return [f.name for f in codec.video_formats or ()]


def _alpha_formats(formats: list[str], codec_name: str, info: VideoInfo | None = None) -> list[str]:
    """The encoder's formats with alpha it can write, the closest to ``info``'s first: RGB for RGB, YUV for
    YUV, then at least the input's depth, then the fewest bits and least chroma subsampling."""
    usable = [f for f in formats if has_alpha(f) and f in _ALPHA_FORMATS_OF.get(codec_name, (f,))]
    if info is None:
        return usable
    source = av.VideoFormat(info.pix_fmt)

    def rank(name: str) -> tuple[bool, bool, int, int]:
        fmt = av.VideoFormat(name, 64, 64)
        bits = max(c.bits for c in fmt.components)
        chroma = sum(c.width * c.height for c in fmt.components)
        return fmt.is_rgb != source.is_rgb, bits < info.bit_depth, bits, -chroma

    return sorted(usable, key=rank)


def _fits(pix_fmt: str, width: int, height: int) -> bool:
    """Chroma-subsampled formats need even sizes (x264 refuses odd ones)."""
    fmt = av.VideoFormat(pix_fmt, width, height)
    subsampled = any(c.width != width or c.height != height for c in fmt.components[1:] if not c.is_alpha)
    return not (subsampled and (width % 2 or height % 2))


def choose_pix_fmt(codec_name: str, requested: str | None, info: VideoInfo) -> str:
    """The encoder pixel format: ``requested`` if given (must be supported); else the input's when the encoder
    has it; else, for a deeper-than-8-bit input, a 10-bit 4:2:0 format when available (so precision is not
    thrown away silently); else yuv420p; odd frame sizes avoid subsampled formats (4:4:4 instead)."""
    formats = _video_formats(codec_name)
    w, h = info.width, info.height
    if requested is not None:
        try:
            av.VideoFormat(requested)
        except ValueError:
            raise DeblurError(f"--pix-fmt {requested!r} is not a pixel format FFmpeg knows") from None
        if formats and requested not in formats:
            raise DeblurError(
                f"--pix-fmt {requested} is not supported by {codec_name} (it takes: {', '.join(formats)})"
            )
        if not _fits(requested, w, h):
            raise DeblurError(f"--pix-fmt {requested} needs an even frame size, the input is {w}x{h}")
        return requested
    if not formats:  # the encoder did not say; let FFmpeg pick from what we hand it
        return info.pix_fmt
    wanted = [info.pix_fmt]
    if info.alpha:
        wanted += _alpha_formats(formats, codec_name, info)
    if info.bit_depth > 8:
        wanted += ["yuv420p10le", "yuv444p10le"]
    wanted += ["yuv420p", "yuv444p", *formats]
    for name in wanted:
        if name in formats and _fits(name, w, h):
            return name
    raise DeblurError(f"{codec_name} has no pixel format for a {w}x{h} frame (try --codec ffv1)")


def check_encode(encode: EncodeConfig, suffix: str) -> None:
    """Refuse encoder settings that cannot work, before any input is read or model loaded (the writer checks
    again with the container in hand)."""
    if encode.codec is not None:
        _video_formats(encode.codec)
        crf = _CRF.get(encode.codec)
        if crf is not None and encode.crf is not None and encode.crf > crf[0]:
            raise DeblurError(f"--crf for {encode.codec} must be at most {crf[0]}, got {encode.crf}")
        if suffix.lower() == ".avi" and (problem := avi_refusal(encode.codec)):
            raise DeblurError(problem)
    if encode.pix_fmt is not None:
        try:
            av.VideoFormat(encode.pix_fmt)
        except ValueError:
            raise DeblurError(f"--pix-fmt {encode.pix_fmt!r} is not a pixel format FFmpeg knows") from None


# The container format FFmpeg picks for each video suffix the tool writes (for checks before a file exists).
_FORMAT_OF_SUFFIX = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
    ".ts": "mpegts",
    ".mts": "mpegts",
    ".m2ts": "mpegts",
}


def check_output(info: VideoInfo, encode: EncodeConfig, suffix: str) -> None:
    """Refuse, without creating any file, what the writer would refuse for this input in a ``suffix`` file
    (an alpha channel it cannot keep), so a command can say so before it loads the model."""
    fmt = _FORMAT_OF_SUFFIX.get(suffix.lower())
    if fmt is None or not info.alpha:
        return
    with av.open(io.BytesIO(), "w", format=fmt) as container:
        codec = choose_codec(encode.codec, container, info)
        alpha_note(codec, choose_pix_fmt(codec, encode.pix_fmt, info), info, encode, container, suffix)
