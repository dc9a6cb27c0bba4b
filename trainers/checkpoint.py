"""Full training state out and in: generator, critic, optimizers, schedulers, scalers, every RNG, counters.

Written to a temporary file beside ``checkpoints/last.pt`` and renamed, so an interruption at any moment
leaves either the previous checkpoint or the new one, never half of one. Everything is tensors and plain
types, so ``torch.load(weights_only=True)`` reads it back (nothing in a checkpoint executes on load).
"""

from __future__ import annotations

import random
import typing
from pathlib import Path

import numpy as np
import torch

from deblurtool.errors import InputError
from deblurtool.fsutil import atomic_write

CHECKPOINT_FORMAT = "deblurtool-train-checkpoint-v1"


def rng_state() -> dict[str, object]:
    """Every RNG state of this process as tensors and plain types."""
    np_state = typing.cast(tuple[typing.Any, ...], np.random.get_state())
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, typing.Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict[str, object], path: Path) -> None:
    """``state`` (with ``format`` set here) to ``path``, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        torch.save({**state, "format": CHECKPOINT_FORMAT}, tmp)


def load_checkpoint(path: Path) -> dict[str, typing.Any]:
    """The state saved at ``path``; InputError naming the file if it is missing, unreadable or not ours."""
    if not path.is_file():
        raise InputError("no checkpoint to resume from (expected checkpoints/last.pt)", path.parent.parent)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"cannot read the checkpoint ({type(e).__name__}: {e})", path) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"not a {CHECKPOINT_FORMAT} checkpoint", path)
    return ckpt
