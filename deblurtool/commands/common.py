"""What the commands share: every option alias (same names at every layer), building and describing the
model, and the error-to-exit-code wrapper. No command module imports another; they all import this.

Nothing here imports torch at import time, so ``--help`` stays fast: the model is imported inside
:func:`load_model`.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from deblurtool import ui
from deblurtool.config import EncodeConfig, RuntimeConfig, TileConfig
from deblurtool.errors import EXIT_INTERRUPTED, EXIT_USAGE, DeblurError, one_line

if TYPE_CHECKING:
    from deblurtool.inference import Deblurrer
    from deblurtool.scale.worker import WorkerSpec

P = ParamSpec("P")
R = TypeVar("R")


class _State:
    debug: bool = False


state = _State()

TileSize = Annotated[
    int | None,
    typer.Option(
        "--tile-size",
        metavar="PIXELS",
        help="Tile edge in pixels (multiple of 4); 0 runs whole frames. Default: the fastest for the device.",
        min=0,
    ),
]
TileOverlap = Annotated[
    int | None,
    typer.Option(
        "--tile-overlap",
        metavar="PIXELS",
        help="Pixels shared by neighbouring tiles, cross-faded. Default: 32, less for tiles under 128.",
        min=0,
    ),
]
BatchSize = Annotated[
    int | None, typer.Option("--batch-size", metavar="N", help="Tiles per model call.", min=1)
]
Device = Annotated[str, typer.Option("--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N.")]
Precision = Annotated[
    str,
    typer.Option(
        "--precision",
        metavar="PRECISION",
        help="auto (CUDA: fp16; CPU with OpenVINO: int8 if it stays within 45 dB of the fp32 model on the "
        "shipped calibration crops, else the float precision below, with a note; CPU on PyTorch: bf16 where "
        "native and measured faster, else fp32), fp32, bf16, fp16 or int8 (CPU, OpenVINO: quantised once "
        "from the weights on the shipped calibration crops, then cached). --precision fp32 runs the "
        "float model.",
    ),
]
Engine = Annotated[
    str,
    typer.Option(
        "--engine",
        metavar="ENGINE",
        help="auto (on a CPU: OpenVINO if installed and its output passes a check against PyTorch fp32, "
        "else PyTorch; on CUDA: PyTorch), torch (PyTorch eager) or openvino. OpenVINO models are compiled "
        "once per weights, precision and frame/tile size and cached in ~/.cache/deblurtool "
        "($DEBLURTOOL_CACHE, $XDG_CACHE_HOME); clear it with `deblurtool cache clear`.",
    ),
]
Weights = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        metavar="FILE",
        help="A generator .safetensors file (default: the shipped weights/ model).",
        dir_okay=False,
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist.")]
NoProgress = Annotated[
    bool,
    typer.Option(
        "--no-progress",
        help="Neither the progress bar nor, when stderr is not a terminal (logs, nohup, CI), the progress "
        "line written every 30 s instead.",
    ),
]
Codec = Annotated[
    str | None,
    typer.Option(
        "--codec",
        metavar="ENCODER",
        help="FFmpeg video encoder: libx264, libx265, libsvtav1, libvpx-vp9, ffv1 (lossless; use .mkv), ... "
        "Default: libx264 (libvpx-vp9 for .webm, mpeg4 for .avi).",
        show_default=False,
    ),
]
Crf = Annotated[
    int | None,
    typer.Option(
        "--crf",
        metavar="N",
        min=0,
        max=63,
        help="Quality for encoders that have it, lower is better: 18 (the default for x264/x265) looks "
        "lossless, 0 is lossless; VP9 and AV1 default to 24.",
        show_default=False,
    ),
]
PixFmt = Annotated[
    str | None,
    typer.Option(
        "--pix-fmt",
        metavar="FORMAT",
        help="Encoder pixel format. Default: the input's when the encoder has it (10-bit stays 10-bit), "
        "else yuv420p.",
        show_default=False,
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="Run on a Ray cluster: auto (the one `ray start` made), local (start one here with this "
        "machine's GPUs or CPUs), HOST:PORT or ray://HOST:PORT. Inputs and outputs must be on storage every "
        'node sees. Needs pip install "deblurtool\\[ray]".',  # (\\[: not rich markup)
        show_default=False,
    ),
]
ChunkFrames = Annotated[
    int | None,
    typer.Option(
        "--chunk-frames",
        metavar="N",
        min=1,
        help="With --ray: cut longer videos into pieces of about N frames, shared among the workers "
        "(default: about a minute of frames).",
        show_default=False,
    ),
]
RayWorkers = Annotated[
    int | None,
    typer.Option(
        "--ray-workers",
        metavar="N",
        min=1,
        help="With --ray: how many workers (default: one per GPU, or one per node on clusters without GPUs).",
        show_default=False,
    ),
]


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    ui.error(message)
    return typer.Exit(code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into one line and an exit code; Ctrl-C into 130. ``--debug`` shows the traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except DeblurError as e:
            if state.debug:
                traceback.print_exc(file=sys.stderr)
            raise fail(str(e), e.exit_code) from None
        except KeyboardInterrupt:
            ui.interrupted()
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as e:  # an unexpected bug: still one line unless --debug
            if state.debug:
                traceback.print_exc(file=sys.stderr)
            first = (str(e).strip().splitlines() or [""])[0]
            raise fail(f"{type(e).__name__}: {first} (--debug shows the traceback)", EXIT_USAGE) from None

    return wrapper


# -- the model -----------------------------------------------------------------------------------------------


def tile_config(tile_size: int | None, tile_overlap: int | None, batch_size: int | None) -> TileConfig | None:
    """The tiling the tile options ask for: None (the device's default for each frame size) when all three
    are left out; if only some are given, the others take TileConfig's defaults (256 / 32 / 4), the overlap
    at most a quarter of a given tile size."""
    asked = {"tile_size": tile_size, "tile_overlap": tile_overlap, "batch_size": batch_size}
    given = {k: v for k, v in asked.items() if v is not None}
    if tile_size and tile_overlap is None:  # an overlap nobody asked for shrinks to fit small tiles
        given["tile_overlap"] = min(TileConfig.tile_overlap, tile_size // 4)
    return TileConfig(**given) if given else None


def check_model_options(
    *,
    device: str,
    precision: str,
    tile_size: int | None,
    tile_overlap: int | None,
    batch_size: int | None,
    engine: str = "auto",
) -> None:
    """Refuse bad model options at once (``--tile-size 30``), before inputs are read or torch imported."""
    tile_config(tile_size, tile_overlap, batch_size)
    RuntimeConfig(device=device, precision=precision, engine=engine)


def load_model(
    weights: Path | None,
    *,
    device: str,
    precision: str,
    tile_size: int | None,
    tile_overlap: int | None,
    batch_size: int | None,
    engine: str = "auto",
) -> Deblurrer:
    """Build the Deblurrer from the CLI's knobs and print the lines saying what will run. The options are
    checked first: a bad one is refused at once, not after seconds of importing torch."""
    tile = tile_config(tile_size, tile_overlap, batch_size)
    runtime = RuntimeConfig(device=device, precision=precision, engine=engine)

    from deblurtool.inference import Deblurrer  # heavy (torch): only when a command actually runs

    with naming_the_file(weights, "the model could not be loaded, nothing was written"):
        model = Deblurrer.from_weights(weights, tile=tile, runtime=runtime)
    ui.say(describe_model(model))
    for text in model.notes:
        ui.say(f"note: {text}")
    return model


def describe_model(model: Deblurrer) -> str:
    """One line: device, precision, tile settings and weights file actually used. A tiling that is the
    device's default (which may change with the frame size) says so."""
    tile = model.tile
    if tile.tile_size == 0:
        tiles = f"whole frames, batch_size {tile.batch_size}"
    else:
        tiles = f"tile_size {tile.tile_size}, tile_overlap {tile.tile_overlap}, batch_size {tile.batch_size}"
    if model.auto_tile:
        tiles += " (device default)"
    weights = model.weights_path if model.weights_path is not None else "in memory"
    return (
        f"model: device {model.device}, engine {model.engine}, precision {model.precision}, {tiles}, "
        f"weights {weights}"
    )


@contextlib.contextmanager
def naming_the_file(path: Path | None, outcome: str) -> Iterator[None]:
    """Turn an unexpected exception (a bug, an unforeseen library error) into a one-line DeblurError that
    names ``path`` (when there is one) and says ``outcome``; ``--debug`` still shows the original traceback
    (it is chained)."""
    try:
        yield
    except DeblurError:
        raise
    except Exception as e:
        raise DeblurError(f"failed: {one_line(e)}; {outcome} (--debug shows the traceback)", path) from e


# -- Ray ---------------------------------------------------------------------------------------------------


def check_ray(address: str | None) -> None:
    """With ``--ray``: Ray must be installed; if not, one line saying how, before anything else. Without it
    Ray is never imported."""
    if address is not None:
        from deblurtool.scale import require_ray

        require_ray()


def ray_spec(
    weights: Path | None,
    encode: EncodeConfig,
    *,
    device: str,
    precision: str,
    tile_size: int | None,
    tile_overlap: int | None,
    batch_size: int | None,
    engine: str = "auto",
) -> WorkerSpec:
    """What every Ray worker loads and encodes: the same settings :func:`load_model` would use here."""
    from deblurtool.scale.run import worker_spec

    tile = tile_config(tile_size, tile_overlap, batch_size)
    runtime = RuntimeConfig(device=device, precision=precision, engine=engine)
    return worker_spec(weights, tile, runtime, encode)
