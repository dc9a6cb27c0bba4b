"""Run a model over a whole video or a folder of images, safely: bounded memory, atomic outputs, resumable.

Video: decode thread -> bounded queue -> model (this thread) -> bounded queue -> encode thread. The output
is written under a temporary name in the destination folder and renamed only when complete; on any error or
Ctrl-C both threads stop (a shared Event they poll), the temporary file is removed and nothing exists under
the final name.

Folder: images one by one, each written temp-then-rename; one bad file fails alone; finished outputs are
recorded in a small manifest in the destination so a re-run skips exactly what is done and redoes the rest.

The model is anything with ``deblur_array(img) -> img`` (HxWx3 uint8 or uint16 in, same shape and dtype out),
e.g. :class:`deblurtool.inference.Deblurrer`.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError, InputError, OutputError
from deblurtool.media.image_io import (
    IMAGE_SUFFIXES,
    ImageData,
    merge_from_model,
    read_image,
    split_for_model,
    temp_path,
    write_image,
)
from deblurtool.media.video_reader import DecodedFrame, VideoInfo, VideoReader
from deblurtool.media.video_writer import VideoWriter

MANIFEST_NAME = ".deblurtool-done.jsonl"

_console = Console(stderr=True, highlight=False)


class ArrayModel(Protocol):
    """What the pipeline needs of a model: HxWx3 uint8/uint16 RGB in, the same shape and dtype out."""

    def deblur_array(self, img: np.ndarray) -> np.ndarray: ...


# -- results -------------------------------------------------------------------------------------------------


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


@dataclass
class FolderSummary:
    """What :func:`run_folder` did: ``failed`` pairs each failed input with its one-line reason;
    ``skipped_done`` outputs were recorded as made from the same input and settings; ``skipped_existing``
    outputs existed without such a record and were kept (``--overwrite`` replaces them); ``ignored`` counts
    files that are not images of a supported format."""

    done: int = 0
    skipped_done: int = 0
    skipped_existing: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    ignored: int = 0
    seconds: float = 0.0

    @property
    def skipped(self) -> int:
        return self.skipped_done + self.skipped_existing

    def line(self) -> str:
        text = f"{self.done} done, {self.skipped} skipped, {len(self.failed)} failed"
        details = []
        if self.skipped_existing:
            details.append(f"{self.skipped_existing} existing output(s) kept; --overwrite replaces them")
        if self.ignored:
            details.append(f"{self.ignored} non-image file(s) ignored")
        return text + (f" ({'; '.join(details)})" if details else "")


# -- progress ------------------------------------------------------------------------------------------------


class _RateColumn(ProgressColumn):
    """Items per second (frames or images), from rich's moving speed estimate."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} {self.unit}" if speed else f"-- {self.unit}", style="progress.data.speed")


def _progress(enabled: bool, unit: str, console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )


# -- video ---------------------------------------------------------------------------------------------------


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


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def make_folders(folder: Path, *, for_path: Path) -> list[Path]:
    """Create ``folder`` and its missing parents (users type ``out/sharp.mp4``); return the folders this call
    created, deepest first, so a failed job can remove them again. A parent that is a file, or one we may not
    write, is an :class:`OutputError` naming ``for_path``."""
    missing: list[Path] = []
    probe = folder
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the folder {folder} ({e.strerror or e})", for_path) from None
    return missing


def _remove_empty_folders(folders: list[Path]) -> None:
    for folder in folders:  # deepest first; a folder that is not empty (someone else's files) stays
        with contextlib.suppress(OSError):
            folder.rmdir()


