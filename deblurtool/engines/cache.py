"""The compiled-model cache: converted, quantised and compiled models kept on disk so only the first run of a
frame size pays for them.

Where: ``$DEBLURTOOL_CACHE`` if set, else ``$XDG_CACHE_HOME/deblurtool``, else ``~/.cache/deblurtool``. Clear
it with ``deblurtool cache clear`` (or ``rm -r`` of that folder): everything in it is rebuilt on demand.

An entry is one file named by the sha256 of its key (the weights' sha256, engine, precision, input shape,
the engine's version, this CPU): a magic line, a JSON header naming the key and each part's size and sha256,
then the parts. It is written beside its final name and renamed (``fsutil.write_bytes``), so two processes
building the same entry never leave a mixed file: the last rename wins, both whole. On reading, an entry
whose header, key or any part's checksum does not match is deleted and rebuilt, never trusted; a cache
folder that cannot be written is a warning, not a failure (the model is built again next time).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from deblurtool.errors import DeblurError
from deblurtool.fsutil import write_bytes

ENV_CACHE = "DEBLURTOOL_CACHE"
MAGIC = b"deblurtool-cache 1\n"
SUFFIX = ".dbc"

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
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, data)
    except (OSError, DeblurError) as e:
        warn(f"could not write cache entry {path} ({e}); the model is built again next run")


def clear_cache() -> tuple[Path, int]:
    """Delete the cache folder: ``(folder, files removed)``."""
    folder = cache_dir()
    if not folder.is_dir():
        return folder, 0
    count = sum(1 for p in folder.rglob("*") if p.is_file())
    shutil.rmtree(folder)
    return folder, count
