"""``deblurtool video IN OUT``: deblur a video; audio, subtitles, timing, size and orientation are kept.

Also home of the two helpers both media commands use to build and describe the model (``load_model``,
``describe_model``): the model is imported inside them so ``--help`` never imports torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from deblurtool.commands.common import (
    BatchSize,
    Device,
    Overwrite,
    Precision,
    TileOverlap,
    TileSize,
    Weights,
    handle_errors,
)
from deblurtool.config import EncodeConfig, RuntimeConfig, TileConfig
from deblurtool.errors import DeblurError, PartialFailure

NoProgress = Annotated[
    bool, typer.Option("--no-progress", help="Do not draw the progress bar (e.g. in logs).")
]

Codec = Annotated[
    str,
    typer.Option(
        "--codec",
        help="FFmpeg video encoder: libx264, libx265, libsvtav1, libvpx-vp9, ffv1 (lossless; use .mkv), ...",
    ),
]
Crf = Annotated[
    int,
    typer.Option(
        "--crf",
        min=0,
        max=63,
        help="Quality for encoders that have it, lower is better: 18 looks lossless with x264, 0 is "
        "lossless.",
    ),
]
PixFmt = Annotated[
    str | None,
    typer.Option(
        "--pix-fmt",
        help="Encoder pixel format. Default: the input's when the encoder has it (10-bit stays 10-bit), "
        "else yuv420p.",
        show_default=False,
    ),
]

stdout = Console(highlight=False)


def load_model(
    weights: Path | None,
    *,
    device: str,
    precision: str,
    tile_size: int | None,
    tile_overlap: int | None,
    batch_size: int | None,
) -> Any:
    """Build the Deblurrer from CLI knobs and print the line saying what will run. Tile options left out
    (None) keep the device default when all three are left out; if only some are given, the others take
    TileConfig's defaults (256 / 32 / 4)."""
    from deblurtool.inference import Deblurrer  # heavy (torch): only when a command actually runs

    given = {"tile_size": tile_size, "tile_overlap": tile_overlap, "batch_size": batch_size}
    given = {k: v for k, v in given.items() if v is not None}
    tile = TileConfig(**given) if given else None
    runtime = RuntimeConfig(device=device, precision=precision)
    with naming_the_file(weights, "the model could not be loaded, nothing was written"):
        model = Deblurrer.from_weights(weights, tile=tile, runtime=runtime)
    print_model(model, weights, tile_given=bool(given))
    return model


def precision_name(dtype: object) -> str:
    names = {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}
    return names.get(str(dtype), str(dtype))


def describe_model(model: Any, weights: Path | None, *, tile_given: bool = True) -> str:
    """One line: device, precision, tile settings and weights file actually used. ``tile_given`` False: the
    tiling is the device's default (which may change with the frame size), and the line says so."""
    tile = getattr(model, "tile", None)
    if tile is None:
        tiles = "tiles: device default"
    else:
        if tile.tile_size == 0:
            tiles = f"whole frames, batch_size {tile.batch_size}"
        else:
            tiles = (
                f"tile_size {tile.tile_size}, tile_overlap {tile.tile_overlap}, batch_size {tile.batch_size}"
            )
        if not tile_given:
            tiles += " (device default)"
    if weights is None:
        try:
            from deblurtool.models.weights import default_weights_path

            weights = default_weights_path()
        except Exception:  # naming the file is informative only; loading already succeeded
            weights = None
    return (
        f"model: device {getattr(model, 'device', '?')}, "
        f"precision {precision_name(getattr(model, 'dtype', '?'))}, "
        f"{tiles}, weights {weights if weights is not None else 'default'}"
    )


@contextlib.contextmanager
def naming_the_file(path: Path | None, outcome: str) -> Iterator[None]:
    """Turn an unexpected exception (a bug, an unforeseen library error) into a one-line DeblurError that
    names ``path`` (when there is one) and says ``outcome``; ``--debug`` still shows the original traceback
    (it is chained)."""
    from deblurtool.pipeline import one_line

    try:
        yield
    except DeblurError:
        raise
    except Exception as e:
        raise DeblurError(f"failed: {one_line(e)}; {outcome} (--debug shows the traceback)", path) from e


def print_model(model: Any, weights: Path | None, *, tile_given: bool = True) -> None:
    stdout.print(describe_model(model, weights, tile_given=tile_given), markup=False, soft_wrap=True)
    for note in getattr(model, "notes", None) or ():
        stdout.print(f"note: {note}", markup=False, soft_wrap=True)


@handle_errors
def video(
    src: Annotated[
        Path, typer.Argument(help="The blurry video (any format FFmpeg reads).", show_default=False)
    ],
    dst: Annotated[
        Path, typer.Argument(help="Output file; its extension picks the container (.mp4, .mkv, .mov).")
    ],
    codec: Codec = "libx264",
    crf: Crf = 18,
    pix_fmt: PixFmt = None,
    overwrite: Overwrite = False,
    weights: Weights = None,
    device: Device = "auto",
    precision: Precision = "auto",
    tile_size: TileSize = None,
    tile_overlap: TileOverlap = None,
    batch_size: BatchSize = None,
    no_progress: NoProgress = False,
) -> None:
    """Deblur every frame of a video, keeping its audio, timing and orientation.

    Audio and subtitles are copied untouched; size, frame timing (also variable frame rate), colour tags and
    rotation are kept. The output appears only when complete; its folder is created if missing.

    Examples:

      deblurtool video shaky.mp4 sharp.mp4

      deblurtool video in.mov out.mkv --codec ffv1            (lossless output)

      deblurtool video in.mp4 out.mp4 --crf 14 --device cuda  (higher quality, on the GPU)

    A damaged input is deblurred as far as it can be decoded, then the command exits with code 1.

    Exit codes: 0 done; 1 damaged input (what could be decoded was deblurred); 2 unusable input or refused
    output (nothing written); 130 interrupted (nothing left behind).
    """
    from deblurtool.pipeline import check_video_paths, run_video

    encode = EncodeConfig(codec=codec, crf=crf, pix_fmt=pix_fmt)
    check_video_paths(src, dst, overwrite)  # refuse before spending seconds on loading the model
    model = load_model(
        weights,
        device=device,
        precision=precision,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        batch_size=batch_size,
    )
    with naming_the_file(src, "nothing was written"):
        summary = run_video(src, dst, model, encode, overwrite=overwrite, progress=not no_progress)
    stdout.print(summary.line(), markup=False, soft_wrap=True)
    if summary.damage:
        done = f"the {summary.frames} frame(s) that could be decoded were deblurred into {dst}"
        raise PartialFailure(f"{summary.damage}; {done}", src)
