"""Option aliases shared by the commands (same names at every layer) and the error-to-exit-code wrapper."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from deblurtool.errors import EXIT_INTERRUPTED, EXIT_USAGE, DeblurError

P = ParamSpec("P")
R = TypeVar("R")

err_console = Console(stderr=True, highlight=False)


class _State:
    debug: bool = False


state = _State()

TileSize = Annotated[
    int | None,
    typer.Option(
        "--tile-size",
        help="Tile edge in pixels (multiple of 4); 0 runs whole frames. Default: the fastest for the device.",
        min=0,
    ),
]
TileOverlap = Annotated[
    int | None,
    typer.Option("--tile-overlap", help="Pixels shared by neighbouring tiles, cross-faded.", min=0),
]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Tiles per model call.", min=1)]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Precision = Annotated[
    str,
    typer.Option(
        "--precision",
        help="auto (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), fp32, bf16 or fp16.",
    ),
]
Weights = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        help="A generator .safetensors file (default: the shipped weights/ model).",
        dir_okay=False,
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist.")]


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
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
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as e:  # an unexpected bug: still one line unless --debug
            if state.debug:
                traceback.print_exc(file=sys.stderr)
            first = (str(e).strip().splitlines() or [""])[0]
            raise fail(f"{type(e).__name__}: {first} (--debug shows the traceback)", EXIT_USAGE) from None

    return wrapper
