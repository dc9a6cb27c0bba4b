"""``run_folder``: deblur every image and video under a folder into a mirror of it, one file at a time,
resumably. Videos are done as ``run_video`` does them, into the same relative path and container."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deblurtool.config import EncodeConfig
from deblurtool.errors import InputError, ModelOutputError, OutputError, one_line
from deblurtool.fsutil import check_writable, make_folders, output_lock, remove_stale_temps_under
from deblurtool.media.image_io import (
    IMAGE_SUFFIXES,
    merge_from_model,
    read_image,
    split_for_model,
    write_image,
)
from deblurtool.media.video_probe import VIDEO_SUFFIXES
from deblurtool.pipeline.manifest import Manifest, video_signature
from deblurtool.pipeline.progress import ArrayModel, Progress, as_progress
from deblurtool.pipeline.video import run_video


@dataclass
class FolderSummary:
    """What :func:`run_folder` did: ``failed`` pairs each failed input with its one-line reason;
    ``skipped_done`` outputs were recorded as made from the same input and settings; ``skipped_existing``
    outputs existed without such a record and were kept (``--overwrite`` replaces them); ``ignored`` counts
    files that are neither images nor videos of a supported format; ``images`` and ``videos`` count the
    inputs of each kind found."""

    images: int = 0
    videos: int = 0
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
        text = f"{self.images} image(s), {self.videos} video(s): "
        text += f"{self.done} done, {self.skipped} skipped, {len(self.failed)} failed"
        details = []
        if self.skipped_existing:
            details.append(f"{self.skipped_existing} existing output(s) kept; --overwrite replaces them")
        if self.ignored:
            details.append(f"{self.ignored} other file(s) ignored")
        return text + (f" ({'; '.join(details)})" if details else "")


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


def is_video(rel: Path) -> bool:
    return rel.suffix.lower() in VIDEO_SUFFIXES


@dataclass
class FolderScan:
    """The inputs of a folder: ``files`` (images and videos, relative to the folder), how many other files
    were ``ignored``, and the entries that ``failed`` to be listed or read, each with its one-line reason."""

    files: list[Path] = field(default_factory=list)
    ignored: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def videos(self) -> int:
        return sum(map(is_video, self.files))

    def summary(self) -> FolderSummary:
        """An empty summary of this scan: its counts, and its failures."""
        videos = self.videos
        summary = FolderSummary(images=len(self.files) - videos, videos=videos, ignored=self.ignored)
        summary.failed.extend(self.failed)
        return summary


def scan_folder(src: Path, dst: Path) -> FolderScan:
    """The supported images and videos under ``src`` (relative paths; each folder's files sorted, then its
    subfolders), how many other files were seen, and every entry that could not be listed or read, with the
    reason: nothing is left out silently. Linked folders are followed, each real folder once (a link loop
    cannot hang us); a link to the output folder is not an input."""
    scan = FolderScan()
    seen: set[tuple[int, int]] = set()
    outputs = dst.resolve()
    stack = [(src, Path())]
    while stack:
        folder, rel = stack.pop()
        try:
            st = folder.stat()
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            scan.failed.append((folder, f"cannot list this folder ({_os_reason(e)})"))
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        subfolders = []
        for entry in entries:
            path = Path(entry.path)
            if _is_dir(entry):
                real = path.resolve()
                if real != outputs and outputs not in real.parents:
                    subfolders.append((path, rel / entry.name))
            elif (suffix := Path(entry.name).suffix.lower()) not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                scan.ignored += 1
            elif _is_file(entry):
                scan.files.append(rel / entry.name)
            else:
                what = "a link to nothing" if entry.is_symlink() else "not a regular file"
                kind = "video" if suffix in VIDEO_SUFFIXES else "image"
                scan.failed.append((path, f"cannot read this {kind} ({what})"))
        stack.extend(reversed(subfolders))
    return scan


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _os_reason(e: OSError) -> str:
    return str(e.strerror or e)


def _default_signature(model: ArrayModel) -> str:
    from deblurtool.inference import Deblurrer  # a Deblurrer exists already, so torch is imported anyway

    return model.signature if isinstance(model, Deblurrer) else type(model).__name__


def run_folder(
    src: Path,
    dst: Path,
    model: ArrayModel,
    *,
    overwrite: bool = False,
    progress: Progress | bool | None = None,
    signature: str | None = None,
    encode: EncodeConfig | None = None,
) -> FolderSummary:
    """Deblur every image and video under ``src`` into the same relative path under ``dst``, in the same
    format; videos as :func:`run_video` does them, with ``encode`` (default: each container's usual encoder).

    A file that cannot be read, deblurred or written is reported in one line (``progress.failed``) and
    counted in ``FolderSummary.failed``; the others go on. A damaged video is kept as far as it could be
    decoded, recorded, and listed as failed. ``signature`` names the settings (None: a Deblurrer's own
    :attr:`~deblurtool.inference.Deblurrer.signature`, else the model's class name; a video's adds the
    encoder settings); an existing output recorded with the same input size/mtime and signature is skipped as
    done; one recorded differently is redone; one with no record is kept unless ``overwrite``. Ctrl-C stops
    after cleaning up the file in progress.
    """
    report = as_progress(progress)
    signature = signature if signature is not None else _default_signature(model)
    encode = encode or EncodeConfig()
    with folder_job(src, dst) as scan:
        summary = scan.summary()
        for path, reason in scan.failed:
            report.failed(path, reason)
        manifest = Manifest(dst)
        started = time.perf_counter()
        with report.items(src.name or str(src), len(scan.files)) as advance:
            for rel in scan.files:
                src_file, out = src / rel, dst / rel
                video = encode if is_video(rel) else None
                sig = video_signature(signature, encode) if video else signature
                outcome, reason = _process_one(
                    model, src_file, out, rel, manifest, sig, overwrite, video, report
                )
                if outcome == "failed":
                    summary.failed.append((src_file, reason))
                    report.failed(src_file, reason)
                else:
                    setattr(summary, outcome, getattr(summary, outcome) + 1)
                advance()
        summary.seconds = time.perf_counter() - started
    return summary


@contextlib.contextmanager
def folder_job(src: Path, dst: Path) -> Iterator[FolderScan]:
    """What every folder job checks and holds before its first file: the paths, the scan (a folder with
    nothing to do is refused), the output folder made and writable (a read-only one is one line now, not one
    failure per file after the model ran), its lock (a second job into it is refused, not raced) and no
    temporary file left by a killed run. Yields the scan; the lock is held until the body ends."""
    check_folder_paths(src, dst)
    scan = scan_folder(src, dst)
    _check_has_inputs(src, scan)
    make_folders(dst, for_path=dst)
    check_writable(dst)
    with output_lock(dst):
        remove_stale_temps_under(dst)  # left by a run that was killed (power cut, SIGKILL) mid-file
        yield scan


def check_folder_input(src: Path, dst: Path) -> None:
    """:func:`check_folder_paths`, and refuse an input folder without images or videos at once: before a
    command spends seconds loading the model."""
    check_folder_paths(src, dst)
    _check_has_inputs(src, scan_folder(src, dst))


def _check_has_inputs(src: Path, scan: FolderScan) -> None:
    if scan.files:
        return
    kinds = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES | VIDEO_SUFFIXES))
    seen = f"{scan.ignored} other file(s) seen"
    if scan.failed:
        path, reason = scan.failed[0]
        seen += f"; {len(scan.failed)} entry(ies) could not be read, e.g. {path}: {reason}"
    raise InputError(f"holds no images or videos ({kinds}); {seen}", src)


def deblur_image(model: ArrayModel, src_file: Path, out: Path) -> None:
    """One image of a folder (every page), written temp-then-rename to ``out``."""
    image = read_image(src_file)
    pages = []
    for page in image.pages:  # every page of a multi-page TIFF, every frame of an animated WebP
        rgb, alpha = split_for_model(page)
        out_rgb = np.asarray(model.deblur_array(rgb))
        pages.append(merge_from_model(out_rgb, alpha, page))
    make_folders(out.parent, for_path=out)
    write_image(out, image.with_pages(pages), overwrite=True)


def deblur_video(
    model: ArrayModel, src_file: Path, out: Path, encode: EncodeConfig, report: Progress
) -> str | None:
    """One video of a folder, exactly as `video` does it (its notes go to ``report``, naming the file);
    returns the failure line of a damaged input, whose output is kept."""
    summary = run_video(src_file, out, model, encode, overwrite=True, progress=_FileNotes(report, src_file))
    return damage_line(summary.damage, summary.frames)


def damage_line(damage: str | None, frames: int) -> str | None:
    """How a damaged video of a folder is listed among the failures (its output holds what was decoded)."""
    return f"{damage}; the {frames} frame(s) that could be decoded were deblurred" if damage else None


def file_note(path: Path, text: str) -> str:
    """A note of one file of a folder, naming it: ``note: PATH: text``."""
    return f"note: {path}: {text.removeprefix('note: ')}"


class _FileNotes:
    """The folder's report, as seen by one video: its notes name the file, its frames are not counted (the
    folder's progress counts files)."""

    def __init__(self, report: Progress, path: Path) -> None:
        self.report, self.path = report, path

    def note(self, text: str) -> None:
        self.report.note(file_note(self.path, text))

    def failed(self, path: Path, reason: str) -> None:
        self.report.failed(path, reason)

    def items(self, label: str, total: int | None) -> AbstractContextManager[Callable[[], None]]:
        return contextlib.nullcontext(lambda: None)


def _process_one(
    model: ArrayModel,
    src_file: Path,
    out: Path,
    rel: Path,
    manifest: Manifest,
    signature: str,
    overwrite: bool,
    video: EncodeConfig | None,
    report: Progress,
) -> tuple[str, str]:
    """Returns (outcome, reason): outcome is a FolderSummary counter name ('done', 'skipped_done',
    'skipped_existing') or 'failed' with a one-line reason. ``video``: the file is a video, encoded so."""
    try:
        st = src_file.stat()
        skip = manifest.skip(rel, st, signature, out, overwrite)
        if skip:
            return skip, ""
        damage = None
        if video is None:
            deblur_image(model, src_file, out)
        else:
            damage = deblur_video(model, src_file, out, video, report)
        manifest.add(rel, st, signature)
        if damage:
            return "failed", damage
    except ModelOutputError as e:  # the model itself is broken: every other image would fail alike
        raise ModelOutputError(f"{one_line(e)}; the run stopped", src_file) from None
    except Exception as e:  # one file's failure must not stop the batch; Ctrl-C (not an Exception) does
        return "failed", failure_reason(e)
    return "done", ""


def failure_reason(e: Exception) -> str:
    """One line in words for a failed file (reported after the input's path): an output's trouble names the
    output, an OS error says what failed, not Python's repr of it."""
    if isinstance(e, OutputError) and e.path:
        return f"output {e.path}: {one_line(e)}"
    if isinstance(e, OSError):
        return _os_reason(e) + (f": {e.filename}" if e.filename else "")
    return one_line(e)
