"""The driver's side of Ray: connect, start one actor per GPU (or per node's CPUs), hand out units, survive
dead workers, draw one progress bar for the whole job.

Failures of workers: an actor is created with ``max_restarts`` so Ray brings a killed process back (on any
node with room, so also after its node left). Its units in flight fail on the driver with a RayActorError;
the driver puts them back at the head of the queue, where the next free worker, on this node or another,
takes them (``max_task_retries`` would bind them to the restarting actor instead, which may never come back
if its node is gone). A unit whose worker died ``MAX_ATTEMPTS`` times is failed alone (a poison input must
not take the job down). A restarted actor gets work again once its ``ready`` call answers (model loaded);
while Ray restarts it, that call fails with ActorUnavailableError and is asked again a moment later, so
the job waits for the restart (also when the dead worker was its only one). An actor is given up only when
Ray says it is dead for good (``ready`` keeps failing with ActorDiedError). A death is counted once: at its
first news (a unit lost, or the actor answering from a new process), never for the failed ``ready`` calls
while Ray restarts it.

Progress: one count for the whole job (frames done by all workers, an image counting as one), given to a
:class:`JobProgress` (the CLI's :class:`deblurtool.ui.ProgressBar` draws it); the library prints nothing.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

from deblurtool.errors import DeblurError, one_line
from deblurtool.pipeline.plan import Unit
from deblurtool.pipeline.progress import LogProgress, Progress
from deblurtool.scale import require_ray
from deblurtool.scale.worker import ProgressSink, UnitResult, UnitWorker, WorkerSpec

MAX_ATTEMPTS = 3  # tries of one unit whose worker keeps dying
MAX_RESTARTS = 8  # restarts of one actor
IN_FLIGHT = 2  # units queued per worker: the next one is ready when the current one ends
NO_WORKER_PATIENCE_S = 600.0  # no worker alive for this long: give up
SNAPSHOT_EVERY_S = 0.5  # how often the driver asks for the frames done by units in flight (an RPC)
ASK_AGAIN_S = 0.5  # pause before asking a restarting (or dying) actor again whether it is ready
DEAD_ANSWERS = 3  # ``ready`` failing this many times in a row with ActorDiedError: dead for good

Events = Callable[[str, dict[str, Any]], None]


class JobProgress(Progress, Protocol):
    """A :class:`~deblurtool.pipeline.Progress` that can also follow a job known by counts."""

    def job(self, label: str, total: int) -> AbstractContextManager[Callable[[int, int, str], None]]:
        """Around the job: yields ``update(done, total, status)``."""
        ...


class LogJobProgress(LogProgress):
    """The default :class:`JobProgress`: notes and failures logged, no counts."""

    def job(self, label: str, total: int) -> AbstractContextManager[Callable[[int, int, str], None]]:
        return contextlib.nullcontext(lambda done, total, status: None)


def as_job_progress(progress: JobProgress | None) -> JobProgress:
    return progress if progress is not None else LogJobProgress()


class Job(Protocol):
    """What the dispatcher needs of a job (see ``jobs.RayJob``): results in, more units out."""

    total_frames: int
    frames_done: int

    def on_result(self, unit: Unit, result: UnitResult) -> list[Unit]: ...
    def poll(self) -> list[Unit]: ...
    def busy(self) -> bool: ...
    def wanted(self, unit: Unit) -> bool: ...


def connect(address: str) -> tuple[ModuleType, bool]:
    """``ray`` connected to ``address`` (auto | local | ray://host:port | host:port); True when this call
    started the connection (the caller then disconnects). An existing connection in this process is used."""
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    quiet: dict[str, Any] = {"logging_level": logging.ERROR}
    try:
        if address == "local":  # a one-machine cluster in this process: this machine's GPUs or CPUs
            ray.init(include_dashboard=False, log_to_driver=False, **quiet)
        elif address.startswith("ray://"):
            ray.init(address=address, **quiet)
        else:
            ray.init(address=address, log_to_driver=False, **quiet)
    except Exception as e:
        hint = "start one with `ray start --head` (or use --ray local)"
        raise DeblurError(
            f"--ray {address}: cannot connect to a Ray cluster ({one_line(e)}); {hint}"
        ) from None
    return ray, True


@dataclass
class WorkerState:
    """One actor as the driver sees it, with its counts for the final summary."""

    index: int
    handle: Any
    ready_ref: Any = None
    alive: bool = False
    gone: bool = False
    node: str = ""
    pids: list[int] = field(default_factory=list)
    in_flight: int = 0
    units: int = 0
    frames: int = 0
    seconds: float = 0.0
    deaths: int = 0
    ask_at: float | None = None  # when to ask a restarting actor again whether it is ready
    dead_answers: int = 0  # ``ready`` calls in a row that said the actor is dead
    death_noted: bool = False  # its death is counted and it has not answered since

    def line(self) -> str:
        pids = ", ".join(map(str, self.pids)) or "none"
        restarts = f", {self.deaths} death(s) survived" if self.deaths else ""
        if self.gone and self.pids:
            restarts = f", gone after {self.deaths} death(s)"
        return (
            f"worker {self.index} on {self.node or '?'} (pid {pids}): {self.units} unit(s), "
            f"{self.frames} frame(s) in {self.seconds:.1f} s{restarts}"
        )


def worker_resources(
    ray: ModuleType, device: str, workers: int | None
) -> tuple[int, dict[str, Any], int | None]:
    """(how many actors, their Ray resources, torch threads): one actor per GPU (``num_gpus=1``) where the
    cluster has GPUs and ``device`` allows; else one per node (or ``workers``), each holding its CPUs."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if device != "cpu" and gpus:
        return workers or gpus, {"num_gpus": 1, "num_cpus": 1}, None
    if device.startswith("cuda"):
        raise DeblurError(f"--device {device}, but the Ray cluster has no GPUs")
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU")]
    node_cpus = min((int(n["Resources"]["CPU"]) for n in nodes), default=1)
    count = workers or max(1, len(nodes))
    per = max(1, min(node_cpus, int(res.get("CPU", 1)) // count))
    return count, {"num_cpus": per, "num_gpus": 0}, per


class Pool:
    """The actors of one job. Use as a context manager: on leaving (also on Ctrl-C) every actor is killed,
    so no worker goes on writing after the driver stopped."""

    def __init__(
        self,
        ray: ModuleType,
        spec: WorkerSpec,
        count: int,
        resources: dict[str, Any],
        events: Events | None = None,
    ) -> None:
        self.ray, self.events = ray, events or (lambda name, info: None)
        self.sink = ray.remote(num_cpus=0)(ProgressSink).remote()
        actor = ray.remote(UnitWorker).options(max_restarts=MAX_RESTARTS, max_task_retries=0, **resources)
        self.workers = [WorkerState(i, actor.remote(spec, i)) for i in range(count)]
        for w in self.workers:
            w.ready_ref = w.handle.ready.remote()
        self.signature = self.description = ""
        self.model_notes: list[str] = []
        self.notes: list[str] = []

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in [w.handle for w in self.workers] + [self.sink]:
            with contextlib.suppress(Exception):  # already gone
                self.ray.kill(handle, no_restart=True)

    @property
    def alive(self) -> int:
        return sum(w.alive for w in self.workers)

    def wait_first(self) -> None:
        """Block until one worker has its model (its signature becomes the job's); error if none can."""
        deadline = time.monotonic() + NO_WORKER_PATIENCE_S
        while not self.alive:
            self._ask_again()
            pending = [w.ready_ref for w in self.workers if w.ready_ref is not None]
            if not self.waiting or time.monotonic() > deadline:
                why = "; ".join(self.notes) or "none could be scheduled (see `ray status`)"
                raise DeblurError(f"no Ray worker could start: {why}")
            if not pending:
                time.sleep(0.1)
                continue
            done, _ = self.ray.wait(pending, num_returns=1, timeout=0.5)
            for ref in done:
                self._on_ready(ref)

    def _on_ready(self, ref: Any) -> None:
        w = next(w for w in self.workers if w.ready_ref == ref)
        w.ready_ref = None
        try:
            info = self.ray.get(ref)
        except self._restarting:  # Ray is bringing it back: ask again in a moment (no new death)
            w.ask_at = time.monotonic() + ASK_AGAIN_S
            return
        except self.ray.exceptions.RayError as e:  # dead: for good once Ray keeps saying so
            w.dead_answers += 1
            if w.dead_answers < DEAD_ANSWERS:
                w.ask_at = time.monotonic() + ASK_AGAIN_S
                return
            w.gone = True
            w.deaths += bool(w.pids) and not w.death_noted  # it ran once and did not come back
            self.notes.append(f"worker {w.index} died ({one_line(e)[:200]})")
            return
        w.dead_answers = 0
        if info["error"] or (self.signature and info["signature"] != self.signature):
            w.gone = True
            why = info["error"] or f"it runs other settings ({info['signature']} against {self.signature})"
            self.notes.append(f"worker {w.index} on {info['node']} not used: {why}")
            self.ray.kill(w.handle, no_restart=True)
            return
        if not self.signature:
            self.signature, self.description = info["signature"], info["description"]
            self.model_notes = list(info["notes"])
        w.alive, w.node = True, info["node"]
        restarted = bool(w.pids) and info["pid"] != w.pids[-1]  # answers from a new process
        if restarted != w.death_noted:  # a death not seen by a unit, or news of one that did not happen
            w.deaths += 1 if restarted else -1
        w.death_noted = False
        if restarted or not w.pids:
            w.pids.append(info["pid"])
        self.events("ready", {"worker": w.index, "pid": info["pid"], "node": w.node})

    @property
    def _restarting(self) -> type[Exception] | tuple[()]:
        return getattr(self.ray.exceptions, "ActorUnavailableError", ())

    def _ask_again(self) -> None:
        """Ask the actors that were restarting whether they are ready now."""
        now = time.monotonic()
        for w in self.workers:
            if w.ask_at is not None and now >= w.ask_at and not w.gone:
                w.ask_at, w.ready_ref = None, w.handle.ready.remote()

    @property
    def waiting(self) -> bool:
        """Some actor may still come (loading its model, or being restarted by Ray)."""
        return any(not w.alive and not w.gone for w in self.workers)

    def run(self, units: list[Unit], job: Job, report: JobProgress, label: str) -> None:
        """Process ``units`` (and those the job adds) until the job has nothing left."""
        queue: collections.deque[tuple[Unit, int]] = collections.deque((u, 0) for u in units)
        in_flight: dict[Any, tuple[WorkerState, Unit, int]] = {}
        snapshot_ref: Any = None
        partial: dict[str, int] = {}
        next_snapshot = 0.0
        lonely_since = time.monotonic()
        with report.job(label, max(job.total_frames, 1)) as update:
            while queue or in_flight or job.busy():
                self._ask_again()
                self._assign(queue, in_flight, job)
                refs = [*in_flight, *(w.ready_ref for w in self.workers if w.ready_ref is not None)]
                if not refs:
                    if queue and not self.alive and not self.waiting:
                        raise DeblurError(f"every Ray worker is gone: {'; '.join(self.notes[-3:])}")
                    time.sleep(0.1)  # only joins are running, or restarting actors are asked again soon
                else:
                    if snapshot_ref is None and time.monotonic() >= next_snapshot:
                        snapshot_ref = self.sink.snapshot.remote()
                    waiting = [*refs, snapshot_ref] if snapshot_ref is not None else refs
                    done, _ = self.ray.wait(waiting, num_returns=1, timeout=0.25)
                    if done:
                        done, _ = self.ray.wait(waiting, num_returns=len(waiting), timeout=0)
                    for ref in done:
                        if snapshot_ref is not None and ref == snapshot_ref:
                            partial = self.ray.get(ref)
                            snapshot_ref, next_snapshot = None, time.monotonic() + SNAPSHOT_EVERY_S
                            self.events("progress", {"in_flight": dict(partial)})
                        elif ref in in_flight:
                            queue.extend((u, 0) for u in self._on_unit(ref, in_flight.pop(ref), queue, job))
                        else:
                            self._on_ready(ref)
                queue.extend((u, 0) for u in job.poll())
                if self.alive or not queue:
                    lonely_since = time.monotonic()
                elif time.monotonic() - lonely_since > NO_WORKER_PATIENCE_S:
                    raise DeblurError(f"no Ray worker alive for {NO_WORKER_PATIENCE_S:.0f} s; stopping")
                busy = sum(partial.get(u.key, 0) for _, u, _ in in_flight.values())
                update(job.frames_done + busy, max(job.total_frames, 1), f"{self.alive} worker(s)")
            update(job.frames_done, max(job.frames_done, 1), f"{self.alive} worker(s)")

    def _assign(
        self, queue: collections.deque[tuple[Unit, int]], in_flight: dict[Any, Any], job: Job
    ) -> None:
        for depth in range(IN_FLIGHT):  # one unit to each worker first, then a second one each
            for w in self.workers:
                while w.alive and w.in_flight <= depth and queue:
                    unit, attempt = queue.popleft()
                    if not job.wanted(unit):
                        continue
                    in_flight[w.handle.run.remote(unit, attempt, self.sink)] = (w, unit, attempt)
                    w.in_flight += 1
                    self.events(
                        "submit", {"unit": unit.key, "kind": unit.kind, "worker": w.index, "attempt": attempt}
                    )

    def _on_unit(
        self,
        ref: Any,
        entry: tuple[WorkerState, Unit, int],
        queue: collections.deque[tuple[Unit, int]],
        job: Job,
    ) -> list[Unit]:
        w, unit, attempt = entry
        w.in_flight -= 1
        try:
            result: UnitResult = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:  # a bug in the worker code, not a dead process
            result = UnitResult(unit.key, ok=False, worker=w.index, pid=0, node=w.node, reason=one_line(e))
        except self.ray.exceptions.RayError as e:  # the process or its node died: run it again elsewhere
            self._lost(w, e)
            if attempt + 1 < MAX_ATTEMPTS:
                queue.appendleft((unit, attempt + 1))
                self.events("retry", {"unit": unit.key, "attempt": attempt + 1, "worker": w.index})
                return []
            reason = f"its worker died {attempt + 1} times while processing it ({one_line(e)[:200]})"
            result = UnitResult(unit.key, ok=False, worker=w.index, pid=0, node=w.node, reason=reason)
        if unit.kind != "image":  # images rarely report (they end within the reporting interval)
            self.sink.forget.remote(unit.key)
        w.units += 1
        w.frames += result.frames
        w.seconds += result.seconds
        self.events(
            "result",
            {"unit": unit.key, "kind": unit.kind, "worker": w.index, "pid": result.pid, "ok": result.ok},
        )
        return job.on_result(unit, result)

    def _lost(self, w: WorkerState, error: Exception) -> None:
        if w.alive:  # first news of this death: wait for Ray's restart before giving it work again
            w.alive, w.death_noted = False, True
            w.deaths += 1
            w.ready_ref = w.handle.ready.remote()
            self.events("died", {"worker": w.index, "reason": one_line(error)[:200]})
