"""The ``deblurtool`` command line: parse, build a config, call. Errors become one line and an exit code."""

from __future__ import annotations

import inspect
import signal
from types import FrameType
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from deblurtool.commands.common import state
from deblurtool.errors import EXIT_CODES_HELP, Terminated

# Typer's rich help keeps a docstring's line breaks, so paragraphs are joined without them.
HELP = "\n\n".join(
    [
        "Deblur motion-blurred videos and images with a DeblurGAN-style generator.",
        "Frames are cut into overlapping 256x256 tiles (or run whole where that is faster), run through the "
        "generator in reduced precision (fp16 on a GPU; on a CPU int8 through OpenVINO, checked against "
        "the fp32 model, or bf16/fp32 where asked) and stitched back with feathered seams; videos keep "
        "their audio, timing and size.",
        "Start with: deblurtool video IN.mp4 OUT.mp4, or deblurtool folder IN_DIR OUT_DIR. "
        "Each command's --help explains its options.",
        EXIT_CODES_HELP,
        "Results (summaries, tables) go to stdout; the model: and note: lines, warnings, progress and "
        "errors to stderr.",
    ]
)

# Metavars for options that do not name their own, from the type typer would show (``<int range>``).
_METAVARS = {"int": "N", "float": "X", "str": "TEXT", "path": "PATH", "file": "FILE", "directory": "DIR"}


def _readable(params: list[Any], ctx: Any) -> list[Any]:
    """Flags show no ``<bool>``; other options a word (``N``, ``PATH``) instead of ``<int range>``."""
    for param in params:
        if not isinstance(param, TyperOption) or param.metavar is not None:
            continue
        if param.is_flag:
            param.metavar = ""
        else:
            kind = param.display_type(ctx).strip("<>").removesuffix(" range")
            param.metavar = _METAVARS.get(kind, kind.upper())
    return params


class _Command(TyperCommand):
    """Help that reads well: ``Usage: deblurtool video [OPTIONS] SRC DST`` (typer writes ``{src} {dst}``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]

    def get_params(self, ctx: Any) -> list[Any]:
        return _readable(super().get_params(ctx), ctx)


class _Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _readable(super().get_params(ctx), ctx)


app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode="rich", cls=_Group)


def _print_version(value: bool) -> None:
    if value:
        from deblurtool import __version__

        print(f"deblurtool {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
    ] = False,
) -> None:
    state.debug = debug
    # SIGTERM (e.g. `kill`, `docker stop`) takes the Ctrl-C path (threads stop, temp files go), exit 143.
    signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def reflow(doc: str | None) -> str | None:
    """A docstring as help text: the lines of each paragraph joined (rich help would keep the source's line
    breaks and wrap again, leaving ragged lines); paragraphs holding indented lines (examples) stay as
    they are."""
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(
        p if any(line[:1].isspace() for line in p.splitlines()) else " ".join(p.split()) for p in paragraphs
    )


def _register() -> None:
    # Each command lives in its own module; training code is imported only inside `train`.
    from deblurtool.commands import bench, cache, compare, folder, models, synth, train, video

    for name, fn in (
        ("video", video.video),
        ("folder", folder.folder),
        ("compare", compare.compare),
        ("models", models.models),
        ("train", train.train),
        ("bench", bench.bench),
        ("synth", synth.synth),
        ("cache", cache.cache),
    ):
        app.command(name, help=reflow(fn.__doc__), cls=_Command)(fn)


_register()
