"""``run_video``: deblur every frame of a video into a new one, keeping its streams, timing and size."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import av
import av.container
import av.error
import numpy as np

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError, InputError, ModelOutputError, OutputError, one_line
from deblurtool.fsutil import (
    atomic_write,
    check_writable,
    make_folders,
    output_lock,
    remove_empty_folders,
    remove_stale_temps,
)
from deblurtool.media.image_io import IMAGE_SUFFIXES
from deblurtool.media.time_range import TimeRange
from deblurtool.media.video_codec import check_encode, check_output
from deblurtool.media.video_reader import DecodedFrame, VideoInfo, VideoReader
from deblurtool.media.video_writer import VideoWriter
from deblurtool.pipeline.progress import ArrayModel, Progress, as_progress

if TYPE_CHECKING:
    from deblurtool.compare import CompareWriter


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
    compare: Path | None = None  # the before/after view written beside dst (`video --compare`)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        view = f"; before/after -> {self.compare}" if self.compare is not None else ""
        return (
            f"{self.frames} frames in {self.seconds:.1f} s ({self.fps:.2f} fps) -> {self.dst} "
            f"({self.pix_fmt}, {self.copied_streams} stream(s) copied){view}"
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


def check_compare_paths(src: Path, dst: Path, compare: Path, overwrite: bool) -> None:
    """Refuse a before/after output (``video --compare``) that is the input or the output, a folder, an image
    or extension-less name, or that exists (without ``overwrite``)."""
    if compare.is_dir():
        raise OutputError("is a folder; give --compare a file name such as before_after.mp4", compare)
    for other, what in ((src, "the input"), (dst, "the output")):
        if compare.resolve() == other.resolve() or (
            compare.exists() and other.exists() and os.path.samefile(compare, other)
        ):
            raise OutputError(f"is {what} file; give --compare another name", compare)
    if compare.exists() and not overwrite:
        raise OutputError("exists (use --overwrite to replace it)", compare)
    if not compare.suffix or compare.suffix.lower() in IMAGE_SUFFIXES:
        raise OutputError(
            "the before/after view is a video: give --compare a video name (.mp4, .mkv)", compare
        )


def check_compare_output(
    src: Path, dst: Path, compare: Path, encode: EncodeConfig, info: VideoInfo, overwrite: bool
) -> None:
    """Everything that would refuse the before/after output ``compare`` of the video ``info`` describes, at
    once (before the model loads): its name, then the encoder settings for its container and size."""
    from deblurtool.compare import view_info
    from deblurtool.pipeline.plan import check_encode_for  # (plan imports this module)

    check_compare_paths(src, dst, compare, overwrite)
    check_encode_for(encode, compare)
    check_output(view_info(info, "side-by-side"), encode, compare.suffix)


@contextlib.contextmanager
def compare_lock(src: Path, dst: Path, compare: Path | None, overwrite: bool) -> Iterator[None]:
    """Hold the lock of the before/after output ``compare`` (None: nothing to do) while the body runs: its
    folder made (and removed again on failure if this made it) and tried for writing, a second job into it
    refused, the temporary files of a killed run removed."""
    if compare is None:
        yield
        return
    created = make_folders(compare.parent, for_path=compare)
    try:
        check_writable(compare.parent, for_path=compare)
        with output_lock(compare):
            check_compare_paths(
                src, dst, compare, overwrite
            )  # again: a job that held the lock may have made it
            remove_stale_temps(compare)
            yield
    except BaseException:
        remove_empty_folders(created)
        raise


def check_video_input(src: Path, encode: EncodeConfig | None = None, dst: Path | None = None) -> None:
    """Refuse an input that is not a usable video (and, given them, encoder settings that cannot work for
    ``dst``) at once: before a command spends seconds loading the model."""
    if encode is not None:
        check_encode(encode, dst.suffix if dst is not None else "")
    with VideoReader(src) as reader:
        if encode is not None and dst is not None:
            check_output(reader.info, encode, dst.suffix)


def run_video(
    src: Path,
    dst: Path,
    model: ArrayModel,
    encode: EncodeConfig,
    *,
    overwrite: bool = False,
    progress: Progress | bool | None = None,
    lock: bool = True,
    time_range: TimeRange | None = None,
    compare: Path | None = None,
) -> VideoSummary:
    """Deblur every frame of ``src`` into ``dst`` (see :mod:`deblurtool.pipeline` for the guarantees).

    Raises :class:`InputError` for an unusable input (nothing written), :class:`OutputError` for a refused
    output (before any work). A damaged input is not an exception here: every frame that could be decoded is
    written and ``VideoSummary.damage`` says what happened (the command turns it into exit code 1). On any
    exception (Ctrl-C included) nothing is left behind: no temporary file, no folder this call created.
    ``progress`` hears of notes and of each frame done (None: notes are logged). ``lock`` False: the caller
    already holds the output's lock (a Ray driver, for the worker that runs this). ``time_range``: only that
    slice is deblurred and written, starting at time 0, its audio and subtitles cut to the same span (a slice
    with no frame is an :class:`InputError`, before anything is created). ``compare``: also write the
    before/after view of the input and the result there (side by side, labelled, with the output's timing and
    audio), from the same decoded and deblurred frames; its refusals come before any work too, its lock is
    the caller's when ``lock`` is False, and on any failure neither file is left under its final name.
    """
    src, dst = Path(src), Path(dst)  # (helper B) the public API takes str and os.PathLike paths too
    compare = Path(compare) if compare is not None else None
    report = as_progress(progress)
    check_video_paths(src, dst, overwrite)
    if compare is not None:
        check_compare_paths(src, dst, compare, overwrite)
    stop = threading.Event()
    started = time.perf_counter()
    # An unusable input (or a slice with no frame) fails here, before anything is created.
    reader = VideoReader(src, stop=stop, time_range=time_range)
    created: list[Path] = []
    view_done = False
    try:
        if compare is not None:
            check_compare_output(src, dst, compare, encode, reader.info, overwrite)
        created = make_folders(dst.parent, for_path=dst)
        with contextlib.ExitStack() as locks:
            if lock:  # a second job is refused, not raced
                locks.enter_context(output_lock(dst))
                locks.enter_context(compare_lock(src, dst, compare, overwrite))
            check_video_paths(src, dst, overwrite)  # again: the job that held the lock may have made it
            remove_stale_temps(dst)
            with atomic_write(dst) as tmp:
                with (
                    atomic_write(compare) if compare is not None else contextlib.nullcontext() as tmp_view,
                    _input_again(src, compare) as twin,
                ):
                    writer, view = _writers(reader, encode, tmp, dst, (tmp_view, twin, compare))
                    try:
                        _encode_all(reader, writer, model, report, view, compare)
                    except BaseException:
                        stop.set()
                        writer.abort()  # closed before its temporary file is removed
                        if view is not None:
                            view.abort()
                        raise
                view_done = compare is not None
    except BaseException:
        stop.set()
        reader.close()
        if view_done and compare is not None:  # written, but the result itself failed at the last step
            compare.unlink(missing_ok=True)
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
        notes=list(writer.notes) + (_view_notes(view, writer, compare) if view is not None else []),
        damage=reader.damage,
        compare=compare,
    )


@contextlib.contextmanager
def _input_again(src: Path, compare: Path | None) -> Iterator[av.container.InputContainer | None]:
    """For a before/after view (``compare`` not None): ``src`` opened a second time, closed afterwards. The
    view's writer decodes the audio it re-encodes (a slice's edges) with this file's decoders: a decoder
    must not be shared with the result's writer, whose thread decodes the same packets at the same time."""
    if compare is None:
        yield None
        return
    try:
        twin = av.open(str(src))
    except (av.error.FFmpegError, OSError) as e:
        raise InputError(f"could not be opened again for the before/after view ({e})", src) from None
    with twin:
        yield twin