def run_video(
    src: Path,
    dst: Path,
    model: ArrayModel,
    encode: EncodeConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> VideoSummary:
    """Deblur every frame of ``src`` into ``dst`` (see the module docstring for the guarantees).

    Raises :class:`InputError` for an unusable input (nothing written), :class:`OutputError` for a refused
    output (before any work). A damaged input is not an exception here: every frame that could be decoded is
    written and ``VideoSummary.damage`` says what happened (the command turns it into exit code 1). On any
    exception (Ctrl-C included) nothing is left behind: no temporary file, no folder this call created.
    """
    console = console or _console
    check_video_paths(src, dst, overwrite)
    tmp = temp_path(dst)
    stop = threading.Event()
    started = time.perf_counter()
    reader = VideoReader(src, stop=stop)  # an unusable input fails here, before anything is created
    writer: VideoWriter | None = None
    created: list[Path] = []
    try:
        created = make_folders(dst.parent, for_path=dst)
        _remove_stale_temps(dst)
        writer = VideoWriter(tmp, reader.info, encode, side_streams=reader.side_streams, shown_path=dst)
        for note in writer.notes:
            console.print(note, markup=False, soft_wrap=True)
        reader.start(writer.copied_indices)
        writer.start()
        with _progress(progress, "fps", console) as bar:
            task = bar.add_task(src.name, total=reader.info.frames_total)
            for item in reader.items():
                if isinstance(item, DecodedFrame):
                    writer.put_frame(_deblur_frame(model, item, reader.info), item.pts)
                    bar.advance(task)
                else:
                    writer.put_packet(item)
            bar.update(task, total=bar.tasks[0].completed)
        writer.finish()
        os.replace(tmp, dst)
    except BaseException:
        stop.set()
        if writer is not None:
            writer.abort()
        reader.close()
        _unlink_quietly(tmp)
        _remove_empty_folders(created)
        raise
    reader.close()
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


def _deblur_frame(model: ArrayModel, frame: DecodedFrame, info: VideoInfo) -> np.ndarray:
    height, width = frame.rgb.shape[:2]
    if (width, height) != (info.width, info.height):
        raise InputError(
            f"frame {frame.index} is {width}x{height} but the video started at {info.width}x{info.height}; "
            "videos that change size part-way are not supported",
            info.path,
        )
    out = np.asarray(model.deblur_array(frame.rgb))
    if out.shape != frame.rgb.shape or out.dtype != frame.rgb.dtype:
        raise DeblurError(
            f"the model returned {out.dtype} {out.shape} for a {frame.rgb.dtype} {frame.rgb.shape} frame"
        )
    return out


# -- folder --------------------------------------------------------------------------------------------------


def check_folder_paths(src: Path, dst: Path) -> None:
    if not src.exists():
        raise InputError("no such folder", src)
    if not src.is_dir():
        raise InputError("is not a folder (use `deblurtool video` for a video file)", src)
    if dst.exists() and not dst.is_dir():
        raise OutputError("exists and is not a folder", dst)
    src_r, dst_r = src.resolve(), dst.resolve()
    if dst_r == src_r or src_r in dst_r.parents:
        raise OutputError(f"is inside the input folder {src}; choose an output folder outside it", dst)


def _scan(src: Path) -> tuple[list[Path], int]:
    """Relative paths of the supported images under ``src`` (sorted, recursive, symlinked folders not
    followed so a link loop cannot hang us) and how many other files were seen."""
    images: list[Path] = []
    ignored = 0
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            rel = Path(root, name).relative_to(src)
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                images.append(rel)
            else:
                ignored += 1
    return images, ignored


class _Manifest:
    """Append-only record (JSON lines) of finished outputs: which input (size, mtime) and settings made each.

    Appending one line per image keeps the cost flat for any folder size; a line cut short by a crash is
    ignored on reading, and the last line for a path wins.
    """

    def __init__(self, dst: Path) -> None:
        self.path = dst / MANIFEST_NAME
        self.records: dict[str, dict[str, object]] = {}
        with contextlib.suppress(FileNotFoundError):
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if isinstance(rec, dict) and isinstance(rec.get("path"), str):
                        self.records[rec["path"]] = rec

    @staticmethod
    def _entry(rel: Path, st: os.stat_result, signature: str) -> dict[str, object]:
        return {
            "path": rel.as_posix(),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "signature": signature,
        }

    def knows(self, rel: Path) -> bool:
        return rel.as_posix() in self.records

    def matches(self, rel: Path, st: os.stat_result, signature: str) -> bool:
        return self.records.get(rel.as_posix()) == self._entry(rel, st, signature)

    def add(self, rel: Path, st: os.stat_result, signature: str) -> None:
        entry = self._entry(rel, st, signature)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        self.records[rel.as_posix()] = entry


def _remove_stale_temps(out: Path) -> None:
    # Left by a run that was killed (power cut, SIGKILL) before it could clean up.
    pattern = glob.escape(f".{out.name}.") + "*" + glob.escape(f".tmp{out.suffix}")
    for stale in out.parent.glob(pattern):
        _unlink_quietly(stale)


def _deblur_image(model: ArrayModel, src_file: Path, out: Path) -> None:
    image = read_image(src_file)
    rgb, alpha = split_for_model(image.pixels)
    out_rgb = np.asarray(model.deblur_array(rgb))
    pixels = merge_from_model(out_rgb, alpha, image.pixels)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(out)
    write_image(out, ImageData(pixels, image.metadata_types, image.metadata), overwrite=True)


def one_line(e: BaseException) -> str:
    """A one-line reason for ``e``: a DeblurError's message without its path, else ``Type: first line``."""
    if isinstance(e, DeblurError):
        return str(e).removeprefix(f"{e.path}: ") if e.path else str(e)
    return f"{type(e).__name__}: {e}".splitlines()[0]


def run_folder(
    src: Path,
    dst: Path,
    model: ArrayModel,
    *,
    overwrite: bool = False,
    progress: bool = True,
    signature: str | None = None,
    console: Console | None = None,
) -> FolderSummary:
    """Deblur every image under ``src`` into the same relative path under ``dst``, in the same format.

    A file that cannot be read, deblurred or written is reported in one line and counted in
    ``FolderSummary.failed``; the others go on. ``signature`` names the settings (weights, precision, tiles);
    an existing output recorded with the same input size/mtime and signature is skipped as done; one recorded
    differently is redone; one with no record is kept unless ``overwrite``. Ctrl-C stops after cleaning up the
    image in progress.
    """
    console = console or _console
    check_folder_paths(src, dst)
    signature = signature if signature is not None else str(getattr(model, "signature", type(model).__name__))
    images, ignored = _scan(src)
    if not images:
        kinds = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
        seen = f"{ignored} other file(s) seen; for a video use `deblurtool video`"
        raise InputError(f"holds no images ({kinds}); {seen}", src)
    make_folders(dst, for_path=dst)
    manifest = _Manifest(dst)
    summary = FolderSummary(ignored=ignored)
    started = time.perf_counter()
    with _progress(progress, "img/s", console) as bar:
        task = bar.add_task(src.name or str(src), total=len(images))
        for rel in images:
            src_file, out = src / rel, dst / rel
            outcome, reason = _process_one(model, src_file, out, rel, manifest, signature, overwrite)
            if outcome == "failed":
                summary.failed.append((src_file, reason))
                console.print(f"[red]failed:[/] {escape(f'{src_file}: {reason}')}", soft_wrap=True)
            else:
                setattr(summary, outcome, getattr(summary, outcome) + 1)
            bar.advance(task)
    summary.seconds = time.perf_counter() - started
    return summary


def _process_one(
    model: ArrayModel,
    src_file: Path,
    out: Path,
    rel: Path,
    manifest: _Manifest,
    signature: str,
    overwrite: bool,
) -> tuple[str, str]:
    """Returns (outcome, reason): outcome is a FolderSummary counter name ('done', 'skipped_done',
    'skipped_existing') or 'failed' with a one-line reason."""
    try:
        st = src_file.stat()
        if out.exists() and not overwrite:
            if manifest.matches(rel, st, signature):
                return "skipped_done", ""
            if not manifest.knows(rel):
                return "skipped_existing", ""
        _deblur_image(model, src_file, out)
        manifest.add(rel, st, signature)
    except Exception as e:  # one file's failure must not stop the batch; Ctrl-C (not an Exception) does
        return "failed", one_line(e)
    return "done", ""
