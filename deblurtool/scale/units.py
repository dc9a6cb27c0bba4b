"""The record of a finished chunk (the units themselves are planned in :mod:`deblurtool.pipeline.plan`).

A finished chunk is a video file (in the output's container, written by the same writer as ``video``) plus a
JSON record (written after it, so the record marks it complete) in the hidden folder beside the output
(:func:`~deblurtool.pipeline.plan.chunk_dir`). Their names carry a key of everything that changes the chunk,
so a re-run reuses exactly the chunks made the same way and ignores the others.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deblurtool.fsutil import write_bytes
from deblurtool.pipeline.plan import chunk_dir

# -- the record of a finished chunk --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkRecord:
    """A finished chunk: its ``pts`` (source time base, presentation order, one per encoded frame), the
    encoder's pixel format and its writer's notes (a --crf the encoder ignores, fewer bits than the input)."""

    pts: list[int]
    pix_fmt: str
    notes: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.pts)


def record_path(chunk_file: Path) -> Path:
    return chunk_file.with_suffix(".json")


def write_record(chunk_file: Path, record: ChunkRecord) -> None:
    """Write the record temp-then-rename, after the chunk file itself: its presence means "complete"."""
    write_bytes(record_path(chunk_file), json.dumps(asdict(record)).encode())


def read_record(chunk_file: Path) -> ChunkRecord | None:
    """The record of a finished chunk, or None when the chunk is missing, incomplete or unreadable."""
    try:
        data = json.loads(record_path(chunk_file).read_text(encoding="utf-8"))
        notes = [str(n) for n in data.get("notes", [])]
        record = ChunkRecord(pts=[int(p) for p in data["pts"]], pix_fmt=str(data["pix_fmt"]), notes=notes)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record.frames and not chunk_file.is_file():
        return None
    return record


def remove_chunks(out: Path) -> None:
    """Remove the chunk folder of ``out`` (after a join, or when the video fell back to one unit)."""
    folder = chunk_dir(out)
    if folder.is_dir():
        for item in folder.iterdir():
            with contextlib.suppress(OSError):
                item.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
