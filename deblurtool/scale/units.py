"""Work units: what one worker does in one call. An image, a whole video, or one frame range of a long video.

A long video is cut by presentation timestamp: chunk ``k`` holds exactly the frames whose pts lie in
``[lo_k, hi_k)`` (the first range open below, the last open above), so every frame belongs to exactly one
chunk whatever the frame rate (VFR too) and however wrong the container's duration or frame count is. The
boundaries are placed about ``chunk_frames`` frames apart from the stream's average rate; the driver never
decodes anything to plan them (a two-hour video is planned from its header).

A finished chunk is a video file (in the output's container, written by the same writer as ``video``) plus a
JSON record (written after it, so the record marks it complete) in a hidden folder beside the output:
``.NAME.chunks/``. Their names carry a key of everything that changes
the chunk (the input's size and mtime, the model and encoder settings, the range), so a re-run reuses
exactly the chunks made the same way and ignores the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from deblurtool.config import EncodeConfig
from deblurtool.fsutil import write_bytes
from deblurtool.media.video_probe import estimate_frames, pick_video_stream

CHUNK_SECONDS = 60  # the default chunk: about a minute of frames at the video's own rate
KINDS = ("image", "video", "chunk")


@dataclass(frozen=True)
class ChunkRange:
    """Frames with ``lo <= pts < hi`` (None: open) in the source's video time base; chunk ``index`` of
    ``count``."""

    index: int
    count: int
    lo: int | None
    hi: int | None


@dataclass(frozen=True)
class Unit:
    """One call to a worker. ``out`` is the final output (image, video) or the chunk file (chunk); ``rel``
    names the input in reports and the manifest; ``frames`` is an estimate, for progress and ordering."""

    kind: str
    src: Path
    out: Path
    rel: Path
    frames: int
    chunk: ChunkRange | None = None

    @property
    def key(self) -> str:
        part = f"#{self.chunk.index}" if self.chunk is not None else ""
        return f"{self.rel.as_posix()}{part}"


@dataclass(frozen=True)
class VideoProbe:
    """Header facts of a video's stream (no decoding): enough to plan chunks and estimate progress."""

    time_base: Fraction
    rate: Fraction | None
    start: int
    frames: int | None


def probe_video(path: Path) -> VideoProbe | None:
    """Header facts of ``path``'s video stream, or None when it cannot be planned (unreadable, no rate):
    such a video is one whole unit, and the worker reports its problem as `video` would."""
    try:
        with av.open(str(path)) as container:
            stream = pick_video_stream(container, path)
            tb, rate = stream.time_base, stream.average_rate or stream.guessed_rate
            if not tb or not rate:
                return None
            frames = stream.frames or estimate_frames(stream, container)
            start = stream.start_time if stream.start_time is not None else 0
            return VideoProbe(time_base=tb, rate=Fraction(rate), start=start, frames=frames)
    except Exception:  # anything odd: the whole-video path gives the precise one-line reason
        return None


def plan_ranges(probe: VideoProbe | None, chunk_frames: int | None) -> list[ChunkRange]:
    """Chunk ranges for a video of about ``probe.frames`` frames: none when it fits in one chunk (or cannot
    be planned), else ``ceil(frames / chunk_frames)`` ranges of equal duration. ``chunk_frames`` None: about
    CHUNK_SECONDS of frames at the stream's rate."""
    if probe is None or not probe.frames or probe.rate is None:
        return []
    per_chunk = chunk_frames if chunk_frames is not None else max(1, round(CHUNK_SECONDS * probe.rate))
    count = math.ceil(probe.frames / per_chunk)
    if count < 2:
        return []
    step = Fraction(probe.frames, count) / probe.rate / probe.time_base  # ticks per chunk
    cuts = [probe.start + round(step * k) for k in range(1, count)]
    bounds: list[int | None] = [None, *cuts, None]
    return [ChunkRange(k, count, bounds[k], bounds[k + 1]) for k in range(count)]


def video_units(
    src: Path, out: Path, rel: Path, probe: VideoProbe | None, chunk_frames: int | None, key: str
) -> list[Unit]:
    """The units of one video: a whole-video unit, or one per chunk (files under :func:`chunk_dir`).
    ``key`` names the input state and settings (see :func:`chunk_key`)."""
    frames = (probe.frames if probe is not None else None) or 1
    ranges = plan_ranges(probe, chunk_frames)
    if not ranges:
        return [Unit("video", src, out, rel, frames)]
    folder = chunk_dir(out)
    return [
        Unit(
            "chunk",
            src,
            folder / f"{r.index:05d}-{_range_key(key, r)}{out.suffix}",
            rel,
            max(1, round(frames / r.count)),
            r,
        )
        for r in ranges
    ]


def chunk_dir(out: Path) -> Path:
    """The hidden folder holding the finished chunks of output ``out`` until they are joined."""
    return out.parent / f".{out.name}.chunks"


def chunk_key(st: os.stat_result, signature: str, encode: EncodeConfig) -> str:
    """What must match for a finished chunk to be reused: the input (size, mtime) and all settings."""
    text = json.dumps([st.st_size, st.st_mtime_ns, signature, asdict(encode)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _range_key(key: str, r: ChunkRange) -> str:
    return hashlib.sha256(f"{key}:{r.count}:{r.lo}:{r.hi}".encode()).hexdigest()[:16]


# -- the record of a finished chunk --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkRecord:
    """A finished chunk: its ``pts`` (source time base, presentation order, one per encoded frame), the
    encoder's pixel format and its writer's notes (a --crf the encoder ignores, fewer bits than the input)."""

    pts: list[int]
    pix_fmt: str
    notes: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.pts)


def record_path(chunk_file: Path) -> Path:
    return chunk_file.with_suffix(".json")


def write_record(chunk_file: Path, record: ChunkRecord) -> None:
    """Write the record temp-then-rename, after the chunk file itself: its presence means "complete"."""
    write_bytes(record_path(chunk_file), json.dumps(asdict(record)).encode())


def read_record(chunk_file: Path) -> ChunkRecord | None:
    """The record of a finished chunk, or None when the chunk is missing, incomplete or unreadable."""
    try:
        data = json.loads(record_path(chunk_file).read_text(encoding="utf-8"))
        notes = [str(n) for n in data.get("notes", [])]
        record = ChunkRecord(pts=[int(p) for p in data["pts"]], pix_fmt=str(data["pix_fmt"]), notes=notes)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record.frames and not chunk_file.is_file():
        return None
    return record


def remove_chunks(out: Path) -> None:
    """Remove the chunk folder of ``out`` (after a join, or when the video fell back to one unit)."""
    folder = chunk_dir(out)
    if folder.is_dir():
        for item in folder.iterdir():
            with contextlib.suppress(OSError):
                item.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
