"""Which of the input's other streams go into the output, and how; and the metadata that goes with them.

Every decision is made when the output is opened, before the model has run: a stream the output container
cannot hold must never make the job fail at its very end (FFmpeg checks some things only when it writes the
trailer, e.g. an AVI's PCM audio, which has a channel count but no channel layout, in an MP4). So each stream
to copy is first tried in an in-memory file of the output's format with the input's own first packet
(:func:`_trial`), header to trailer. A stream that fails, or whose codec the container cannot hold, is
re-encoded where it is audio (to the first of AAC, Opus, MP3, ... the container takes) and skipped
otherwise, each with a ``note:``.

Which codecs a container holds: FFmpeg's own list where the muxer has one; MPEG-TS has none (PyAV then names
only its default codecs, MPEG-2 video and MP2 audio), so for it the codecs its muxer gives a stream type are
listed here (:func:`container_holds`): AAC, AC-3, MP3 and the rest are copied into ``.ts``/``.mts``/``.m2ts``
files, while a codec it has no stream type for (FLAC, PCM) would be written as private data that no player
reads, so that audio is re-encoded instead.

A slice (:class:`~deblurtool.media.time_range.Cut`) cuts every stream to the slice's span and shifts it with
the frames: packets are copied whole where the slice's edges fall on packet boundaries (no gap, no overhang),
else that audio is re-encoded (with its own codec where there is an encoder for it) and cut to the sample,
with a note; subtitles are copied, those crossing an edge shortened to it.

Metadata: the container's (title, creation time, location, comments) and each stream's (language, title,
handler) are copied; tags that describe the old file's encoding (encoder, brands, durations, statistics,
WebM's ``ALPHA_MODE``) are not, so the muxer writes true ones.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.audio.stream
import av.container
import av.error
import av.stream
import numpy as np

from deblurtool.media.time_range import Cut

# Audio encoders to re-encode to, in order of preference, where the container cannot hold the input's.
_AUDIO_ENCODERS = ("aac", "libopus", "libmp3lame", "flac", "pcm_s16le")
# The encoder of an audio codec, where its name differs from the codec's.
_AUDIO_ENCODER_OF = {"opus": "libopus", "mp3": "libmp3lame", "vorbis": "libvorbis"}

# Containers whose muxer has no codec list in FFmpeg: the codecs (canonical names) each gives a stream type a
# demuxer recognises. For MPEG-TS, FFmpeg's mpegtsenc; any other codec it would write as private data.
# fmt: off
_UNLISTED_FORMATS: dict[str, frozenset[str]] = {
    "mpegts": frozenset({
        "mpeg1video", "mpeg2video", "mpeg4", "h264", "hevc", "vvc", "cavs", "dirac", "vc1",
        "mp2", "mp3", "aac", "aac_latm", "ac3", "eac3", "dts", "truehd", "opus", "s302m",
        "dvb_subtitle", "dvb_teletext", "smpte_klv", "timed_id3",
    }),
}
# fmt: on


def _canonical(codec_name: str) -> str:
    """The codec's name (``h264``) for an encoder's or decoder's (``libx264``, ``mp3float``)."""
    for mode in ("r", "w"):
        try:
            return str(av.codec.Codec(codec_name, mode).canonical_name)
        except (av.error.FFmpegError, ValueError):
            continue
    return codec_name


def written_as_data(container: av.container.OutputContainer, codec_name: str) -> bool:
    """Whether ``container`` would take ``codec_name`` without complaint but store it as private data that
    reads back as no codec at all (MPEG-TS with a codec it has no stream type for). FFmpeg refuses other
    impossible pairings itself."""
    listed = _UNLISTED_FORMATS.get(container.format.name)
    return listed is not None and _canonical(codec_name) not in listed


