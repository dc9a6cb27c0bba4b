"""``deblurtool folder IN OUT``: deblur every image under a folder into a mirror of it; resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from deblurtool.commands.common import Device, Overwrite, Precision, Weights, handle_errors
from deblurtool.commands.video import (
    BatchSize,
    NoProgress,
    TileOverlap,
    TileSize,
    load_model,
    naming_the_file,
    precision_name,
    stdout,
)
from deblurtool.errors import PartialFailure


def settings_signature(model: Any, weights: Path | None) -> str:
    """What must match for an existing output to count as done: the weights file's content and the numeric
    settings (precision and tiling change the output slightly; the device alone does not)."""
    explicit = getattr(model, "signature", None)
    if explicit:
        return str(explicit)
    digest = "default"
    try:
        from deblurtool.models.weights import default_weights_path, file_sha256

        path = weights if weights is not None else default_weights_path()
        digest = file_sha256(path)[:16]
    except Exception:  # a fake or in-memory model: fall back to the name given
        digest = str(weights) if weights is not None else "default"
    tile = getattr(model, "tile", None)
    tiles = "default" if tile is None else f"{tile.tile_size}/{tile.tile_overlap}"
    return f"weights={digest};precision={precision_name(getattr(model, 'dtype', '?'))};tile={tiles}"


@handle_errors
def folder(
    src: Annotated[
        Path, typer.Argument(help="Folder of blurry images (searched recursively).", show_default=False)
    ],
    dst: Annotated[
        Path, typer.Argument(help="Output folder (created; must not be inside the input folder).")
    ],
    overwrite: Overwrite = False,
    weights: Weights = None,
    device: Device = "auto",
    precision: Precision = "auto",
    tile_size: TileSize = None,
    tile_overlap: TileOverlap = None,
    batch_size: BatchSize = None,
    no_progress: NoProgress = False,
) -> None:
    """Deblur every image under a folder into a mirror of it; re-running resumes.

    Takes png, jpg/jpeg, bmp, tif/tiff and webp. Outputs mirror the relative paths, formats, bit depth (8/16),
    gray/colour and alpha (kept untouched) of the inputs, with their metadata.

    Examples:

      deblurtool folder photos/ sharp_photos/

      deblurtool folder scans/ out/ --precision fp32 --tile-size 512

    Re-running skips outputs already made from the same input and settings, so an interrupted run resumes.
    A file that cannot be read or written is reported and skipped; the exit code is then 1.

    Exit codes: 0 all done (or already done); 1 some images failed (the rest were done); 2 unusable input
    folder or refused output folder; 130 interrupted (finished images are kept, re-run to resume).
    """
    from deblurtool.pipeline import check_folder_paths, run_folder

    check_folder_paths(src, dst)  # refuse before spending seconds on loading the model
    model = load_model(
        weights,
        device=device,
        precision=precision,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        batch_size=batch_size,
    )
    with naming_the_file(src, "outputs finished so far are kept, re-run to resume"):
        summary = run_folder(
            src,
            dst,
            model,
            overwrite=overwrite,
            progress=not no_progress,
            signature=settings_signature(model, weights),
        )
    stdout.print(summary.line(), markup=False, soft_wrap=True)
    if summary.failed:
        total = summary.done + summary.skipped + len(summary.failed)
        raise PartialFailure(f"{len(summary.failed)} of {total} image(s) failed (listed above)", src)
