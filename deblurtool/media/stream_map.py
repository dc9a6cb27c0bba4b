"""Which of the input's other streams go into the output, and how; and the metadata that goes with them.

Every decision is made when the output is opened, before the model has run: a stream the output container
cannot hold must never make the job fail at its very end (FFmpeg checks some things only when it writes the
trailer, e.g. an AVI's PCM audio, which has a channel count but no channel layout, in an MP4). So each stream
to copy is first tried in an in-memory file of the output's format with the input's own first packet
(:func:`_trial`), header to trailer. A stream that fails, or whose codec the container cannot hold, is
re-encoded where it is audio (to the first of AAC, Opus, MP3, ... the container takes) and skipped
otherwise, each with a ``note:``.

Metadata: the container's (title, creation time, location, comments) and each stream's (language, title,
handler) are copied; tags that describe the old file's encoding (encoder, brands, durations, statistics)
are not, so the muxer writes true ones.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import av
import av.audio.stream
import av.container
import av.error
import av.stream

# Audio encoders to re-encode to, in order of preference, where the container cannot hold the input's.
_AUDIO_ENCODERS = ("aac", "libopus", "libmp3lame", "flac", "pcm_s16le")

# Tags that describe how the old file was made, not what it holds: the muxer writes its own.
_TECHNICAL = re.compile(
    r"(?i)(major_brand|minor_version|compatible_brands|encoder|duration|vendor_id|encoder_options|"
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
    """Decode the input's audio packets and encode them for the output stream (the writer thread's work)."""

    def __init__(self, source: av.audio.stream.AudioStream, out: av.audio.stream.AudioStream) -> None:
        self.source, self.out = source, out

    def packets(self, packet: av.Packet | None) -> list[av.Packet]:
        """The output packets ``packet`` completes; None flushes decoder and encoder at the end. A damaged
        packet the decoder rejects is skipped (a moment of silence), as a copied one would be passed on: it
        must not stop the job."""
        try:
            frames = list(self.source.codec_context.decode(packet))
        except av.error.FFmpegError:
            frames = []
        encoded = [p for frame in frames for p in self.out.encode(frame)]
        if packet is None:
            encoded += self.out.encode(None)
        return encoded


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
    container: av.container.OutputContainer, source: av.audio.stream.AudioStream
) -> tuple[av.audio.stream.AudioStream, str] | None:
    """An audio stream in ``container`` encoding ``source``'s sound with the first encoder it can hold
    (tried in an in-memory file first), and that encoder's name; None if none works."""
    channels = source.codec_context.layout.nb_channels or 2
    for name in _AUDIO_ENCODERS:
        if name not in container.supported_codecs:
            continue
        try:
            codec = av.codec.Codec(name, "w")
            rate = _rate_for(codec, source.codec_context.sample_rate or 48000)
            layout = f"{channels}c" if channels <= 2 or name in ("aac", "flac", "pcm_s16le") else "stereo"
            with av.open(io.BytesIO(), "w", format=container.format.name) as trial:
                trial.add_stream(name, rate=rate, layout=layout)
                trial.start_encoding()
            stream = container.add_stream(name, rate=rate, layout=layout)
        except (av.error.FFmpegError, ValueError, OSError):
            continue
        assert isinstance(stream, av.audio.stream.AudioStream)
        return stream, name
    return None


def add_side_streams(
    container: av.container.OutputContainer,
    side_streams: Sequence[av.stream.Stream],
    samples: Mapping[int, av.Packet],
    notes: list[str],
    *,
    suffix: str,
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
            if name not in container.supported_codecs
            else _trial(container.format.name, s, samples.get(s.index))
        )
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
                out[s.index] = SideStream(s, _with_tags(stream, s), AudioTranscoder(s, stream))
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
