"""What a video file says about itself before and besides decoding: whether it is a video at all, which
stream is the picture, its display matrix, and where it should end (for counting frames and finding a file
that was cut short)."""

from __future__ import annotations

import re
import struct
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import av.codec.context
import av.container
import av.error
import av.sidedata.sidedata
import av.stream
import av.video.stream
from av.video.codeccontext import VideoCodecContext

from deblurtool.errors import InputError

# Containers `folder` treats as videos: deblurred as `video` does, into the same relative path and container.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts"})

# FFmpeg renders text and "binary art" files as video (its tty/bintext demuxers); such a file is not a video.
_TEXT_ART_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})


def refuse_non_video(container: av.container.InputContainer, path: Path) -> None:
    """A text file or a still image opens as a one-stream "video" in FFmpeg; say what it is instead."""
    if any(
        s.codec_context is not None and s.codec_context.name in _TEXT_ART_CODECS
        for s in container.streams.video
    ):
        raise InputError("is a text file, not a video", path)
    fmt = container.format.name
    if fmt == "image2" or fmt.endswith("_pipe"):
        raise InputError("is a still image, not a video (use `deblurtool folder` for images)", path)


def pick_video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    # Cover art (mp4/mkv "attached pictures") is a one-frame video stream; it is not the video.
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not videos:
        raise InputError("has no video stream", path)
    for stream in videos:
        if stream.codec_context is not None:  # None: FFmpeg has no decoder for it, or its header is damaged
            return stream
    raise InputError("has no video stream FFmpeg can decode (unknown codec, or a damaged header)", path)


def display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    kind = av.sidedata.sidedata.Type.DISPLAYMATRIX
    raw = bytes(frame.side_data[kind]) if kind in frame.side_data else b""
    return struct.unpack("=9i", raw) if len(raw) == 36 else None


def _duration_tag(text: str | None) -> Fraction | None:
    """Seconds from Matroska's per-track ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``), None if absent or odd."""
    m = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", (text or "").strip())
    if not m:
        return None
    return int(m[1]) * 3600 + int(m[2]) * 60 + Fraction(m[3])


def expected_end(
    stream: av.video.stream.VideoStream, container: av.container.InputContainer
) -> tuple[Fraction, bool] | None:
    """Where the video should end, in seconds, by the file's own word: ``(seconds, of_the_stream)``.
    The stream's duration where the container stores one (MP4, MOV, AVI; Matroska and WebM as a tag),
    else the container's (which may include other streams: ``of_the_stream`` False); None if neither."""
    tb = stream.time_base
    start = stream.start_time * tb if stream.start_time is not None and tb else Fraction(0)
    if stream.duration and tb:
        return start + stream.duration * tb, True
    tagged = _duration_tag(stream.metadata.get("DURATION") or stream.metadata.get("duration"))
    if tagged:
        return start + tagged, True
    if container.duration:  # microseconds
        return Fraction((container.start_time or 0) + container.duration, 1_000_000), False
    return None


def estimate_frames(
    stream: av.video.stream.VideoStream, container: av.container.InputContainer
) -> int | None:
    rate = stream.average_rate or stream.guessed_rate
    end = expected_end(stream, container)
    if not rate or end is None:
        return None
    tb = stream.time_base
    start = stream.start_time * tb if stream.start_time is not None and tb else Fraction(0)
    return max(1, round((end[0] - start) * rate))


def ends_early(end: tuple[Fraction, bool], reached: Fraction, step: Fraction) -> str | None:
    """Why a file whose content reaches ``reached`` seconds falls short of its stated ``end`` (from
    :func:`expected_end`), or None if it does not (by more than 2 frame steps or 1%)."""
    expected, of_stream = end
    if reached >= expected - max(2 * step, expected / 100):
        return None
    whose = "the video" if of_stream else "the file"
    return f"{whose} should last {float(expected):.2f} s but ends at {float(reached):.2f} s"


# Decoders that read the alpha plane WebM/Matroska keep beside each VP8/VP9 frame (``ALPHA_MODE`` 1): FFmpeg's
# own VP8/VP9 decoders ignore it and return the picture without transparency.
_ALPHA_DECODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}


def stored_alpha_mode(stream: av.video.stream.VideoStream) -> bool:
    """Whether the stream is tagged as carrying a separate alpha plane (Matroska's ``ALPHA_MODE`` 1)."""
    return any(k.lower() == "alpha_mode" and v.strip() == "1" for k, v in stream.metadata.items())


def alpha_decoder(stream: av.video.stream.VideoStream) -> tuple[VideoCodecContext | None, str | None]:
    """``(decoder, note)``: a decoder that reads the stream's separate alpha plane where it has one and the
    stream's own decoder would drop it (VP8/VP9 with ``ALPHA_MODE`` 1), else None; ``note`` says when such
    alpha cannot be decoded with this FFmpeg build (the output then has none)."""
    ctx = stream.codec_context
    name = _ALPHA_DECODERS.get(ctx.name) if ctx is not None and stored_alpha_mode(stream) else None
    if name is None:
        return None, None
    try:
        decoder = av.codec.context.CodecContext.create(name, "r")
    except (av.error.FFmpegError, ValueError):
        return (
            None,
            f"note: the input's alpha channel (transparency) cannot be decoded: this FFmpeg has no {name}",
        )
    if ctx.extradata:
        decoder.extradata = ctx.extradata
    decoder.thread_type = "AUTO"
    return cast(VideoCodecContext, decoder), None
