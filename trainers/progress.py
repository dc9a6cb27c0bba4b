"""The trainer's progress: the tool's bar (``deblurtool.ui``) with running losses on a terminal, else a plain
line every N steps (logs, nohup)."""

from __future__ import annotations

import sys
import typing

if typing.TYPE_CHECKING:
    from trainers.train import Trainer


class Reporter:
    """Progress of the current epoch (rank 0 only: ``enabled`` is False on the other ranks)."""

    def __init__(self, trainer: Trainer, *, enabled: bool) -> None:
        self.trainer, self.enabled = trainer, enabled
        self.tty = enabled and sys.stdout.isatty()
        self.progress: typing.Any = None
        self.task: typing.Any = None
        self.running: dict[str, float] = {}

    def __enter__(self) -> Reporter:
        if self.tty:
            from rich.progress import TextColumn

            from deblurtool.ui import progress

            self.progress = progress("steps", extra=[TextColumn("{task.fields[losses]}")])
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def start_epoch(self, epoch: int, done: int, total: int) -> None:
        self.running = {}
        if self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            desc = f"epoch {epoch + 1}/{self.trainer.cfg.epochs}"
            self.task = self.progress.add_task(desc, total=total, completed=done, losses="")

    def step(self, logs: dict[str, float]) -> None:
        if not self.enabled:
            return
        for k, v in logs.items():  # exponential running means: readable, and cheap
            self.running[k] = v if k not in self.running else 0.9 * self.running[k] + 0.1 * v
        shown = " ".join(
            f"{k} {self.running[k]:.4g}" for k in ("g_loss", "d_loss", "w_dist") if k in self.running
        )
        t = self.trainer
        if self.progress is not None:
            self.progress.update(self.task, advance=1, losses=shown)
        elif t.global_step % t.cfg.log_every == 0:
            print(
                f"epoch {t.epoch + 1} step {t.global_step} ({t.step_in_epoch}/{t.steps_per_epoch}): {shown}",
                flush=True,
            )
