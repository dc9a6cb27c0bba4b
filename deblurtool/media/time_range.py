"""A slice of a video: which part of it to deblur (``--start``, ``--duration``, ``--end``), and how its other
streams are cut to the same span.

Times are seconds from the video's first frame, written as seconds (``12``, ``12.5``) or as
``[HH:]MM:SS[.ms]`` (``1:02.5``, ``01:02:03.250``); they are kept as exact fractions, so a time such as
``0.1`` selects the frames a person expects (no float rounding at frame edges). A slice holds the frames whose
time ``t`` is ``start <= t < end``; the output starts at its first frame (time 0), and audio and subtitles are
cut to the same span and shifted by the same amount (see :class:`Cut`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from deblurtool.errors import DeblurError, InputError

_CLOCK = re.compile(r"(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+(?:\.\d*)?)")
_SECONDS = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_time(text: str, option: str = "--start") -> Fraction:
    """Seconds from ``text``: ``12``, ``12.5``, ``MM:SS[.ms]`` or ``HH:MM:SS[.ms]`` (minutes and seconds of a
    clock time below 60); anything else, a negative time included, is a :class:`DeblurError` naming
    ``option``."""
    value = text.strip()
    if _SECONDS.fullmatch(value):
        return Fraction(value)
    clock = _CLOCK.fullmatch(value)
    if clock:
        minutes, seconds = int(clock["m"]), Fraction(clock["s"])
        if (clock["h"] is not None and minutes >= 60) or seconds >= 60:
            raise DeblurError(f"{option} {text!r}: minutes and seconds of a clock time must be below 60")
        return int(clock["h"] or 0) * 3600 + minutes * 60 + seconds
    raise DeblurError(
        f"{option} {text!r} is not a time: give seconds (12.5) or [HH:]MM:SS[.ms] (1:02.5, 01:02:03.250)"
    )


def _shown(seconds: Fraction) -> str:
    return f"{float(seconds):.3f}".rstrip("0").rstrip(".") + " s"


@dataclass(frozen=True)
class TimeRange:
    """Frames with ``start <= t < end`` (seconds from the first frame; ``end`` None: to the video's end)."""

    start: Fraction = Fraction(0)
    end: Fraction | None = None

    def __post_init__(self) -> None:
        if self.start < 0:
            raise DeblurError(f"--start must not be negative, got {_shown(self.start)}")
        if self.end is not None and self.end <= self.start:
            raise DeblurError(
                f"the slice is empty: it ends ({_shown(self.end)}) at or before it starts "
                f"({_shown(self.start)})"
            )

    @classmethod
    def from_options(
        cls, start: str | None = None, duration: str | None = None, end: str | None = None
    ) -> TimeRange | None:
        """The range the command line asks for (None: the whole video). ``duration`` and ``end`` exclude
        each other; a zero duration is refused."""
        if start is None and duration is None and end is None:
            return None
        if duration is not None and end is not None:
            raise DeblurError("give --duration or --end, not both")
        first = parse_time(start, "--start") if start is not None else Fraction(0)
        if duration is not None:
            length = parse_time(duration, "--duration")
            if length == 0:
                raise DeblurError("--duration must be more than 0")
            return cls(first, first + length)
        return cls(first, parse_time(end, "--end") if end is not None else None)

    @property
    def duration(self) -> Fraction | None:
        return None if self.end is None else self.end - self.start

    def __str__(self) -> str:
        return f"{_shown(self.start)} to {'the end' if self.end is None else _shown(self.end)}"

    def check(self, length: Fraction | None, step: Fraction | None, path: Path) -> None:
        """Refuse a range outside a video of ``length`` seconds (from its header; None: unknown, nothing is
        refused here) whose frames are ``step`` seconds apart: a start at or past the last frame, an end more
        than a frame past the video's end. Meant to run before the model loads."""
        if length is None:
            return
        slack = step or Fraction(0)
        if self.start >= length:
            raise InputError(
                f"--start {_shown(self.start)} is at or past the video's end ({_shown(length)})", path
            )
        if self.end is not None and self.end > length + slack:
            raise InputError(
                f"--end {_shown(self.end)} (start plus duration) is past the video's end ({_shown(length)}); "
                "leave --end and --duration out to deblur to the end",
                path,
            )


@dataclass(frozen=True)
class Cut:
    """How a slice's other streams are cut, in seconds of the SOURCE's timeline: what lies before ``zero``
    (the slice's first frame) and from ``end`` on is left out, and everything kept is shifted back by
    ``zero`` so it stays in step with the frames (which start at 0). ``trim_head`` False: the slice starts at
    the video's first frame, so nothing before it is cut (audio that leads the first frame stays, as in a
    whole run)."""

    zero: Fraction
    end: Fraction | None
    trim_head: bool

    def keeps(self, start: Fraction, stop: Fraction) -> bool:
        """Whether anything of ``[start, stop)`` (a packet's span, source seconds) is inside the cut."""
        if self.end is not None and start >= self.end:
            return False
        return not (self.trim_head and stop <= self.zero)

    def on_boundaries(self, first: Fraction, step: Fraction, tolerance: Fraction = Fraction(1, 1000)) -> bool:
        """Whether packets starting at ``first`` and every ``step`` seconds have a boundary at each edge of
        the cut (within ``tolerance``), so whole packets can be copied without a gap or an overhang."""
        if step <= 0:
            return False
        edges = ([self.zero] if self.trim_head else []) + ([self.end] if self.end is not None else [])
        for edge in edges:
            ticks = (edge - first) / step
            if abs(ticks - round(ticks)) * step > tolerance:
                return False
        return True
