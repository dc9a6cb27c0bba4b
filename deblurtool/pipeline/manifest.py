"""The record of finished outputs that makes ``deblurtool folder`` resumable."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from deblurtool.config import EncodeConfig

MANIFEST_NAME = ".deblurtool-done.jsonl"


# The first bytes of a whole output, by suffix: what can be checked of an output recorded by a manifest line
# of an earlier version, which did not note the output's size and time. (offset, bytes) pairs, any may match.
_SIGNATURES: dict[str, tuple[tuple[int, bytes], ...]] = {
    ".png": ((0, b"\x89PNG\r\n\x1a\n"),),
    ".jpg": ((0, b"\xff\xd8\xff"),),
    ".jpeg": ((0, b"\xff\xd8\xff"),),
    ".bmp": ((0, b"BM"),),
    ".tif": ((0, b"II*\x00"), (0, b"MM\x00*"), (0, b"II+\x00"), (0, b"MM\x00+")),
    ".tiff": ((0, b"II*\x00"), (0, b"MM\x00*"), (0, b"II+\x00"), (0, b"MM\x00+")),
    ".webp": ((8, b"WEBP"),),
    ".mp4": ((4, b"ftyp"),),
    ".m4v": ((4, b"ftyp"),),
    ".mov": ((4, b"ftyp"), (4, b"wide"), (4, b"moov"), (4, b"mdat"), (4, b"free")),
    ".mkv": ((0, b"\x1a\x45\xdf\xa3"),),
    ".webm": ((0, b"\x1a\x45\xdf\xa3"),),
    ".avi": ((8, b"AVI "),),
    ".ts": ((0, b"\x47"), (4, b"\x47")),
    ".mts": ((0, b"\x47"), (4, b"\x47")),
    ".m2ts": ((0, b"\x47"), (4, b"\x47")),
}


def _looks_whole(out: Path, st: os.stat_result) -> bool:
    """What can be told of an output without a record of it: not empty, and starting as its format does."""
    if st.st_size == 0:
        return False
    signatures = _SIGNATURES.get(out.suffix.lower())
    if not signatures:
        return True
    try:
        with out.open("rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return any(head[at : at + len(magic)] == magic for at, magic in signatures)


class Manifest:
    """Append-only record (JSON lines) of finished outputs: which input (size, mtime) and settings made each,
    and the output as it was written (size, mtime).

    Appending one line per image keeps the cost flat for any folder size; a line cut short by a crash is
    ignored on reading, and the last line for a path wins. An output whose size or modification time is no
    longer the recorded one (overwritten, truncated, replaced) is not taken as done: it is made again. Lines
    of earlier versions, without the output's state, still count, if the output is not empty and starts as
    its format does.
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

    def matches(self, rel: Path, st: os.stat_result, signature: str, out: Path | None = None) -> bool:
        """Whether ``rel`` (now ``st``) is recorded as made with ``signature`` into ``out`` (default: the same
        relative path in the output folder), and that output is still as it was written."""
        rec = self.records.get(rel.as_posix())
        want = self._entry(rel, st, signature)
        if rec is None or any(rec.get(k) != v for k, v in want.items()):
            return False
        out = self.path.parent / rel if out is None else out
        try:
            now = out.stat()
        except OSError:
            return False
        if "out_size" not in rec:  # written by an earlier version
            return _looks_whole(out, now)
        return rec.get("out_size") == now.st_size and rec.get("out_mtime_ns") == now.st_mtime_ns

    def skip(self, rel: Path, st: os.stat_result, signature: str, out: Path, overwrite: bool) -> str | None:
        """Why the input ``rel`` (now ``st``) need not be done again: ``skipped_done`` (its output ``out`` is
        recorded as made from it with ``signature``, and is as it was written), ``skipped_existing`` (an
        output this folder has no record of is in the way, and not ``overwrite``), or None."""
        if not out.exists() or overwrite:
            return None
        if self.matches(rel, st, signature, out):
            return "skipped_done"
        return None if self.knows(rel) else "skipped_existing"

    def add(self, rel: Path, st: os.stat_result, signature: str, out: Path | None = None) -> None:
        """Record that input ``rel`` (``st``) was made with ``signature`` into ``out`` (default: the same
        relative path in the output folder), which is finished now: its size and time are noted."""
        entry = self._entry(rel, st, signature)
        out = self.path.parent / rel if out is None else out
        with contextlib.suppress(OSError):  # not there (a failed video kept nothing): never taken as done
            now = out.stat()
            entry["out_size"], entry["out_mtime_ns"] = now.st_size, now.st_mtime_ns
        if "out_size" not in entry:
            entry["out_size"] = None
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        self.records[rel.as_posix()] = entry


def video_signature(signature: str, encode: EncodeConfig) -> str:
    """A video's record names the encoder settings besides the model's: other settings make another file."""
    parts = (encode.codec, encode.crf, encode.pix_fmt)
    return f"{signature};encode=" + "/".join("auto" if p is None else str(p) for p in parts)
