"""The video encoder's settings: which encoder (the container's usual one unless asked), its pixel format
(the input's where possible) and its options (constant quality), each choice that loses something said in a
``note:`` rather than done silently."""

from __future__ import annotations

import contextlib

import av
import av.container
import av.error

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError
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


def choose_codec(requested: str | None, container: av.container.OutputContainer) -> str:
    """``requested``, or the container's usual encoder: libx264; VP9 for WebM (which cannot hold H.264);
    MPEG-4 Part 2 for AVI (see ``avi_refusal``)."""
    if requested is not None:
        return requested
    usual = _USUAL_FOR.get(container.format.name)
    for name in (usual, *_USUAL) if usual else _USUAL:
        if name in container.supported_codecs:
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