def container_holds(container: av.container.OutputContainer, codec_name: str) -> bool:
    """Whether ``container``'s format can hold ``codec_name`` (an encoder's, decoder's or codec's name) so
    that it reads back as that codec (see the module docstring for MPEG-TS)."""
    listed = _UNLISTED_FORMATS.get(container.format.name)
    if listed is not None:
        return _canonical(codec_name) in listed
    return codec_name in container.supported_codecs


# Tags that describe how the old file was made, not what it holds: the muxer writes its own.
_TECHNICAL = re.compile(
    r"(?i)(major_brand|minor_version|compatible_brands|encoder|duration|vendor_id|encoder_options|alpha_mode|"
    r"_statistics_.*|bps(-.*)?|number_of_(frames|bytes)(-.*)?|encoded_by)"
)


def copied_metadata(metadata: Mapping[str, str], *, stream: bool = False) -> dict[str, str]:
    """The tags of ``metadata`` worth carrying into a new file (see the module docstring). MP4 reads a
    stream's title back as ``name``; it is carried as ``title``, which every muxer writes. A language-tagged
    duplicate (``location-eng`` beside ``location``) is dropped: the muxer derives it."""
    out: dict[str, str] = {}
    for key, value in metadata.items():
        if _TECHNICAL.fullmatch(key):
            continue
        base = re.fullmatch(r"(.+)-[a-z]{3}", key)
        if base and base[1] in metadata:
            continue
        out[key] = value
    if stream and "name" in out and not any(k.lower() == "title" for k in out):
        out["title"] = out.pop("name")
    return out


@dataclass
class SideStream:
    """An input stream placed in the output: its packets copied, or (``transcoder``) its audio re-encoded."""

    source: av.stream.Stream
    out: av.stream.Stream
    transcoder: AudioTranscoder | None = None


class AudioTranscoder:
    """Decode the input's audio packets and encode them for the output stream (the writer thread's work);
    with a ``cut``, only the sound inside it, to the sample, shifted as the frames are."""

    def __init__(
        self, source: av.audio.stream.AudioStream, out: av.audio.stream.AudioStream, cut: Cut | None = None
    ) -> None:
        self.source, self.out, self.cut = source, out, cut

    def packets(self, packet: av.Packet | None) -> list[av.Packet]:
        """The output packets ``packet`` completes; None flushes decoder and encoder at the end. A damaged
        packet the decoder rejects is skipped (a moment of silence), as a copied one would be passed on: it
        must not stop the job."""
        try:
            frames = list(self.source.codec_context.decode(packet))
        except av.error.FFmpegError:
            frames = []
        if self.cut is not None:
            frames = [t for t in (_trimmed(f, self.cut) for f in frames) if t is not None]
        encoded = [p for frame in frames for p in self.out.encode(frame)]
        if packet is None:
            encoded += self.out.encode(None)
        return encoded


def _trimmed(frame: av.AudioFrame, cut: Cut) -> av.AudioFrame | None:
    """The samples of ``frame`` inside ``cut``, timed from the cut's zero (None: none of them)."""
    rate = frame.sample_rate
    if frame.pts is None or not rate:
        return None
    start = frame.pts * (frame.time_base or Fraction(1, rate))
    lo, hi = 0, frame.samples
    if cut.trim_head:
        lo = max(0, math.ceil((cut.zero - start) * rate))
    if cut.end is not None:
        hi = min(hi, math.ceil((cut.end - start) * rate))
    if lo >= hi:
        return None
    out = frame
    if (lo, hi) != (0, frame.samples):
        samples = frame.to_ndarray()  # planar: channels x samples; packed: 1 x (samples * channels)
        per = 1 if frame.format.is_planar else frame.layout.nb_channels
        kept: Any = np.ascontiguousarray(samples[:, lo * per : hi * per])
        out = av.AudioFrame.from_ndarray(kept, format=frame.format.name, layout=frame.layout.name)
        out.sample_rate = rate
    out.pts = round((start + Fraction(lo, rate) - cut.zero) * rate)
    out.time_base = Fraction(1, rate)
    return out


