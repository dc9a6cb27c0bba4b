"""The compiled-model cache: converted, quantised and compiled models kept on disk so only the first run of a
frame size pays for them.

Where: ``$DEBLURTOOL_CACHE`` if set, else ``$XDG_CACHE_HOME/deblurtool``, else ``~/.cache/deblurtool``. Clear
it with ``deblurtool cache clear``: everything in it is rebuilt on demand.

An entry is one file named ``<kind>-<32 hex>.dbc`` after the sha256 of its key (the weights' sha256, engine,
precision, input shape, the engine's version, this CPU): a magic line, a JSON header naming the key and each
part's size and sha256, then the parts. It is written beside its final name and renamed
(``fsutil.write_bytes``), so two processes building the same entry never leave a mixed file: the last rename
wins, both whole. On reading, an entry whose header, key or any part's checksum does not match is deleted and
rebuilt, never trusted; a cache folder that cannot be written is a warning, not a failure (the model is built
again next time).

The folder is deblurtool's only where it says so: creating it writes a marker, ``CACHEDIR.TAG`` (the Cache
Directory Tagging format, which backup tools skip), naming deblurtool. Only such a folder, or one that holds
nothing but entries of this layout (a cache of a version before the marker), is written to, pruned or
cleared, and then only its entries and their unfinished temporary files are ever deleted. A folder that also
holds anything else (``$DEBLURTOOL_CACHE`` pointed at a folder of photos) is left untouched: nothing is
cached there, and ``deblurtool cache clear`` refuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deblurtool.errors import DeblurError
from deblurtool.fsutil import is_temp_of, remove_stale_temps, write_bytes

ENV_CACHE = "DEBLURTOOL_CACHE"
MAGIC = b"deblurtool-cache 1\n"
SUFFIX = ".dbc"
MARKER = "CACHEDIR.TAG"
MARKER_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"  # the Cache Directory Tagging format's
MARKER_TEXT = (
    f"{MARKER_SIGNATURE}\n"
    "# This file is a cache directory tag created by deblurtool.\n"
    "# deblurtool keeps converted and compiled models here; `deblurtool cache clear` deletes them (and only\n"
    "# them). For information about cache directory tags see https://bford.info/cachedir/\n"
)
ENTRY_NAME = re.compile(rf"(?P<kind>[a-z0-9]+)-[0-9a-f]{{32}}{re.escape(SUFFIX)}")
_TEMP_OF_OURS = re.compile(
    rf"\.(?P<final>[a-z0-9]+-[0-9a-f]{{32}}{re.escape(SUFFIX)}|{re.escape(MARKER)})\..*"
)

Warn = Callable[[str], None]


def cache_dir() -> Path:
    """The user's cache folder for deblurtool (see the module docstring); not created here."""
    env = os.environ.get(ENV_CACHE, "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "deblurtool"


def entry_path(kind: str, key: Mapping[str, object]) -> Path:
    """Where the entry of ``key`` lives: ``<cache>/<kind>-<sha256 of the key, 32 hex>.dbc``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / f"{kind}-{digest}{SUFFIX}"


def _parse(data: bytes, key: Mapping[str, object]) -> dict[str, bytes]:
    """The parts of an entry's bytes; ValueError says what does not match."""
    if not data.startswith(MAGIC):
        raise ValueError("not a deblurtool cache file")
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        raise ValueError("header cut short")
    header = json.loads(data[len(MAGIC) : end])
    if header.get("key") != json.loads(json.dumps(key, sort_keys=True)):
        raise ValueError("written for another key")
    parts: dict[str, bytes] = {}
    offset = end + 1
    for part in header["parts"]:
        blob = data[offset : offset + int(part["size"])]
        offset += int(part["size"])
        if len(blob) != int(part["size"]) or hashlib.sha256(blob).hexdigest() != part["sha256"]:
            raise ValueError(f"part {part['name']!r} fails its checksum")
        parts[str(part["name"])] = blob
    if offset != len(data):
        raise ValueError("trailing bytes")
    return parts


def read_entry(path: Path, key: Mapping[str, object], warn: Warn) -> dict[str, bytes] | None:
    """The parts stored at ``path`` for ``key``; None if there is no entry, or if it is unreadable or corrupt
    (then it is deleted and ``warn`` hears why: the caller rebuilds it)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        warn(f"cache entry {path} is unreadable ({e.strerror or e}); rebuilding it")
        return None
    try:
        return _parse(data, key)
    except (ValueError, KeyError, TypeError) as e:
        if not is_ours(path.parent):
            warn(f"{path} is not a deblurtool cache entry ({e}); left alone, the model is built again")
            return None
        warn(f"cache entry {path} is corrupt ({e}); deleted, rebuilding it")
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def write_entry(path: Path, key: Mapping[str, object], parts: Mapping[str, bytes], warn: Warn) -> None:
    """Store ``parts`` for ``key`` at ``path`` atomically; a failure is a warning (the cache is optional)."""
    header = {
        "key": key,
        "parts": [
            {"name": name, "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
            for name, blob in parts.items()
        ],
    }
    data = b"".join([MAGIC, json.dumps(header, sort_keys=True).encode(), b"\n", *parts.values()])
    try:
        if not _claim(path.parent, warn):
            return
        write_bytes(path, data)
    except (OSError, DeblurError) as e:
        warn(f"could not write cache entry {path} ({e}); the model is built again next run")


# -- what the folder holds: ours, or someone else's ----------------------------------------------------------


def _has_marker(folder: Path) -> bool:
    """Whether ``folder`` holds deblurtool's marker (a regular file with the tag's signature naming us)."""
    marker = folder / MARKER
    try:
        if not marker.is_file() or marker.is_symlink():
            return False
        text = marker.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return False
    return text.startswith(MARKER_SIGNATURE) and "created by deblurtool" in text


def _is_entry_file(path: Path) -> bool:
    """An entry of this layout by its content too (for a folder without the marker)."""
    try:
        with path.open("rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


@dataclass
class Contents:
    """What a cache folder holds, sorted by whose it is. ``marked``: it holds deblurtool's marker."""

    folder: Path
    exists: bool = False
    marked: bool = False
    entries: list[Path] = field(default_factory=list)
    temps: list[Path] = field(default_factory=list)  # unfinished entries (their writer may still run)
    foreign: list[Path] = field(default_factory=list)  # anything deblurtool did not write

    @property
    def ours(self) -> bool:
        """deblurtool may write, prune and clear here: marked, or holding only entries (a cache written before
        the marker existed); never where anything else is."""
        return self.exists and not self.foreign and (self.marked or bool(self.entries))

    def size(self) -> int:
        total = 0
        for path in self.entries:
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total


