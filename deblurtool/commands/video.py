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
    Engine,
    NoProgress,
    Overwrite,
    PixFmt,
    Precision,
    RayAddress,
    RayWorkers,
    TileOverlap,
    TileSize,
    Weights,
    check_model_options,
    check_ray,
    handle_errors,
    load_model,
    naming_the_file,
    ray_spec,
)
from deblurtool.config import EncodeConfig
from deblurtool.errors import PartialFailure


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
) -> None:
    """Deblur every frame of a video, keeping its audio, timing and orientation.

    Audio and subtitles are copied untouched; size, frame timing (also variable frame rate), colour tags and
    rotation are kept. The output appears only when complete; its folder is created if missing.

    Examples:

      deblurtool video shaky.mp4 sharp.mp4

      deblurtool video in.mov out.mkv --codec ffv1            (lossless output)

      deblurtool video in.mp4 out.mp4 --crf 14 --device cuda  (higher quality, on the GPU)

      deblurtool video long.mp4 out.mp4 --ray auto            (on a Ray cluster, in chunks)

    A damaged input is deblurred as far as it can be decoded, then the command exits with code 1.

    Exit codes: 0 done; 1 damaged input (what could be decoded was deblurred); 2 unusable input or refused
    output (nothing written); 130 interrupted (nothing left behind).
    """
    from deblurtool.pipeline import check_video_input, check_video_paths, run_video  # not for --help

    check_ray(ray)
    check_model_options(
        device=device,
        precision=precision,
        engine=engine,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        batch_size=batch_size,
    )
    encode = EncodeConfig(codec=codec, crf=crf, pix_fmt=pix_fmt)
    check_video_paths(src, dst, overwrite)  # refuse before spending seconds on loading the model
    check_video_input(src, encode, dst)
    bar = ui.ProgressBar("fps", enabled=not no_progress)
    workers: list[str] = []
    if ray is not None:
        from deblurtool.scale.run import run_ray_video

        spec = ray_spec(
            weights,
            encode,
            device=device,
            precision=precision,
            engine=engine,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            batch_size=batch_size,
        )
        with naming_the_file(src, "nothing was written (finished chunks are kept for a rerun)"):
            outcome = run_ray_video(
                src,
                dst,
                spec,
                address=ray,
                chunk_frames=chunk_frames,
                overwrite=overwrite,
                workers=ray_workers,
                progress=bar,
                say=ui.say,
            )
        summary, workers = outcome.summary, outcome.workers
    else:
        model = load_model(
            weights,
            device=device,
            precision=precision,
            engine=engine,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            batch_size=batch_size,
        )
        with naming_the_file(src, "nothing was written"):
            summary = run_video(src, dst, model, encode, overwrite=overwrite, progress=bar)
    for line in [summary.line(), *workers]:
        ui.say(line)
    if summary.damage:
        done = f"the {summary.frames} frame(s) that could be decoded were deblurred into {dst}"
        raise PartialFailure(f"{summary.damage}; {done}", src)