def cut_packet(packet: av.Packet, cut: Cut) -> av.Packet | None:
    """A copied packet inside ``cut``, shifted as the frames are (None: outside it). A subtitle crossing an
    edge is shortened to it; audio is only copied where its packets fit the cut (see the module
    docstring)."""
    tb = packet.time_base
    if packet.pts is None or not tb:
        return packet
    start, stop = packet.pts * tb, (packet.pts + (packet.duration or 0)) * tb
    if not cut.keeps(start, stop):
        return None
    if packet.stream.type == "subtitle" and packet.duration:
        first = max(start, cut.zero) if cut.trim_head else start
        last = min(stop, cut.end) if cut.end is not None else stop
        packet.pts = round(first / tb)
        packet.duration = max(1, round(last / tb) - packet.pts)
        packet.dts = packet.pts
    shift = round(cut.zero / tb)
    packet.pts -= shift
    if packet.dts is not None:
        packet.dts -= shift
    return packet


def _fits_cut(sample: av.Packet | None, cut: Cut) -> bool:
    """Whether whole packets of the stream ``sample`` begins can be copied for ``cut``: its packets (all of
    ``sample``'s duration) have boundaries at the cut's edges."""
    if sample is None or sample.pts is None or not sample.duration or not sample.time_base:
        return False
    return cut.on_boundaries(sample.pts * sample.time_base, sample.duration * sample.time_base)


def _copy_of(sample: av.Packet, stream: av.stream.Stream) -> av.Packet:
    packet = av.Packet(bytes(sample))
    packet.pts, packet.dts, packet.duration = sample.pts, sample.dts, sample.duration
    packet.time_base = sample.time_base
    packet.is_keyframe = sample.is_keyframe
    packet.stream = stream
    return packet


def _fix_layout(stream: av.stream.Stream) -> None:
    """Give audio that has a channel count but no layout (AVI's PCM) the default layout for that count: the
    MP4 and MOV muxers refuse it otherwise, at the very end."""
    if isinstance(stream, av.audio.stream.AudioStream):
        layout = stream.codec_context.layout
        if layout.nb_channels and layout.name.endswith("channels"):  # "2 channels": an unspecified order
            stream.codec_context.layout = f"{layout.nb_channels}c"


def _trial(fmt: str, template: av.stream.Stream, sample: av.Packet | None) -> str | None:
    """Mux ``template``'s stream (and its ``sample`` packet) into an in-memory file of format ``fmt``,
    header to trailer: None if that works, else FFmpeg's reason."""
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as trial:
            stream = trial.add_stream_from_template(template)
            _fix_layout(stream)
            if sample is not None:
                trial.mux(_copy_of(sample, stream))
            else:
                trial.start_encoding()
    except (av.error.FFmpegError, ValueError, OSError) as e:
        return _reason(e)
    return None


def _rate_for(codec: av.codec.Codec, rate: int) -> int:
    rates = list(codec.audio_rates or [])
    if not rates or rate in rates:
        return rate
    higher = [r for r in rates if r >= rate]
    return min(higher) if higher else max(rates)


def _add_encoded_audio(
    container: av.container.OutputContainer, source: av.audio.stream.AudioStream, *, own: bool = False
) -> tuple[av.audio.stream.AudioStream, str] | None:
    """An audio stream in ``container`` encoding ``source``'s sound with the first encoder it can hold
    (tried in an in-memory file first), and that encoder's name; None if none works. ``own``: the source's
    own codec first, where this FFmpeg has an encoder for it."""
    channels = source.codec_context.layout.nb_channels or 2
    mine = _AUDIO_ENCODER_OF.get(
        source.codec_context.codec.canonical_name, source.codec_context.codec.canonical_name
    )
    for name in (mine, *_AUDIO_ENCODERS) if own else _AUDIO_ENCODERS:
        if not container_holds(container, name):
            continue
        try:
            codec = av.codec.Codec(name, "w")
            rate = _rate_for(codec, source.codec_context.sample_rate or 48000)
            keeps_layout = channels <= 2 or name in ("aac", "flac", "pcm_s16le", mine)
            layout = f"{channels}c" if keeps_layout else "stereo"
            with av.open(io.BytesIO(), "w", format=container.format.name) as trial:
                trial.add_stream(name, rate=rate, layout=layout)
                trial.start_encoding()
            stream = container.add_stream(name, rate=rate, layout=layout)
        except (av.error.FFmpegError, ValueError, OSError):
            continue
        assert isinstance(stream, av.audio.stream.AudioStream)
        return stream, name
    return None


