"""Several weights files side by side (``bench --model A --model B``, ``--weights``): each loaded as ``video``
loads it (``inference.load_deblurrer`` of a :class:`~deblurtool.config.ModelSpec`, so with its default engine
and precision unless others are asked for, and the same compiled-model cache), timed on the same synthetic
frame and, given a video, run over all of it end to end (decode, deblur, encode: ``pipeline.run_video``).
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from deblurtool.bench.engines import time_first_and_median
from deblurtool.bench.results import ModelRow, ModelsReport, WeightsInfo
from deblurtool.bench.speed import synthetic_frame
from deblurtool.config import EncodeConfig, ModelSpec, RuntimeConfig, TileConfig
from deblurtool.inference import load_deblurrer


def run_models(
    models: list[tuple[str, Path, WeightsInfo]],
    *,
    runtime: RuntimeConfig,
    tile: TileConfig | None,
    resolution: tuple[int, int],
    runs: int,
    video: Path | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> ModelsReport:
    """Time each of ``models`` (``(name, weights file, description)``) under the same ``runtime`` and
    ``tile`` settings; the first is the reference of the speed-up column."""
    from deblurtool.pipeline import run_video

    width, height = resolution
    frame = synthetic_frame(height, width)
    rows: list[ModelRow] = []
    for name, path, info in models:
        say(f"loading {name} ...")
        started = time.perf_counter()
        deblurrer = load_deblurrer(ModelSpec(weights=path, runtime=runtime, tile=tile))
        row = ModelRow(
            name=name,
            weights=info,
            engine=deblurrer.engine,
            precision=deblurrer.precision,
            load_s=time.perf_counter() - started,
            notes=list(deblurrer.notes),
        )
        say(f"timing {name} ({row.engine} {row.precision}) ...")
        first, median = time_first_and_median(deblurrer.deblur_array, frame, runs)
        row.first_s, row.ms_per_frame = first, 1e3 * median
        if video is not None:
            say(f"deblurring {video} with {name} ...")
            with tempfile.TemporaryDirectory(prefix="deblurtool-bench-") as tmp:
                started = time.perf_counter()
                summary = run_video(
                    video, Path(tmp) / f"out{video.suffix}", deblurrer, EncodeConfig(), progress=False
                )
                row.video_frames, row.video_s = summary.frames, time.perf_counter() - started
        rows.append(row)
        del deblurrer
        gc.collect()
    base = rows[0] if rows else None
    for r in rows:
        if base is not None and video is not None and r.video_fps and base.video_fps:
            r.speedup_vs_first = r.video_fps / base.video_fps
        elif base is not None and video is None and r.ms_per_frame and base.ms_per_frame:
            r.speedup_vs_first = base.ms_per_frame / r.ms_per_frame
    return ModelsReport(
        resolution=(width, height),
        runs=runs,
        threads=torch.get_num_threads(),
        video=None if video is None else str(video),
        rows=rows,
    )