def _writers(
    reader: VideoReader,
    encode: EncodeConfig,
    tmp: Path,
    dst: Path,
    view_parts: tuple[Path | None, av.container.InputContainer | None, Path | None],
) -> tuple[VideoWriter, CompareWriter | None]:
    """The writer of the result into ``tmp`` and, given ``view_parts`` (its temporary file, the input opened
    again, its final name), of the before/after view."""
    from deblurtool.compare import CompareWriter

    tmp_view, twin, compare = view_parts

    writer = VideoWriter.for_reader(tmp, reader, encode, shown_path=dst)
    if tmp_view is None or twin is None:
        return writer, None
    try:
        view = CompareWriter(
            tmp_view,
            reader.info,
            encode,
            side_streams=[twin.streams[s.index] for s in reader.side_streams],  # (see _input_again)
            samples=reader.sample_packets,
            metadata=reader.metadata,
            video_metadata=reader.video_stream.metadata,
            cut=reader.cut,
            shown_path=compare,
        )
        return writer, view
    except BaseException:
        writer.abort()
        raise


def _view_notes(view: CompareWriter, writer: VideoWriter, compare: Path | None) -> list[str]:
    """The view's notes that the result's do not already say, naming the view's file."""
    return [f"note: {compare}: {n.removeprefix('note: ')}" for n in view.notes if n not in writer.notes]


def _encode_all(
    reader: VideoReader,
    writer: VideoWriter,
    model: ArrayModel,
    report: Progress,
    view: CompareWriter | None = None,
    compare: Path | None = None,
) -> None:
    for note in writer.notes:
        report.note(note)
    if view is not None:
        for note in _view_notes(view, writer, compare):
            report.note(note)
    view_streams = view.copied_indices if view is not None else frozenset()
    reader.start(writer.copied_indices | view_streams)
    writer.start()
    if view is not None:
        view.start()
    with report.items(reader.info.path.name, reader.info.frames_total) as advance:
        for item in reader.items():
            if isinstance(item, DecodedFrame):
                out = deblur_frame(model, item, reader.info)
                if view is not None:
                    view.put(item.rgb, out, item.pts)
                writer.put_frame(out, item.pts, item.alpha)
                advance()
                continue
            # The view's writer copies the packet; the result's writer takes it itself and re-points it at
            # its own stream, so the view goes first.
            if item.stream.index in view_streams:
                view.put_packet(item)  # type: ignore[union-attr]
            if item.stream.index in writer.copied_indices:
                writer.put_packet(item)
    writer.finish()
    if view is not None:
        view.finish()


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