def _recut_audio(
    container: av.container.OutputContainer, source: av.stream.Stream, cut: Cut, what: str, notes: list[str]
) -> SideStream | None:
    """Audio re-encoded to cut it to the sample at a slice's edges (see the module docstring), with its
    note; None for a stream that is not audio or that no encoder can write here (it is then copied whole)."""
    if not isinstance(source, av.audio.stream.AudioStream):
        return None
    encoded = _add_encoded_audio(container, source, own=True)
    if encoded is None:
        return None
    stream, encoder = encoded
    edges = "its packets do not begin and end at the slice's edges"
    notes.append(f"note: {what} re-encoded to {encoder} to cut it at the slice's edges ({edges})")
    return SideStream(source, _with_tags(stream, source), AudioTranscoder(source, stream, cut))


def add_side_streams(
    container: av.container.OutputContainer,
    side_streams: Sequence[av.stream.Stream],
    samples: Mapping[int, av.Packet],
    notes: list[str],
    *,
    suffix: str,
    cut: Cut | None = None,
) -> dict[int, SideStream]:
    """Add to ``container`` an output stream for each input audio and subtitle stream it can hold (copied,
    or re-encoded audio); append a ``note:`` to ``notes`` for each stream left out or re-encoded. ``samples``
    are the input's first packets per stream index, for the trial; ``suffix`` names the output's kind in
    notes (``.mp4``). Returns them by input stream index."""
    out: dict[int, SideStream] = {}
    for s in side_streams:
        name = s.codec_context.name if s.codec_context is not None else "unknown"
        what = f"{s.type} stream #{s.index} ({name})"
        if s.type not in ("audio", "subtitle") or s.disposition & av.stream.Disposition.attached_pic:
            notes.append(f"note: {what} not copied (only audio and subtitles are)")
            continue
        problem = (
            f"{suffix} files cannot hold {name}"
            if not container_holds(container, name)
            else _trial(container.format.name, s, samples.get(s.index))
        )
        if problem is None and cut is not None and not _fits_cut(samples.get(s.index), cut):
            recut = _recut_audio(container, s, cut, what, notes)
            if recut is not None:
                out[s.index] = recut
                continue
        if problem is None:
            try:
                stream = container.add_stream_from_template(s)
            except (av.error.FFmpegError, ValueError) as e:
                notes.append(f"note: {what} not copied ({_reason(e)})")
                continue
            _fix_layout(stream)
            out[s.index] = SideStream(s, _with_tags(stream, s))
            continue
        if isinstance(s, av.audio.stream.AudioStream):
            encoded = _add_encoded_audio(container, s)
            if encoded is not None:
                stream, encoder = encoded
                notes.append(f"note: {what} re-encoded to {encoder} ({problem})")
                out[s.index] = SideStream(s, _with_tags(stream, s), AudioTranscoder(s, stream, cut))
                continue
        notes.append(f"note: {what} not copied ({problem})")
    return out


def _with_tags(stream: av.stream.Stream, source: av.stream.Stream) -> av.stream.Stream:
    stream.metadata.update(copied_metadata(source.metadata, stream=True))
    stream.disposition = source.disposition
    return stream


def _reason(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).rstrip(".")
