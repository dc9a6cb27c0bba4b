"""``run_folder``: deblur every image under a folder into a mirror of it, one file at a time, resumably."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deblurtool.errors import InputError, ModelOutputError, OutputError, one_line
from deblurtool.fsutil import check_writable, make_folders, output_lock, remove_stale_temps_under
from deblurtool.media.image_io import (
    IMAGE_SUFFIXES,
    merge_from_model,
    read_image,
    split_for_model,
    write_image,
)
from deblurtool.pipeline.manifest import Manifest
from deblurtool.pipeline.progress import ArrayModel, Progress, as_progress


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


@dataclass
class _Scan:
    images: list[Path] = field(default_factory=list)  # relative to the input folder
    ignored: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)


def _scan(src: Path, dst: Path) -> _Scan:
    """The supported images under ``src`` (relative paths; each folder's files sorted, then its subfolders),
    how many other files were seen, and every entry that could not be listed or read, with the reason:
    nothing is left out silently. Linked folders are followed, each real folder once (a link loop cannot hang
    us); a link to the output folder is not an input."""
    scan = _Scan()
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
            elif Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES:
                scan.ignored += 1
            elif _is_file(entry):
                scan.images.append(rel / entry.name)
            else:
                what = "a link to nothing" if entry.is_symlink() else "not a regular file"
                scan.failed.append((path, f"cannot read this image ({what})"))
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
) -> FolderSummary:
    """Deblur every image under ``src`` into the same relative path under ``dst``, in the same format.

    A file that cannot be read, deblurred or written is reported in one line (``progress.failed``) and
    counted in ``FolderSummary.failed``; the others go on. ``signature`` names the settings (None: a
    Deblurrer's own :attr:`~deblurtool.inference.Deblurrer.signature`, else the model's class name); an
    existing output recorded with the same input size/mtime and signature is skipped as done; one recorded
    differently is redone; one with no record is kept unless ``overwrite``. Ctrl-C stops after cleaning up the
    image in progress.
    """
    report = as_progress(progress)
    check_folder_paths(src, dst)
    signature = signature if signature is not None else _default_signature(model)
    scan = _scan(src, dst)
    _check_has_images(src, scan)
    make_folders(dst, for_path=dst)
    check_writable(dst)  # a read-only output is one line now, not one failure per image after the model ran
    with output_lock(dst):  # a second job into the same folder is refused, not raced
        remove_stale_temps_under(dst)  # left by a run that was killed (power cut, SIGKILL) mid-image
        return _run_images(src, dst, model, scan, report, signature, overwrite)


def _run_images(
    src: Path, dst: Path, model: ArrayModel, scan: _Scan, report: Progress, signature: str, overwrite: bool
) -> FolderSummary:
    manifest = Manifest(dst)
    summary = FolderSummary(ignored=scan.ignored)
    for path, reason in scan.failed:
        summary.failed.append((path, reason))
        report.failed(path, reason)
    started = time.perf_counter()
    with report.items(src.name or str(src), len(scan.images)) as advance:
        for rel in scan.images:
            src_file, out = src / rel, dst / rel
            outcome, reason = _process_one(model, src_file, out, rel, manifest, signature, overwrite)
            if outcome == "failed":
                summary.failed.append((src_file, reason))
                report.failed(src_file, reason)
            else:
                setattr(summary, outcome, getattr(summary, outcome) + 1)
            advance()
    summary.seconds = time.perf_counter() - started
    return summary


def check_folder_input(src: Path, dst: Path) -> None:
    """:func:`check_folder_paths`, and refuse an input folder without images at once: before a command spends
    seconds loading the model."""
    check_folder_paths(src, dst)
    _check_has_images(src, _scan(src, dst))


def _check_has_images(src: Path, scan: _Scan) -> None:
    if scan.images:
        return
    kinds = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
    seen = f"{scan.ignored} other file(s) seen; for a video use `deblurtool video`"
    if scan.failed:
        path, reason = scan.failed[0]
        seen += f"; {len(scan.failed)} entry(ies) could not be read, e.g. {path}: {reason}"
    raise InputError(f"holds no images ({kinds}); {seen}", src)


def _deblur_image(model: ArrayModel, src_file: Path, out: Path) -> None:
    image = read_image(src_file)
    pages = []
    for page in image.pages:  # every page of a multi-page TIFF, every frame of an animated WebP
        rgb, alpha = split_for_model(page)
        out_rgb = np.asarray(model.deblur_array(rgb))
        pages.append(merge_from_model(out_rgb, alpha, page))
    make_folders(out.parent, for_path=out)
    write_image(out, image.with_pages(pages), overwrite=True)


def _process_one(
    model: ArrayModel,
    src_file: Path,
    out: Path,
    rel: Path,
    manifest: Manifest,
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
    except ModelOutputError as e:  # the model itself is broken: every other image would fail alike
        raise ModelOutputError(f"{one_line(e)}; the run stopped", src_file) from None
    except Exception as e:  # one file's failure must not stop the batch; Ctrl-C (not an Exception) does
        return "failed", _failure_reason(e)
    return "done", ""


def _failure_reason(e: Exception) -> str:
    """One line in words for a failed image (reported after the input's path): an output's trouble names the
    output, an OS error says what failed, not Python's repr of it."""
    if isinstance(e, OutputError) and e.path:
        return f"output {e.path}: {one_line(e)}"
    if isinstance(e, OSError):
        return _os_reason(e) + (f": {e.filename}" if e.filename else "")
    return one_line(e)
