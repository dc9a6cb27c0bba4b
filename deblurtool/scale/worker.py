"""The Ray actor: loads the model once (Ray's batch-inference pattern: one actor per GPU), then processes
work units, each written temp-then-rename into the shared output tree. Nothing here imports Ray: the driver
wraps :class:`UnitWorker` and :class:`ProgressSink` with ``ray.remote`` (``num_gpus=1`` per actor where the
cluster has GPUs).

A unit's own failure (damaged input, unwritable output, an input this node cannot see) is returned as a
failed :class:`UnitResult`, never raised: Ray retries only what a dead process left undone. The driver holds
the output's lock for the whole job, so a worker writes without taking it.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deblurtool.config import EncodeConfig, ModelSpec
from deblurtool.errors import InputError, ModelOutputError, one_line
from deblurtool.pipeline.folder import deblur_unit
from deblurtool.pipeline.plan import Unit, failure_reason
from deblurtool.pipeline.progress import LogProgress, describe_model
from deblurtool.scale.chunk import ChunkUnsupported, encode_chunk
from deblurtool.scale.units import ChunkRecord

_REPORT_EVERY_S = 0.5
SHARED_STORAGE = "with --ray, inputs and outputs must be on storage every node sees (a shared filesystem)"


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker runs: the command's :class:`ModelSpec` whole (``model``) and the encoder settings,
    ``threads`` for torch on CPU workers, and ``marker``: a file the driver holds in the output folder (its
    lock), which a worker must see."""

    model: ModelSpec
    encode: EncodeConfig
    marker: Path = Path()
    threads: int | None = None


@dataclass
class UnitResult:
    """What one unit gave: ``ok`` or a one-line ``reason``; ``unsupported`` marks a chunk whose video cannot
    be cut exactly (the driver then runs it whole); ``damage`` a damaged video deblurred as far as it went;
    ``fatal`` a model that returned NaN or infinity (every other unit would fail alike: the job stops)."""

    key: str
    ok: bool
    worker: int
    pid: int
    node: str
    frames: int = 0
    seconds: float = 0.0
    reason: str = ""
    unsupported: bool = False
    fatal: bool = False
    damage: str | None = None
    record: ChunkRecord | None = None
    pix_fmt: str = ""
    copied_streams: int = 0
    notes: list[str] = field(default_factory=list)


class ProgressSink:
    """Frames done so far by each unit in flight (the latest attempt wins: a retried unit starts over)."""

    def __init__(self) -> None:
        self.frames: dict[str, tuple[int, int]] = {}

    def report(self, key: str, attempt: int, frames: int) -> None:
        if attempt >= self.frames.get(key, (-1, 0))[0]:
            self.frames[key] = (attempt, frames)

    def forget(self, key: str) -> None:
        self.frames.pop(key, None)

    def snapshot(self) -> dict[str, int]:
        return {k: f for k, (_, f) in self.frames.items()}


class _Counting:
    """The model, counting frames and reporting them to the sink about twice a second."""

    def __init__(self, model: Any, sink: Any, key: str, attempt: int) -> None:
        self.model, self.sink, self.key, self.attempt = model, sink, key, attempt
        self.frames = 0
        self._last = time.monotonic()

    def deblur_array(self, img: np.ndarray) -> np.ndarray:
        out = self.model.deblur_array(img)
        self.frames += 1
        now = time.monotonic()
        if self.sink is not None and now - self._last >= _REPORT_EVERY_S:
            self._last = now
            self.sink.report.remote(self.key, self.attempt, self.frames)
        return out


class UnitWorker:
    """One model on one device; :meth:`run` processes a unit. Construction never raises: a model that fails
    to load is reported by :meth:`ready`, so the driver can say why in one line."""

    def __init__(self, spec: WorkerSpec, index: int) -> None:
        self.spec, self.index = spec, index
        self.node = socket.gethostname()
        self.error: str | None = None
        self.model: Any = None
        self.signature = self.description = ""
        self.notes: list[str] = []
        try:
            self._load()
        except Exception as e:
            self.error = one_line(e)

    def _load(self) -> None:
        import torch

        from deblurtool.inference import load_deblurrer

        s = self.spec
        if s.threads:
            torch.set_num_threads(s.threads)
        self.model = load_deblurrer(s.model)
        self.signature = self.model.signature
        self.description = describe_model(self.model)
        self.notes = list(self.model.notes)

    def ready(self) -> dict[str, Any]:
        """Who this worker is and what it runs (``error``: why it has no model)."""
        return {
            "pid": os.getpid(),
            "node": self.node,
            "signature": self.signature,
            "description": self.description,
            "notes": self.notes,
            "error": self.error,
        }

    def pid(self) -> int:
        return os.getpid()

    def run(self, unit: Unit, attempt: int = 0, sink: Any = None) -> UnitResult:
        """Process ``unit`` (try number ``attempt``), reporting frames to ``sink`` (a ProgressSink actor)."""
        result = UnitResult(key=unit.key, ok=False, worker=self.index, pid=os.getpid(), node=self.node)
        started = time.perf_counter()
        counting = _Counting(self.model, sink, unit.key, attempt)
        try:
            if self.model is None:
                raise InputError(f"the worker on {self.node} has no model ({self.error})")
            self._check_visible(unit)
            if unit.kind == "chunk":
                assert unit.chunk is not None
                result.record = encode_chunk(unit.src, unit.out, unit.chunk, counting, self.spec.encode)
                result.pix_fmt = result.record.pix_fmt
            else:
                summary = deblur_unit(counting, unit, self.spec.encode, LogProgress())
                if summary is not None:
                    result.damage, result.pix_fmt = summary.damage, summary.pix_fmt
                    result.copied_streams, result.notes = summary.copied_streams, list(summary.notes)
            result.ok = True
        except ChunkUnsupported as e:
            result.unsupported, result.reason = True, one_line(e)
        except ModelOutputError as e:
            result.fatal, result.reason = True, one_line(e)
        except Exception as e:  # this unit's own failure: reported, not retried
            result.reason = failure_reason(e)
        result.frames, result.seconds = counting.frames, time.perf_counter() - started
        if result.record is not None:
            result.frames = result.record.frames
        return result

    def _check_visible(self, unit: Unit) -> None:
        if not self.spec.marker.is_file():
            raise InputError(
                f"the output folder is not visible on node {self.node}; {SHARED_STORAGE}",
                self.spec.marker.parent,
            )
        if not unit.src.exists():
            raise InputError(f"not visible on node {self.node}; {SHARED_STORAGE}", unit.src)
