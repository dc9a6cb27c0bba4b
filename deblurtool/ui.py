"""The command line's output: its two consoles, its progress bars and the shapes of its lines.

Only commands (``deblurtool/commands/``) use this module. Library code never prints: it logs, or returns
notes and results that a command prints here. Results (summaries, tables) go to stdout; diagnostics (the
``model:`` line, notes, warnings, progress and errors) to stderr, so ``deblurtool ... > results`` keeps the
results clean.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def say(text: str) -> None:
    """A result line on stdout, as it is (no markup, never wrapped)."""
    out.print(text, markup=False, soft_wrap=True)


def tell(text: str) -> None:
    """A diagnostic line on stderr (``model: ...``, ``note: ...``, "timing ..."), as it is."""
    err.print(text, markup=False, soft_wrap=True)


def note(text: str, *, console: Console = err) -> None:
    """``note: text`` (the word in yellow)."""
    console.print(f"[yellow]note:[/] {escape(text)}", soft_wrap=True)


def error(message: str, *, label: str = "error") -> None:
    """``error: message`` on stderr: the one line a failed command ends with (``internal error:`` for a
    bug)."""
    err.print(f"[bold red]{label}:[/] {escape(message)}", soft_wrap=True)


def interrupted(word: str = "interrupted") -> None:
    err.print(f"[yellow]{word}[/]")


def print_table(table: Table) -> None:
    """A table on stdout. Piped to a file or log, rich assumes 80 columns and would truncate the numbers: it
    gets 120 there."""
    if not out.is_terminal:
        out.width = max(out.width, 120)
    out.print(table)


# -- progress -----------------------------------------------------------------------------------------------


class RateColumn(ProgressColumn):
    """Items per second (frames, images, pairs), from rich's moving speed estimate."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} {self.unit}" if speed else f"-- {self.unit}", style="progress.data.speed")


def progress(
    unit: str, *, enabled: bool = True, transient: bool = False, extra: Sequence[ProgressColumn] = ()
) -> Progress:
    """The tool's one progress bar (on stderr): label, bar, done/total, rate in ``unit``, elapsed, ETA, then
    any ``extra`` columns (the trainer's running losses)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        *extra,
        console=err,
        disable=not enabled,
        transient=transient,
    )


class ProgressBar:
    """A :class:`deblurtool.pipeline.Progress` for the CLI: a bar of items in ``unit`` (hidden when not
    ``enabled``), notes as they come and ``failed: PATH: reason`` lines. When stderr is not a terminal
    (``nohup``, CI logs, a pipe) a bar cannot redraw, so a progress line is written every ``log_every``
    seconds instead: done/total, rate, elapsed time and ETA. Also a ``deblurtool.scale.JobProgress``
    (:meth:`job`)."""

    def __init__(self, unit: str, *, enabled: bool = True, log_every: float = 30.0) -> None:
        self.unit, self.enabled, self.log_every = unit, enabled, log_every

    def note(self, text: str) -> None:
        tell(text)

    def failed(self, path: Path, reason: str) -> None:
        err.print(f"[red]failed:[/] {escape(f'{path}: {reason}')}", soft_wrap=True)

    @contextlib.contextmanager
    def items(self, label: str, total: int | None) -> Iterator[Callable[[], None]]:
        if self.enabled and not err.is_terminal:
            yield _LogLines(label, total, self.unit, self.log_every).advance
            return
        with progress(self.unit, enabled=self.enabled) as bar:
            task = bar.add_task(label, total=total)
            yield lambda: bar.advance(task)
            bar.update(task, total=bar.tasks[0].completed)  # an estimated total becomes the true count

    @contextlib.contextmanager
    def job(self, label: str, total: int) -> Iterator[Callable[[int, int, str], None]]:
        """Around a job that learns its progress as counts (a Ray job: frames done by all its workers):
        yields ``update(done, total, status)``, ``status`` a few words shown after the ETA ("2 worker(s)")."""
        if self.enabled and not err.is_terminal:
            yield _LogLines(label, total, self.unit, self.log_every).update
            return
        status = TextColumn("{task.fields[status]}")
        with progress(self.unit, enabled=self.enabled, extra=[status]) as bar:
            task = bar.add_task(label, total=total, status="")
            yield lambda done, total, status: bar.update(task, completed=done, total=total, status=status)


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class _LogLines:
    """Progress as plain lines on stderr, at most one every ``every`` seconds (for logs)."""

    def __init__(self, label: str, total: int | None, unit: str, every: float) -> None:
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.done = 0
        self.started = self.last = time.monotonic()

    def advance(self) -> None:
        self.update(self.done + 1, self.total)

    def update(self, done: int, total: int | None, status: str = "") -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.label}: {self.done}/{self.total}" if self.total else f"{self.label}: {self.done}"]
        parts.append(f"{rate:.2f} {self.unit}")
        parts.append(f"elapsed {_clock(elapsed)}")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {_clock((self.total - self.done) / rate)}")
        tell(", ".join([*parts, status] if status else parts))
