"""What a run needs of its model, how the model is described, and how a run reports as it goes (the library
prints nothing itself)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from deblurtool.inference import Deblurrer

log = logging.getLogger("deblurtool.pipeline")


class ArrayModel(Protocol):
    """What the pipeline needs of a model: HxWx3 uint8/uint16 RGB in, the same shape and dtype out."""

    def deblur_array(self, img: np.ndarray) -> np.ndarray: ...


class Progress(Protocol):
    """How a run reports while it works. :class:`deblurtool.ui.ProgressBar` draws it for the CLI."""

    def note(self, text: str) -> None:
        """A one-line note worth showing at once (e.g. a stream that will not be copied)."""

    def failed(self, path: Path, reason: str) -> None:
        """One input failed with a one-line ``reason``; the run goes on."""

    def items(self, label: str, total: int | None) -> AbstractContextManager[Callable[[], None]]:
        """Around the work on ``total`` items (None: unknown): yields the function to call per item done."""
        ...


class LogProgress:
    """The default :class:`Progress`: notes and failures go to the ``deblurtool.pipeline`` logger."""

    def note(self, text: str) -> None:
        log.info("%s", text)

    def failed(self, path: Path, reason: str) -> None:
        log.warning("failed: %s: %s", path, reason)

    def items(self, label: str, total: int | None) -> AbstractContextManager[Callable[[], None]]:
        return contextlib.nullcontext(lambda: None)


def as_progress(progress: Progress | bool | None) -> Progress:
    """``progress`` itself, or :class:`LogProgress` for None and for the booleans earlier versions took
    (``progress=True`` drew a bar from inside the library; the CLI draws it now)."""
    return LogProgress() if progress is None or isinstance(progress, bool) else progress


def describe_model(model: Deblurrer) -> str:
    """One line: device, engine, precision, tile settings and weights file actually used (the same words from
    a local run and from a Ray worker). A tiling that is the device's default (which may change with the
    frame size) says so."""
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
