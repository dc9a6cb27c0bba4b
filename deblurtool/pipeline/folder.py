"""The local runner: a plan's units one by one in this process (``run_local``), and ``run_folder``, which
deblurs every image and video under a folder into a mirror of it, resumably. Videos are done as
``run_video`` does them, into the same relative path and container."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np

from deblurtool.config import EncodeConfig
from deblurtool.errors import ModelOutputError, one_line
from deblurtool.fsutil import make_folders
from deblurtool.media.image_io import merge_from_model, read_image, split_for_model, write_image
from deblurtool.pipeline.plan import (
    FolderSummary,
    JobResult,
    Plan,
    Unit,
    failure_reason,
    file_note,
    plan_folder,
)
from deblurtool.pipeline.progress import ArrayModel, Progress, as_progress
from deblurtool.pipeline.video import VideoSummary, run_video


def _default_signature(model: ArrayModel) -> str:
    from deblurtool.inference import Deblurrer  # a Deblurrer exists already, so torch is imported anyway

    return model.signature if isinstance(model, Deblurrer) else type(model).__name__


def run_folder(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
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
    with plan_folder(Path(src), Path(dst), encode, report) as plan:
        return run_local(plan, model, signature=signature, overwrite=overwrite, progress=report).summary


def run_local(
    plan: Plan, model: ArrayModel, *, signature: str, overwrite: bool, progress: Progress
) -> JobResult:
    """Consume ``plan``'s units here, one by one, with ``model``. In a folder, a unit's failure is recorded
    and the next one goes on (a model that returns NaN stops the run: every other file would fail alike); a
    single video's failure raises, as :func:`run_video` does. Progress counts frames (an image as one)."""
    started = time.perf_counter()
    result = JobResult(plan.summary)
    units = plan.units(signature, overwrite=overwrite)
    if plan.single:
        for unit in units:
            video = run_video(unit.src, unit.out, model, plan.encode, overwrite=overwrite, progress=progress,
                              lock=False, time_range=plan.time_range, compare=plan.compare)  # fmt: skip
            plan.finished(unit.rel, unit.src, video.damage, video.frames)
            result.videos[unit.rel] = video
    else:
        with progress.items(plan.label, sum(u.frames for u in units)) as advance:
            for unit in units:
                try:
                    made = deblur_unit(model, unit, plan.encode, _FileProgress(progress, unit.src, advance))
                except ModelOutputError as e:  # the model itself is broken: every other file would fail alike
                    raise ModelOutputError(f"{one_line(e)}; the run stopped", unit.src) from None
                except (
                    Exception
                ) as e:  # one file's failure must not stop the batch; Ctrl-C (not an Exception) does
                    plan.failed(unit.src, failure_reason(e))
                    continue
                if made is None:  # an image
                    advance()
                    plan.finished(unit.rel, unit.src)
                else:
                    plan.finished(unit.rel, unit.src, made.damage, made.frames)
                    result.videos[unit.rel] = made
    plan.summary.seconds = time.perf_counter() - started
    return result


def deblur_unit(
    model: ArrayModel, unit: Unit, encode: EncodeConfig, progress: Progress
) -> VideoSummary | None:
    """An image or a whole video of a folder, written temp-then-rename to ``unit.out`` (a video exactly as
    `video` does it, its notes and frames going to ``progress``); returns the video's summary (None for an
    image). The caller holds the output's lock."""
    if unit.kind == "image":
        deblur_image(model, unit.src, unit.out, progress)
        return None
    return run_video(unit.src, unit.out, model, encode, overwrite=True, progress=progress, lock=False)


def deblur_image(model: ArrayModel, src_file: Path, out: Path, progress: Progress | None = None) -> None:
    """One image of a folder (every page), written temp-then-rename to ``out``; what the output cannot keep
    of the file (a CMYK JPEG comes out RGB) is said to ``progress``."""
    image = read_image(src_file)
    if progress is not None:
        for note in image.notes:
            progress.note(note)
    pages = []
    for page in image.pages:  # every page of a multi-page TIFF, every frame of an animated WebP
        rgb, alpha = split_for_model(page)
        out_rgb = np.asarray(model.deblur_array(rgb))
        pages.append(merge_from_model(out_rgb, alpha, page))
    make_folders(out.parent, for_path=out)
    write_image(out, image.with_pages(pages), overwrite=True)


class _FileProgress:
    """The folder's progress, as seen by one of its videos: its notes name the file, its frames advance the
    folder's count (the folder's total counts frames, so the bar moves while a long video is deblurred)."""

    def __init__(self, report: Progress, path: Path, advance: Callable[[], None]) -> None:
        self.report, self.path, self.advance = report, path, advance

    def note(self, text: str) -> None:
        self.report.note(file_note(self.path, text))

    def failed(self, path: Path, reason: str) -> None:
        self.report.failed(path, reason)

    def items(self, label: str, total: int | None) -> AbstractContextManager[Callable[[], None]]:
        return contextlib.nullcontext(self.advance)
