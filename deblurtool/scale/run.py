"""The Ray runner: consume a plan's units on a cluster. :func:`run_ray` takes a plan made (and its output
locked) exactly as for a local run; :func:`run_ray_folder` and :func:`run_ray_video` make that plan first.

The driver holds the output's lock (the folder's, or the video file's) for the whole job, so a second job
into the same output is refused as without Ray; the lock file doubles as the marker every worker must see
(else the output is not on shared storage)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from deblurtool.config import EncodeConfig, ModelSpec
from deblurtool.errors import DeblurError
from deblurtool.pipeline.plan import JobResult, Plan, plan_folder, plan_video
from deblurtool.scale.driver import Events, JobProgress, Pool, as_job_progress, connect, worker_resources
from deblurtool.scale.jobs import RayJob
from deblurtool.scale.worker import WorkerSpec

log = logging.getLogger("deblurtool.scale")
Say = Callable[[str], None]


def worker_spec(model: ModelSpec, encode: EncodeConfig) -> WorkerSpec:
    """The command's model and encoder settings as every worker will apply them (the weights' path made
    absolute; ``cuda:N`` is ``cuda``: Ray gives each GPU worker its own device, which it sees as the only
    one)."""
    runtime = model.runtime
    device = "cuda" if runtime.device.startswith("cuda:") else runtime.device
    weights = model.weights.absolute() if model.weights is not None else None
    return WorkerSpec(replace(model, weights=weights, runtime=replace(runtime, device=device)), encode)


def run_ray(
    plan: Plan,
    spec: WorkerSpec,
    *,
    address: str,
    chunk_frames: int | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    progress: JobProgress | None = None,
    say: Say | None = None,
    events: Events | None = None,
) -> JobResult:
    """Deblur ``plan``'s units on the cluster at ``address`` (the caller holds the plan's output lock).
    Long videos are cut into pieces of about ``chunk_frames`` frames (None: about a minute's). Progress goes
    to ``progress``, notes and failures to the plan's report; ``say`` hears the lines that say what runs (the
    model, its notes) once the first worker has loaded it; ``events`` sees the dispatcher's events (ready,
    submit, result, retry, died) as they happen. A `video` plan's failure raises, as ``run_video`` would."""
    report = as_job_progress(progress)
    say = say or (lambda line: log.info("%s", line))
    started = time.perf_counter()
    ray, owned = connect(address)
    job = RayJob(plan)
    result = JobResult(plan.summary)
    try:
        count, resources, threads = worker_resources(ray, spec.model.runtime.device, workers)
        spec = replace(spec, marker=plan.marker.absolute(), threads=threads)
        with Pool(ray, spec, count, resources, events) as pool:
            pool.wait_first()
            for line in [pool.description, *(f"note: {n}" for n in pool.model_notes)]:
                say(line)
            units = plan.units(pool.signature, overwrite=overwrite, cut=True, chunk_frames=chunk_frames)
            try:
                pool.run(job.start(units), job, report, plan.label)
            finally:
                job.close()
            result.workers = [w.line() for w in pool.workers] + pool.notes
            if job.reused:
                result.workers.append(f"{job.reused} finished chunk(s) of an earlier run reused")
    finally:
        if owned:
            ray.shutdown()
    plan.summary.seconds = time.perf_counter() - started
    if plan.single and plan.summary.failed:
        path, reason = plan.summary.failed[0]
        raise DeblurError(reason, path)
    result.videos, result.reused_chunks = job.finished, job.reused
    if plan.single:  # the video's time is the job's
        for video in result.videos.values():
            video.seconds = plan.summary.seconds
    return result


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
) -> JobResult:
    """``folder`` on Ray: every image and video under ``src`` into the same relative path under ``dst``, with
    the same plan (checks, lock, manifest) as without Ray (see :func:`run_ray` for the other arguments)."""
    report = as_job_progress(progress)
    with plan_folder(src, dst, spec.encode, report) as plan:
        return run_ray(plan, spec, address=address, chunk_frames=chunk_frames, overwrite=overwrite,
                       workers=workers, progress=report, say=say, events=events)  # fmt: skip


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
) -> JobResult:
    """``video`` on Ray: the chunks of one video on all workers, joined into ``dst`` (``result.video``). An
    unusable input raises as ``video`` does; a damaged one is reported in the video's summary."""
    report = as_job_progress(progress)
    with plan_video(src, dst, spec.encode, overwrite=overwrite, report=report) as plan:
        return run_ray(plan, spec, address=address, chunk_frames=chunk_frames, overwrite=True,
                       workers=workers, progress=report, say=say, events=events)  # fmt: skip