def contents(folder: Path | None = None) -> Contents:
    """Sort what ``folder`` (default: :func:`cache_dir`) holds; links and subfolders are never ours."""
    folder = cache_dir() if folder is None else folder
    found = Contents(folder)
    try:
        items = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return found
    except NotADirectoryError:
        found.exists, found.foreign = True, [folder]
        return found
    found.exists = True
    found.marked = _has_marker(folder)
    for item in items:
        path = Path(item.path)
        try:
            regular = item.is_file(follow_symlinks=False)
        except OSError:
            regular = False
        temp = _TEMP_OF_OURS.fullmatch(item.name)
        if not regular:
            found.foreign.append(path)
        elif item.name == MARKER and found.marked:
            continue
        elif ENTRY_NAME.fullmatch(item.name) and (found.marked or _is_entry_file(path)):
            found.entries.append(path)
        elif temp and is_temp_of(path, temp["final"]):
            found.temps.append(path)
        else:
            found.foreign.append(path)
    return found


def is_ours(folder: Path) -> bool:
    """Whether files of the entry layout in ``folder`` are deblurtool's to delete (a corrupt one, pruning):
    the folder holds the marker, or nothing but such entries (see :class:`Contents`)."""
    return _has_marker(folder) or contents(folder).ours


def _foreign_summary(found: Contents) -> str:
    first, more = found.foreign[0], len(found.foreign) - 1
    return f"{first.name!r}" + (f" and {more} more file(s) or folder(s)" if more else "")


_REFUSED: set[Path] = set()


def _claim(folder: Path, warn: Warn) -> bool:
    """Make ``folder`` deblurtool's cache before an entry is written there: create it with the marker, or
    mark an empty folder or one holding only entries; False (with a warning) for a folder holding anything
    else, which is left as it is."""
    if _has_marker(folder):
        return True
    found = contents(folder)
    if found.foreign:
        if folder in _REFUSED:  # said once per process
            return False
        _REFUSED.add(folder)
        warn(
            f"{folder} is not a deblurtool cache folder: it holds {_foreign_summary(found)} that deblurtool "
            f"did not write, so nothing is cached there and the model is built again next run (point "
            f"${ENV_CACHE} at a folder of its own)"
        )
        return False
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes(folder / MARKER, MARKER_TEXT.encode())
    return True


def prune(kind: str, keep: int) -> int:
    """Delete all but the ``keep`` most recently used entries of ``kind`` (reading one touches it), in
    deblurtool's cache only; return how many went."""

    def used(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # another process pruned it first
            return 0.0

    found = contents()
    if not (found.marked or found.ours):
        return 0
    mine = [p for p in found.entries if (m := ENTRY_NAME.fullmatch(p.name)) and m["kind"] == kind]
    removed = 0
    for path in sorted(mine, key=used, reverse=True)[keep:]:
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


@dataclass(frozen=True)
class Cleared:
    """What :func:`clear_cache` removed: entries per kind, their bytes, unfinished files of writers that are
    gone; ``busy`` unfinished files another process is still writing (left)."""

    folder: Path
    kinds: dict[str, int]
    size: int
    stale: int
    busy: int

    @property
    def entries(self) -> int:
        return sum(self.kinds.values())


class NotACache(DeblurError):
    """The cache folder holds files deblurtool did not write: nothing is deleted there."""


def clear_cache(folder: Path | None = None) -> Cleared:
    """Delete the entries of deblurtool's cache folder (default :func:`cache_dir`) and the unfinished ones of
    writers that are gone; the folder and its marker stay. A folder holding anything deblurtool did not write
    raises :class:`NotACache` and nothing in it is deleted."""
    found = contents(folder)
    if found.foreign == [found.folder]:
        raise NotACache("not a folder, so not a deblurtool cache: nothing was removed", found.folder)
    if found.foreign:
        raise NotACache(
            f"not a deblurtool cache folder: it holds {_foreign_summary(found)} that deblurtool did not "
            f"write, so nothing was removed (point ${ENV_CACHE} at a folder of its own)",
            found.folder,
        )
    kinds: dict[str, int] = {}
    size = 0
    for path in found.entries:
        try:
            length = path.stat().st_size
            path.unlink()
        except FileNotFoundError:  # another process removed it first
            continue
        kind = ENTRY_NAME.fullmatch(path.name)
        name = kind["kind"] if kind else "?"
        kinds[name] = kinds.get(name, 0) + 1
        size += length
    finals = {m["final"] for p in found.temps if (m := _TEMP_OF_OURS.fullmatch(p.name))}
    stale = sum(remove_stale_temps(found.folder / name) for name in sorted(finals))
    return Cleared(found.folder, kinds, size, stale, len(found.temps) - stale)
