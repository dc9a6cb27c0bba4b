"""Where this process stands under torchrun: the one place that reads its environment."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Dist:
    """This process's place under torchrun (one process: rank 0 of 1, not distributed)."""

    distributed: bool
    rank: int
    world: int
    local_rank: int


def distributed_setup() -> Dist:
    """Read torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK); the process group is made by the Trainer
    once it knows its device (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(False, 0, 1, 0)
    return Dist(True, int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
