"""The ``deblurtool`` command line: parse, build a config, call. Errors become one line and an exit code."""

from __future__ import annotations

import inspect
import signal
from types import FrameType
from typing import Annotated

import typer

from deblurtool.commands.common import state

# Typer's rich help keeps a docstring's line breaks, so paragraphs are joined without them.
HELP = "\n\n".join(
    [
        "Deblur motion-blurred videos and images with a DeblurGAN-style generator.",
        "Frames are cut into overlapping 256x256 tiles (or run whole where that is faster), run through the "
        "generator in half precision (fp16 on a GPU, bf16 on a CPU that has it and runs it faster) and "
        "stitched back with feathered seams; videos keep their audio, timing and size.",
        "Start with: deblurtool video IN.mp4 OUT.mp4, or deblurtool folder IN_DIR OUT_DIR. "
        "Each command's --help explains its options.",
        "Exit codes: 0 all done; 1 some inputs failed (the rest were done); 2 usage or unusable input; "
        "130 interrupted.",
    ]
)

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode="rich")


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    state.debug = debug
    # SIGTERM (e.g. `kill`, `docker stop`) takes the Ctrl-C path: threads stop, temp files go, exit 130.
    signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


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
    from deblurtool.commands import bench, folder, synth, train, video

    for name, fn in (
        ("video", video.video),
        ("folder", folder.folder),
        ("train", train.train),
        ("bench", bench.bench),
        ("synth", synth.synth),
    ):
        app.command(name, help=reflow(fn.__doc__))(fn)


_register()
