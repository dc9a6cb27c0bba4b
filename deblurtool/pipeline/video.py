"""``run_video``: deblur every frame of a video into a new one, keeping its streams, timing and size."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError, InputError, ModelOutputError, OutputError, one_line
from deblurtool.fsutil import (
    atomic_write,
    make_folders,
    output_lock,
    remove_empty_folders,
    remove_stale_temps,
)
from deblurtool.media.video_codec import check_encode
from deblurtool.media.video_reader import DecodedFrame, VideoInfo, VideoReader
from deblurtool.media.video_writer import VideoWriter
from deblurtool.pipeline.progress import ArrayModel, Progress, as_progress


@dataclass
class VideoSummary:
    """What :func:`run_video` did. ``damage`` is a one-line reason when the input was damaged (the frames that
    could be decoded were written); ``notes`` list streams that were not copied and similar."""

    src: Path
    dst: Path
    frames: int
    seconds: float
    pix_fmt: str
    copied_streams: int
    notes: list[str] = field(default_factory=list)
    damage: str | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.frames} frames in {self.seconds:.1f} s ({self.fps:.2f} fps) -> {self.dst} "
            f"({self.pix_fmt}, {self.copied_streams} stream(s) copied)"
        )


def check_video_paths(src: Path, dst: Path, overwrite: bool) -> None:
    if not src.exists():
        raise InputError("no such file", src)
    if src.is_dir():
        raise InputError("is a folder (use `deblurtool folder` for folders of images)", src)
    if dst.is_dir():
        raise OutputError("is a folder; give an output file name such as out.mp4", dst)
    if src.resolve() == dst.resolve() or (dst.exists() and os.path.samefile(src, dst)):
        raise OutputError("is the input file; choose another output name", dst)
    if dst.exists() and not overwrite:
        raise OutputError("exists (use --overwrite to replace it)", dst)
    if not dst.suffix:
        raise OutputError("has no extension, so the container is unknown (use .mp4, .mkv or .mov)", dst)


def check_video_input(src: Path, encode: EncodeConfig | None = None, dst: Path | None = None) -> None:
    """Refuse an input that is not a usable video (and, given them, encoder settings that cannot work for
    ``dst``) at once: before a command spends seconds loading the model."""
    if encode is not None:
        check_encode(encode, dst.suffix if dst is not None else "")
    VideoReader(src).close()


def run_video(
    src: Path,
    dst: Path,
    model: ArrayModel,
    encode: EncodeConfig,
    *,
    overwrite: bool = False,
    progress: Progress | bool | None = None,
    lock: bool = True,
) -> VideoSummary:
    """Deblur every frame of ``src`` into ``dst`` (see :mod:`deblurtool.pipeline` for the guarantees).

    Raises :class:`InputError` for an unusable input (nothing written), :class:`OutputError` for a refused
    output (before any work). A damaged input is not an exception here: every frame that could be decoded is
    written and ``VideoSummary.damage`` says what happened (the command turns it into exit code 1). On any
    exception (Ctrl-C included) nothing is left behind: no temporary file, no folder this call created.
    ``progress`` hears of notes and of each frame done (None: notes are logged). ``lock`` False: the caller
    already holds the output's lock (a Ray driver, for the worker that runs this).
    """
    report = as_progress(progress)
    check_video_paths(src, dst, overwrite)
    stop = threading.Event()
    started = time.perf_counter()
    reader = VideoReader(src, stop=stop)  # an unusable input fails here, before anything is created
    created: list[Path] = []
    try:
        created = make_folders(dst.parent, for_path=dst)
        with output_lock(dst) if lock else contextlib.nullcontext(dst):  # a second job is refused, not raced
            check_video_paths(src, dst, overwrite)  # again: the job that held the lock may have made it
            remove_stale_temps(dst)
            with atomic_write(dst) as tmp:
                writer = VideoWriter(
                    tmp,
                    reader.info,
                    encode,
                    side_streams=reader.side_streams,
                    shown_path=dst,
                    samples=reader.sample_packets,
                    metadata=reader.metadata,
                    video_metadata=reader.video_stream.metadata,
                )
                try:
                    _encode_all(reader, writer, model, report)
                except BaseException:
                    stop.set()
                    writer.abort()  # closed before its temporary file is removed
                    raise
    except BaseException:
        stop.set()
        reader.close()
        remove_empty_folders(created)
        raise
    reader.close()  # only now: the packets it handed out have been muxed
    return VideoSummary(
        src=src,
        dst=dst,
        frames=writer.frames_written,
        seconds=time.perf_counter() - started,
        pix_fmt=writer.pix_fmt,
        copied_streams=len(writer.copied_indices),
        notes=list(writer.notes),
        damage=reader.damage,
    )


def _encode_all(reader: VideoReader, writer: VideoWriter, model: ArrayModel, report: Progress) -> None:
    for note in writer.notes:
        report.note(note)
    reader.start(writer.copied_indices)
    writer.start()
    with report.items(reader.info.path.name, reader.info.frames_total) as advance:
        for item in reader.items():
            if isinstance(item, DecodedFrame):
                writer.put_frame(deblur_frame(model, item, reader.info), item.pts)
                advance()
            else:
                writer.put_packet(item)
    writer.finish()


def deblur_frame(model: ArrayModel, frame: DecodedFrame, info: VideoInfo) -> np.ndarray:
    """``model`` on one decoded frame of the video ``info`` describes: its output checked (size, type) and
    a broken model's error naming the frame."""
    height, width = frame.rgb.shape[:2]
    if (width, height) != (info.width, info.height):
        raise InputError(
            f"frame {frame.index} is {width}x{height} but the video started at {info.width}x{info.height}; "
            "videos that change size part-way are not supported",
            info.path,
        )
    try:
        out = np.asarray(model.deblur_array(frame.rgb))
    except ModelOutputError as e:
        raise ModelOutputError(
            f"frame {frame.index}: {one_line(e)}; nothing was written", info.path
        ) from None
    if out.shape != frame.rgb.shape or out.dtype != frame.rgb.dtype:
        raise DeblurError(
            f"the model returned {out.dtype} {out.shape} for a {frame.rgb.dtype} {frame.rgb.shape} frame"
        )
    return out
