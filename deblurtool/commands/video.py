"""``deblurtool video IN OUT``: deblur a video; audio, subtitles, timing, size and orientation are kept."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deblurtool import ui
from deblurtool.commands.common import (
    BatchSize,
    ChunkFrames,
    Codec,
    Crf,
    Device,
    Duration,
    End,
    Engine,
    ModelName,
    NoProgress,
    Overwrite,
    PixFmt,
    Precision,
    RayAddress,
    RayWorkers,
    Start,
    Strength,
    TileOverlap,
    TileSize,
    Weights,
    handle_errors,
    model_spec,
    ray_options,
    run_plan,
)
from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError, PartialFailure


@handle_errors
def video(
    src: Annotated[
        Path,
        typer.Argument(metavar="SRC", help="The blurry video (any format FFmpeg reads).", show_default=False),
    ],
    dst: Annotated[
        Path,
        typer.Argument(
            metavar="DST",
            help="Output file; its extension picks the container (.mp4, .mkv, .mov, .avi, .webm).",
            show_default=False,
        ),
    ],
    codec: Codec = None,
    crf: Crf = None,
    pix_fmt: PixFmt = None,
    overwrite: Overwrite = False,
    weights: Weights = None,
    model: ModelName = None,
    strength: Strength = 1.0,
    device: Device = "auto",
    precision: Precision = "auto",
    engine: Engine = "auto",
    tile_size: TileSize = None,
    tile_overlap: TileOverlap = None,
    batch_size: BatchSize = None,
    no_progress: NoProgress = False,
    ray: RayAddress = None,
    chunk_frames: ChunkFrames = None,
    ray_workers: RayWorkers = None,
    start: Start = None,
    duration: Duration = None,
    end: End = None,
    compare: Annotated[
        Path | None,
        typer.Option(
            "--compare",
            metavar="OUT2",
            help="Also write the before/after view here: the input and the result side by side, labelled, "
            "with the result's timing and audio, made from the same frames in the same run. Not with --ray.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Deblur every frame of a video, keeping its audio, timing and orientation.

    Audio and subtitles are copied untouched; size, frame timing (also variable frame rate), colour tags and
    rotation are kept. The output appears only when complete; its folder is created if missing.

    Examples:

      deblurtool video shaky.mp4 sharp.mp4

      deblurtool video in.mov out.mkv --codec ffv1            (lossless output)

      deblurtool video in.mp4 out.mp4 --crf 14 --device cuda  (higher quality, on the GPU)

      deblurtool video long.mp4 out.mp4 --ray auto            (on a Ray cluster, in chunks)

      deblurtool video in.mp4 try.mp4 --start 1:05 --duration 5  (five seconds, to try settings)

      deblurtool video in.mp4 try.mp4 --duration 5 --compare try_vs.mp4  (and see them side by side)

    A damaged input is deblurred as far as it can be decoded, then the command exits with code 1. Whatever
    would be refused (an unusable input, an output that exists, is locked by another job or cannot be
    written, encoder settings the output cannot take) is refused before the model loads.

    Exit codes: 0 done; 1 damaged input (what could be decoded was deblurred); 2 unusable input or refused
    output (nothing written); 70 internal error (a bug); 130 interrupted, 143 terminated (nothing left
    behind).
    """
    from deblurtool.media.time_range import TimeRange
    from deblurtool.pipeline import plan_video  # not for --help

    time_range = TimeRange.from_options(start, duration, end)
    ray_opts = ray_options(ray, chunk_frames, ray_workers)
    if time_range is not None and ray_opts:
        raise DeblurError("--start, --duration and --end run here, not on Ray: leave out --ray")
    if compare is not None and ray_opts:
        raise DeblurError(
            "--compare runs here, not on Ray: leave out --ray, or run `deblurtool compare` after"
        )
    spec = model_spec(weights=weights, model=model, device=device, precision=precision, engine=engine,
                      tile_size=tile_size, tile_overlap=tile_overlap, batch_size=batch_size,
                      strength=strength)  # fmt: skip
    encode = EncodeConfig(codec=codec, crf=crf, pix_fmt=pix_fmt)
    bar = ui.ProgressBar("fps", enabled=not no_progress)
    kept = "nothing was written" + (" (finished chunks are kept for a rerun)" if ray_opts else "")
    # Refusals (a slice outside the video among them) come here, before the model loads.
    with plan_video(src, dst, encode, overwrite=overwrite, report=bar, time_range=time_range,
                    compare=compare) as plan:  # fmt: skip
        result = run_plan(plan, spec, ray=ray_opts, overwrite=overwrite, progress=bar, kept=kept)
    summary = result.video
    for line in [summary.line(), *result.workers]:
        ui.say(line)
    if summary.damage:
        done = f"the {summary.frames} frame(s) that could be decoded were deblurred into {dst}"
        raise PartialFailure(f"{summary.damage}; {done}", src)
