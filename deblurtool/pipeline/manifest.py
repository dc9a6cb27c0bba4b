"""The record of finished outputs that makes ``deblurtool folder`` resumable."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from deblurtool.config import EncodeConfig

MANIFEST_NAME = ".deblurtool-done.jsonl"


class Manifest:
    """Append-only record (JSON lines) of finished outputs: which input (size, mtime) and settings made each.

    Appending one line per image keeps the cost flat for any folder size; a line cut short by a crash is
    ignored on reading, and the last line for a path wins.
    """

    def __init__(self, dst: Path) -> None:
        self.path = dst / MANIFEST_NAME
        self.records: dict[str, dict[str, object]] = {}
        with contextlib.suppress(FileNotFoundError):
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if isinstance(rec, dict) and isinstance(rec.get("path"), str):
                        self.records[rec["path"]] = rec

    @staticmethod
    def _entry(rel: Path, st: os.stat_result, signature: str) -> dict[str, object]:
        return {
            "path": rel.as_posix(),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "signature": signature,
        }

    def knows(self, rel: Path) -> bool:
        return rel.as_posix() in self.records

    def matches(self, rel: Path, st: os.stat_result, signature: str) -> bool:
        return self.records.get(rel.as_posix()) == self._entry(rel, st, signature)

    def skip(self, rel: Path, st: os.stat_result, signature: str, out: Path, overwrite: bool) -> str | None:
        """Why the input ``rel`` (now ``st``) need not be done again: ``skipped_done`` (its output ``out`` is
        recorded as made from it with ``signature``), ``skipped_existing`` (an output this folder has no
        record of is in the way, and not ``overwrite``), or None."""
        if not out.exists() or overwrite:
            return None
        if self.matches(rel, st, signature):
            return "skipped_done"
        return None if self.knows(rel) else "skipped_existing"

    def add(self, rel: Path, st: os.stat_result, signature: str) -> None:
        entry = self._entry(rel, st, signature)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        self.records[rel.as_posix()] = entry


def video_signature(signature: str, encode: EncodeConfig) -> str:
    """A video's record names the encoder settings besides the model's: other settings make another file."""
    parts = (encode.codec, encode.crf, encode.pix_fmt)
    return f"{signature};encode=" + "/".join("auto" if p is None else str(p) for p in parts)
