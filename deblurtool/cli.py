"""The ``deblurtool`` command line: parse, build a config, call. Errors become one line and an exit code."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated

import typer

from deblurtool.commands.common import state

HELP = """Deblur motion-blurred videos and images with a DeblurGAN-style generator.

Frames are cut into overlapping 256x256 tiles, run through the generator in half precision (fp16 on a GPU,
bf16 on a CPU that has it) and stitched back with feathered seams; videos keep their audio, timing and size.

Exit codes: 0 all done; 1 some inputs failed (the rest were done); 2 usage or unusable input; 130 interrupted.
"""

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


def _register() -> None:
    # Each command lives in its own module; training code is imported only inside `train`.
    from deblurtool.commands import bench, folder, synth, train, video

    app.command("video")(video.video)
    app.command("folder")(folder.folder)
    app.command("train")(train.train)
    app.command("bench")(bench.bench)
    app.command("synth")(synth.synth)


_register()
