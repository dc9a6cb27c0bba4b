"""What the commands share: every option alias (same names at every layer), the model spec built once per
command, the one place that runs a plan locally or on Ray, and the error-to-exit-code wrapper. No command
module imports another; they all import this.

Nothing here imports torch at import time, so ``--help`` stays fast: the model is imported inside
:func:`load_model`.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from deblurtool import ui
from deblurtool.config import ModelSpec, RuntimeConfig, TileConfig
from deblurtool.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    DeblurError,
    InternalError,
    Terminated,
    one_line,
    os_reason,
)

if TYPE_CHECKING:
    from deblurtool.inference import Deblurrer
    from deblurtool.pipeline import JobResult, Plan
    from deblurtool.ui import ProgressBar

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
        help="auto (CUDA: fp16; CPU with OpenVINO: int8 where its output on the shipped calibration crops "
        "differs from the fp32 model's by no more than a PSNR of 45 dB allows (about one 8-bit level of "
        "noise), else the float precision below, with a note; CPU on PyTorch: bf16 where "
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
ModelName = Annotated[
    str | None,
    typer.Option(
        "--model",
        metavar="NAME",
        help="A shipped model by name (`deblurtool models` lists them); not together with --weights.",
        show_default=False,
    ),
]
Strength = Annotated[
    float,
    typer.Option(
        "--strength",
        metavar="S",
        min=0.0,
        max=1.0,
        help="How much of the model's correction to apply, per pixel: 1 the model's output, 0 the input "
        "unchanged, between them a blend.",
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
# A slice of a video (`video` only): times as seconds or [HH:]MM:SS[.ms], parsed by media.time_range.
Start = Annotated[
    str | None,
    typer.Option(
        "--start",
        metavar="TIME",
        help="Deblur only from TIME on (seconds, 12.5, or [HH:]MM:SS[.ms], from the first frame); the output "
        "starts at 0, with the audio and subtitles of the same span.",
        show_default=False,
    ),
]
Duration = Annotated[
    str | None,
    typer.Option(
        "--duration",
        metavar="TIME",
        help="Deblur only this long a part (from --start, or the beginning).",
        show_default=False,
    ),
]
End = Annotated[
    str | None,
    typer.Option(
        "--end", metavar="TIME", help="Deblur only up to TIME (not with --duration).", show_default=False
    ),
]


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    ui.error(message)
    return typer.Exit(code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into one line and their exit code (2 usage or bad input, 1 some inputs failed); an
    exception nobody foresaw into one ``internal error:`` line and 70; Ctrl-C into 130, SIGTERM into 143.
    ``--debug`` shows the traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except InternalError as e:
            if state.debug:
                traceback.print_exc(file=sys.stderr)
            ui.error(str(e), label="internal error")
            raise typer.Exit(e.exit_code) from None
        except DeblurError as e:
            if state.debug:
                traceback.print_exc(file=sys.stderr)
            raise fail(str(e), e.exit_code) from None
        except Terminated:
            ui.interrupted("terminated")
            raise typer.Exit(EXIT_TERMINATED) from None
        except KeyboardInterrupt:
            ui.interrupted()
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as e:  # a bug: still one line unless --debug
            if state.debug:
                traceback.print_exc(file=sys.stderr)
            error = InternalError(f"{one_line(e)} (--debug shows the traceback)")
            ui.error(str(error), label="internal error")
            raise typer.Exit(error.exit_code) from None

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


def model_spec(
    *,
    weights: Path | None = None,
    model: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    engine: str = "auto",
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    batch_size: int | None = None,
    strength: float = 1.0,
) -> ModelSpec:
    """The one :class:`ModelSpec` of a command, from its model options: bad ones are refused at once
    (``--tile-size 30``), before inputs are read or torch imported. ``--model NAME`` names a shipped model
    (refused together with ``--weights``)."""
    if model is not None and weights is not None:
        raise DeblurError("--model and --weights both name the generator to run; give one of them")
    spec = ModelSpec(
        weights=weights,
        runtime=RuntimeConfig(device=device, precision=precision, engine=engine),
        tile=tile_config(tile_size, tile_overlap, batch_size),
        strength=strength,
    )
    if model is not None:
        from deblurtool.models.weights import resolve_model  # (imports torch: only when a name is given)

        spec = ModelSpec(
            weights=resolve_model(model), runtime=spec.runtime, tile=spec.tile, strength=strength
        )
    return spec


def load_model(spec: ModelSpec) -> Deblurrer:
    """Build the Deblurrer ``spec`` describes and say what will run (on stderr: ``model:`` and ``note:``
    lines are diagnostics, not results)."""
    from deblurtool.inference import load_deblurrer  # heavy (torch): only when a command actually runs
    from deblurtool.pipeline.progress import describe_model

    with naming_the_file(spec.weights, "the model could not be loaded, nothing was written"):
        model = load_deblurrer(spec)
    ui.tell(describe_model(model))
    for text in model.notes:
        ui.tell(f"note: {text}")
    return model


@contextlib.contextmanager
def naming_the_file(path: Path | None, outcome: str) -> Iterator[None]:
    """Name ``path`` (when there is one) and say ``outcome`` in the one line of an error nobody caught
    before: an OS error (a full disk, a permission) is the user's to fix (exit 2, its reason in words), any
    other exception a bug (an :class:`InternalError`, exit 70); ``--debug`` still shows the original
    traceback (it is chained)."""
    try:
        yield
    except DeblurError:
        raise
    except OSError as e:
        where = f": {e.filename}" if e.filename and str(e.filename) != str(path) else ""
        raise DeblurError(f"failed: {os_reason(e)}{where}; {outcome}", path) from e
    except Exception as e:
        raise InternalError(f"failed: {one_line(e)}; {outcome} (--debug shows the traceback)", path) from e


# -- running a plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RayOptions:
    """``--ray ADDRESS`` and the options that go with it (None fields: their defaults)."""

    address: str
    chunk_frames: int | None = None
    workers: int | None = None


def ray_options(address: str | None, chunk_frames: int | None, workers: int | None) -> RayOptions | None:
    """The Ray options, or None without ``--ray`` (then Ray is never imported). With it, Ray must be
    installed: if not, one line saying how, before anything else."""
    if address is None:
        return None
    from deblurtool.scale import require_ray

    require_ray()
    return RayOptions(address, chunk_frames, workers)


def run_plan(
    plan: Plan, spec: ModelSpec, *, ray: RayOptions | None, overwrite: bool, progress: ProgressBar, kept: str
) -> JobResult:
    """Run ``plan`` with the model ``spec`` describes: here (the model loaded once, its ``model:`` line said)
    or on the Ray cluster (each worker loads it; the first one's line is said). ``kept`` says what is left of
    the outputs if the run fails unexpectedly.

    While it runs, whatever the engines or Ray print on stdout (NNCF's progress bars while it quantises,
    Ray's coloured "(raylet) ..." messages) goes to stderr: stdout is for results, which the command prints
    once the run has returned."""
    from deblurtool.pipeline import run_local

    with contextlib.redirect_stdout(sys.stderr):
        if ray is None:
            model = load_model(spec)
            with naming_the_file(plan.src, kept):
                return run_local(
                    plan, model, signature=model.signature, overwrite=overwrite, progress=progress
                )
        from deblurtool.scale.run import run_ray, worker_spec

        with naming_the_file(plan.src, kept):
            return run_ray(plan, worker_spec(spec, plan.encode), address=ray.address,
                           chunk_frames=ray.chunk_frames, overwrite=overwrite, workers=ray.workers,
                           progress=progress, say=ui.tell)  # fmt: skip
