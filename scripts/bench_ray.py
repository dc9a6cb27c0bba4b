#!/usr/bin/env python3
"""Throughput of the Ray path against the single-process path, on the same job and the same cores.

The job is made from the shipped sample clip (frames resized to ``--size``): one video of ``--frames``
frames, cut into chunks of ``--chunk-frames`` on the Ray path, and ``--images`` PNG frames, in one folder.
Both paths run ``deblurtool folder``'s library call on it with the same model and settings:

- single process: in a fresh process (as ``deblurtool folder`` runs), load the model, then ``run_folder``
  (torch's default threads: every core);
- Ray: a local cluster started here (``ray.init``, timed apart: a cluster is started once, not per job),
  then ``run_ray_folder`` with ``--ray-workers`` actors sharing the same cores (one actor by default, holding
  every CPU, as ``--ray local`` does on one machine).

Each path's time is the whole job, model loading included (for Ray: starting the actors and loading the
model in them), and the same less the time until the model was loaded (for Ray: until the first worker
answered with its model); ``--repeat`` alternating runs, the medians reported. Frames per second count an
image as one frame. Neither path reuses a process that has run the model before (a first run in a process
is slower: kernels are chosen and compiled), and both compute at this script's scheduling priority even
where the machine lowers that of other processes (this project's does, to keep its training job ahead).
Example (the README's figure)::

    python scripts/bench_ray.py --frames 24 --images 12 --size 640x360 --chunk-frames 8 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from deblurtool.config import EncodeConfig, ModelSpec, RuntimeConfig
from deblurtool.errors import DeblurError

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "GOPR0384_11_00_blur.mp4"


def make_job(root: Path, source: Path, frames: int, images: int, size: tuple[int, int]) -> int:
    """Write the job under ``root``: a video of ``frames`` frames and ``images`` PNGs (the source's frames,
    looped, resized). Returns the number of frames the job holds."""
    with av.open(str(source)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    pictures = [_resize(decoded[i % len(decoded)], size) for i in range(frames)]
    root.mkdir(parents=True, exist_ok=True)
    with av.open(str(root / "clip.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i, rgb in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    for i in range(images):
        rgb = _resize(decoded[(i * 7) % len(decoded)], size)
        cv2.imwrite(str(root / f"frame{i:03d}.png"), np.ascontiguousarray(rgb[:, :, ::-1]))
    return frames + images


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def run_single(src: Path, dst: Path, weights: Path | None) -> tuple[float, float]:
    """(whole job, model loading) seconds of :func:`single_run` in a fresh process of this script."""
    command = [sys.executable, __file__, "--single-run", str(src), str(dst)]
    command += ["--weights", str(weights)] if weights is not None else []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    with same_priority({proc.pid}):
        out, _ = proc.communicate()
    if proc.returncode:
        raise DeblurError(f"the single-process run failed (exit {proc.returncode})")
    timing = json.loads(out.splitlines()[-1])
    return timing["seconds"], timing["loaded"]


def single_run(src: Path, dst: Path, weights: Path | None, encode: EncodeConfig) -> dict[str, float]:
    """The single-process path, in this process: whole job and model loading, seconds."""
    from deblurtool.inference import Deblurrer
    from deblurtool.pipeline import run_folder

    started = time.perf_counter()
    model = Deblurrer.from_weights(weights, runtime=RuntimeConfig(device="cpu"))
    loaded = time.perf_counter() - started
    summary = run_folder(src, dst, model, signature=model.signature, encode=encode)
    if summary.failed:
        raise DeblurError(f"single-process run failed: {summary.failed[0]}")
    return {"seconds": time.perf_counter() - started, "loaded": loaded}


@contextlib.contextmanager
def same_priority(pids: set[int]) -> Iterator[None]:
    """While the body runs, keep the processes ``pids`` (a job's processes; Ray workers are added as they
    start) at this process's scheduling priority, twice a second."""
    done = threading.Event()

    def keep() -> None:
        while not done.wait(0.5):
            mine = os.getpriority(os.PRIO_PROCESS, 0)
            for pid in list(pids):
                with contextlib.suppress(OSError):  # gone (a finished job's worker)
                    if os.getpriority(os.PRIO_PROCESS, pid) != mine:
                        os.setpriority(os.PRIO_PROCESS, pid, mine)

    thread = threading.Thread(target=keep, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def run_ray(src: Path, dst: Path, weights: Path | None, encode: EncodeConfig, chunk_frames: int,
            workers: int) -> tuple[float, float, list[str]]:  # fmt: skip
    """(whole job, until the first worker had its model) seconds, and the per-worker lines."""
    from deblurtool.scale.run import run_ray_folder, worker_spec

    started = time.perf_counter()
    ready: list[float] = []

    def on_event(name: str, info: dict[str, Any]) -> None:
        if name == "ready":
            workers_pids.add(info["pid"])
            if not ready:
                ready.append(time.perf_counter() - started)

    spec = worker_spec(ModelSpec(weights, RuntimeConfig(device="cpu")), encode)
    workers_pids: set[int] = set()
    with same_priority(workers_pids):
        outcome = run_ray_folder(
            src, dst, spec, address="local", chunk_frames=chunk_frames, workers=workers, events=on_event
        )
    if outcome.summary.failed:
        raise DeblurError(f"Ray run failed: {outcome.summary.failed[0]}")
    return time.perf_counter() - started, ready[0], outcome.workers


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=24, help="frames of the video (default 24)")
    p.add_argument("--images", type=int, default=12, help="images besides the video (default 12)")
    p.add_argument("--size", default="640x360", help="frame size WxH (default 640x360)")
    p.add_argument("--chunk-frames", type=int, default=8, help="chunk length on the Ray path (default 8)")
    p.add_argument("--ray-workers", type=int, default=1, help="Ray actors sharing the cores (default 1)")
    p.add_argument("--repeat", type=int, default=2, help="alternating runs of each path (default 2)")
    p.add_argument("--weights", type=Path, default=None, help="generator file (default: the shipped one)")
    p.add_argument("--source", type=Path, default=SAMPLE, help="clip the job's frames come from")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--single-run", nargs=2, type=Path, metavar=("SRC", "DST"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.single_run:  # the single-process path, in the fresh process run_single started
        timing = single_run(*args.single_run, args.weights, EncodeConfig())
        print(json.dumps(timing))
        return timing
    width, height = (int(v) for v in args.size.lower().split("x"))
    encode = EncodeConfig()
    import ray

    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        root = Path(tmp)
        frames = make_job(root / "in", args.source, args.frames, args.images, (width, height))
        t0 = time.perf_counter()
        started = not ray.is_initialized()
        if started:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=40)
        cluster_s = time.perf_counter() - t0
        single, on_ray, workers = [], [], []
        for i in range(args.repeat):
            single.append(run_single(root / "in", root / f"single{i}", args.weights))
            *times, workers = run_ray(root / "in", root / f"ray{i}", args.weights, encode, args.chunk_frames,
                                      args.ray_workers)  # fmt: skip
            on_ray.append(tuple(times))
        if started:
            ray.shutdown()
    s, r = statistics.median(t for t, _ in single), statistics.median(t for t, _ in on_ray)
    s_run = statistics.median(t - load for t, load in single)
    r_run = statistics.median(t - load for t, load in on_ray)
    result = {
        "job": f"{args.frames}-frame video, chunks of {args.chunk_frames}; {args.images} images; {args.size}",
        "cpus": os.cpu_count(),
        "frames": frames,
        "single_s": [round(t, 2) for t, _ in single],
        "single_load_s": [round(load, 2) for _, load in single],
        "ray_s": [round(t, 2) for t, _ in on_ray],
        "ray_until_ready_s": [round(load, 2) for _, load in on_ray],
        "single_fps": round(frames / s, 3),
        "ray_fps": round(frames / r, 3),
        "ray_vs_single": round(s / r, 3),
        "single_fps_after_load": round(frames / s_run, 3),
        "ray_fps_after_load": round(frames / r_run, 3),
        "ray_vs_single_after_load": round(s_run / r_run, 3),
        "cluster_start_s": round(cluster_s, 2),
        "workers": workers,
    }
    print(f"job: {result['job']} ({frames} frames), {result['cpus']} CPUs; medians of {args.repeat} runs")
    print("| path | whole job, s | fps | after the model is loaded, s | fps |")
    print("|---|---:|---:|---:|---:|")
    print(f"| single process | {s:.1f} | {frames / s:.3f} | {s_run:.1f} | {frames / s_run:.3f} |")
    name = f"Ray, local cluster, {args.ray_workers} worker(s)"
    print(f"| {name} | {r:.1f} | {frames / r:.3f} | {r_run:.1f} | {frames / r_run:.3f} |")
    print(f"Ray / single-process throughput: {s / r:.1%} whole job, {s_run / r_run:.1%} after loading "
          f"(cluster start, once: {cluster_s:.1f} s)")  # fmt: skip
    for line in workers:
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    try:
        main()
    except DeblurError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
