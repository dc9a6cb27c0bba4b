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
    container (--codec, --crf and --pix-fmt apply to them).

    Examples:

      deblurtool folder photos/ sharp_photos/

      deblurtool folder scans/ out/ --precision fp32 --tile-size 512

      deblurtool folder archive/ sharp/ --ray auto            (on a Ray cluster: all its GPUs)

    Re-running skips outputs already made from the same input and settings, so an interrupted run resumes.
    A file that cannot be read or written is reported and skipped; the exit code is then 1.

    Exit codes: 0 all done (or already done); 1 some files failed (the rest were done); 2 unusable input
    folder or refused output folder; 130 interrupted (finished files are kept, re-run to resume).
    """
    from deblurtool.media.image_io import IMAGE_SUFFIXES  # OpenCV: not for --help
    from deblurtool.media.video_codec import check_encode
    from deblurtool.pipeline import check_folder_input, run_folder

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
    check_encode(encode, "")
    check_folder_input(src, dst)  # refuse before spending seconds on loading the model
    unit = "files/s" if ray is None else "fps"  # a Ray job counts frames (an image as one)
    bar = ui.ProgressBar(unit, enabled=not no_progress)
    workers: list[str] = []
    if ray is not None:
        from deblurtool.scale.run import run_ray_folder

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
        with naming_the_file(src, "outputs and chunks finished so far are kept, re-run to resume"):
            outcome = run_ray_folder(
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
        with naming_the_file(src, "outputs finished so far are kept, re-run to resume"):
            summary = run_folder(
                src, dst, model, overwrite=overwrite, progress=bar, signature=model.signature, encode=encode
            )
    for line in [summary.line(), *workers]:
        ui.say(line)
    if summary.failed:
        total = summary.done + summary.skipped + len(summary.failed)
        images = all(path.suffix.lower() in IMAGE_SUFFIXES for path, _ in summary.failed)
        what = "image(s)" if images else "input(s)"
        raise PartialFailure(f"{len(summary.failed)} of {total} {what} failed (listed above)", src)
