"""``deblurtool folder IN OUT``: deblur every image and video under a folder into its mirror; resumable."""

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
    ModelName,
    NoProgress,
    Overwrite,
    PixFmt,
    Precision,
    RayAddress,
    RayWorkers,
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
from deblurtool.errors import PartialFailure


@handle_errors
def folder(
    src: Annotated[
        Path,
        typer.Argument(
            metavar="SRC",
            help="Folder of blurry images and videos (searched recursively).",
            show_default=False,
        ),
    ],
    dst: Annotated[
        Path,
        typer.Argument(
            metavar="DST",
            help="Output folder (created; must not be inside the input folder).",
            show_default=False,
        ),
    ],
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
    codec: Codec = None,
    crf: Crf = None,
    pix_fmt: PixFmt = None,
    ray: RayAddress = None,
    chunk_frames: ChunkFrames = None,
    ray_workers: RayWorkers = None,
) -> None:
    """Deblur every image and video under a folder into a mirror of it; re-running resumes.

    Takes png, jpg/jpeg, bmp, tif/tiff and webp images: outputs mirror the relative paths, formats, bit depth
    (8/16), gray/colour and alpha (kept untouched) of the inputs, with their metadata. Videos (mp4, m4v, mov,
    mkv, webm, avi, ts, mts, m2ts) are deblurred as `deblurtool video` does, into the same relative path and
    container (--codec, --crf and --pix-fmt apply to them). GIFs are not deblurred here: they are named in a
    note (`deblurtool video` takes one).

    Examples:

      deblurtool folder photos/ sharp_photos/

      deblurtool folder scans/ out/ --precision fp32 --tile-size 512

      deblurtool folder archive/ sharp/ --ray auto            (on a Ray cluster: all its GPUs)

    Re-running skips outputs already made from the same input and settings, so an interrupted run resumes.
    A file that cannot be read or written is reported and skipped; the exit code is then 1. The folder is
    scanned, the encoder settings checked and the output folder made, tried and locked before the model
    loads: what would be refused is refused at once.

    Exit codes: 0 all done (or already done); 1 some files failed (the rest were done); 2 unusable input
    folder or refused output folder; 70 internal error (a bug); 130 interrupted, 143 terminated (finished
    files are kept, re-run to resume).
    """
    from deblurtool.pipeline import plan_folder  # not for --help

    ray_opts = ray_options(ray, chunk_frames, ray_workers)
    spec = model_spec(weights=weights, model=model, device=device, precision=precision, engine=engine,
                      tile_size=tile_size, tile_overlap=tile_overlap, batch_size=batch_size,
                      strength=strength)  # fmt: skip
    encode = EncodeConfig(codec=codec, crf=crf, pix_fmt=pix_fmt)
    bar = ui.ProgressBar("files/s", enabled=not no_progress)
    kept = "outputs " + ("and chunks " if ray_opts else "") + "finished so far are kept, re-run to resume"
    with plan_folder(src, dst, encode, bar) as plan:  # refusals: before the model
        bar.unit = "fps" if plan.has_videos else "files/s"  # the count is of frames (an image as one)
        result = run_plan(plan, spec, ray=ray_opts, overwrite=overwrite, progress=bar, kept=kept)
    summary = result.summary
    for line in [summary.line(), *result.workers]:
        ui.say(line)
    if summary.failed:
        what = "input(s)" if summary.videos or summary.unlisted else "image(s)"
        raise PartialFailure(f"{len(summary.failed)} of {summary.inputs} {what} failed (listed above)", src)
