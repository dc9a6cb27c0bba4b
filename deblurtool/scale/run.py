"""Entry points of `folder --ray` and `video --ray`: check and lock the output as without Ray, connect, start
the workers, plan, run, summarise. The commands call :func:`run_ray_folder` and :func:`run_ray_video`.

The driver holds the output's lock (the folder's, or the video file's) for the whole job, so a second job
into the same output is refused as without Ray; the lock file doubles as the marker every worker must see
(else the output is not on shared storage)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Generic, TypeVar

from deblurtool.config import EncodeConfig, RuntimeConfig, TileConfig
from deblurtool.errors import DeblurError
from deblurtool.fsutil import lock_path, make_folders, output_lock, remove_empty_folders, remove_stale_temps
from deblurtool.pipeline.folder import FolderSummary, folder_job
from deblurtool.pipeline.manifest import Manifest
from deblurtool.pipeline.video import VideoSummary, check_video_paths
from deblurtool.scale.driver import Events, JobProgress, Pool, as_job_progress, connect, worker_resources
from deblurtool.scale.jobs import RayJob
from deblurtool.scale.join import JoinSummary
from deblurtool.scale.worker import UnitResult, WorkerSpec

log = logging.getLogger("deblurtool.scale")
S = TypeVar("S", FolderSummary, VideoSummary)
Say = Callable[[str], None]


@dataclass
class RayOutcome(Generic[S]):
    """What a Ray job did: the same summary as the single-process path, plus one line per worker."""

    summary: S
    workers: list[str]
    reused_chunks: int = 0


def worker_spec(
    weights: Path | None, tile: TileConfig | None, runtime: RuntimeConfig, encode: EncodeConfig
) -> WorkerSpec:
    """The CLI's model and encoder settings as every worker will apply them (the weights' path made absolute;
    ``cuda:N`` is ``cuda``: Ray gives each GPU worker its own device, which it sees as the only one)."""
    device = "cuda" if runtime.device.startswith("cuda:") else runtime.device
    return WorkerSpec(
        weights=weights.absolute() if weights is not None else None,
        tile=tile,
        runtime=replace(runtime, device=device),
        encode=encode,
    )


def run_ray(
    files: list[tuple[Path, Path, Path]],
    marker: Path,
    spec: WorkerSpec,
    *,
    address: str,
    chunk_frames: int | None = None,
    overwrite: bool = False,
    manifest: Manifest | None = None,
    summary: FolderSummary | None = None,
    workers: int | None = None,
    progress: JobProgress | None = None,
    label: str = "",
    say: Say | None = None,
    events: Events | None = None,
) -> RayJob:
    """Deblur ``(rel, src, out)`` files on the cluster at ``address``; ``marker`` is the output's lock file,
    which the caller holds. Progress, notes and failures go to ``progress``; ``say`` hears the lines that say
    what runs (the model, its notes) once the first worker has loaded it; ``events`` sees the dispatcher's
    events (ready, submit, result, retry, died) as they happen."""
    report = as_job_progress(progress)
    say = say or (lambda line: log.info("%s", line))
    started = time.perf_counter()
    ray, owned = connect(address)
    job = RayJob(spec.encode, chunk_frames, manifest, report, summary)
    try:
        count, resources, threads = worker_resources(ray, spec.runtime.device, workers)
        spec = replace(spec, marker=marker, threads=threads)
        with Pool(ray, spec, count, resources, events) as pool:
            pool.wait_first()
            for line in [pool.description, *(f"note: {n}" for n in pool.model_notes)]:
                say(line)
            units = job.plan(files, pool.signature, overwrite)
            try:
                pool.run(units, job, report, label)
            finally:
                job.close()
            job.worker_lines = [w.line() for w in pool.workers] + pool.notes
            if job.reused:
                job.worker_lines.append(f"{job.reused} finished chunk(s) of an earlier run reused")
    finally:
        if owned:
            ray.shutdown()
    job.summary.seconds = time.perf_counter() - started
    return job


def run_ray_folder(
    src: Path,
    dst: Path,
    spec: WorkerSpec,
    *,
    address: str,
    chunk_frames: int | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    progress: JobProgress | None = None,
    say: Say | None = None,
    events: Events | None = None,
) -> RayOutcome[FolderSummary]:
    """``folder`` on Ray: every image and video under ``src`` into the same relative path under ``dst``, with
    the same checks, lock and manifest as without Ray (see :func:`run_ray` for the other arguments)."""
    report = as_job_progress(progress)
    with folder_job(src, dst) as scan:
        summary = scan.summary()
        for path, reason in scan.failed:
            report.failed(path, reason)
        files = [(rel, (src / rel).absolute(), (dst / rel).absolute()) for rel in scan.files]
        job = run_ray(
            files,
            lock_path(dst).absolute(),
            spec,
            address=address,
            chunk_frames=chunk_frames,
            overwrite=overwrite,
            manifest=Manifest(dst),
            summary=summary,
            workers=workers,
            progress=report,
            label=src.name or str(src),
            say=say,
            events=events,
        )
    return RayOutcome(job.summary, job.worker_lines, job.reused)


def run_ray_video(
    src: Path,
    dst: Path,
    spec: WorkerSpec,
    *,
    address: str,
    chunk_frames: int | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    progress: JobProgress | None = None,
    say: Say | None = None,
    events: Events | None = None,
) -> RayOutcome[VideoSummary]:
    """``video`` on Ray: the chunks of one video on all workers, joined into ``dst``. An unusable input
    raises as ``video`` does; a damaged one is reported in the summary."""
    check_video_paths(src, dst, overwrite)
    created = make_folders(dst.parent, for_path=dst)
    rel = Path(src.name)
    try:
        with output_lock(dst) as lock:
            check_video_paths(src, dst, overwrite)  # again: the job that held the lock may have made it
            remove_stale_temps(dst)
            job = run_ray(
                [(rel, src.absolute(), dst.absolute())],
                lock.absolute(),
                spec,
                address=address,
                chunk_frames=chunk_frames,
                overwrite=True,
                workers=workers,
                progress=progress,
                label=src.name,
                say=say,
                events=events,
            )
            if job.summary.failed:
                raise DeblurError(job.summary.failed[0][1], src)
    except BaseException:
        remove_empty_folders(created)
        raise
    result, v = job.results[rel], job.videos.get(rel)
    summary = VideoSummary(src, dst, frames=0, seconds=job.summary.seconds, pix_fmt="", copied_streams=0)
    if isinstance(result, JoinSummary) and v is not None:
        summary.frames, summary.pix_fmt = result.frames, result.pix_fmt
        summary.copied_streams, summary.notes = result.copied_streams, result.notes
    elif isinstance(result, UnitResult):
        summary.frames, summary.pix_fmt, summary.damage = result.frames, result.pix_fmt, result.damage
        summary.copied_streams, summary.notes = result.copied_streams, result.notes
    return RayOutcome(summary, job.worker_lines, job.reused)
