"""A dataset folder that appears complete or not at all: written in a hidden folder, moved in at the end.

``deblurtool synth`` writes thousands of files. Written in place, a run that fails half-way (a full disk, an
interrupt) would leave a partial dataset that looks like a finished one and blocks the rerun. Here the files
go to ``.OUT.synth-<pid>-<token>`` beside ``OUT``; only when every pair is written are they moved into
``OUT`` (one rename each, same file system), replacing the previous dataset's entries with ``overwrite``.
A failed run removes its hidden folder; one left by a killed process is removed by the next run once its
process is gone.

What counts as "the previous dataset" is what its ``manifest.json`` lists under ``entries`` (older
manifests: ``train/`` and ``test/``): a folder holding other files is never emptied.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from deblurtool.errors import OutputError

MANIFEST = "manifest.json"
_STAGING = re.compile(r"\.(?P<name>.+)\.synth-(?P<pid>\d+)-[0-9a-f]{8}")


def dataset_entries(out: Path) -> list[Path]:
    """The entries of the synth dataset already in ``out`` (manifest first), or [] if it holds none."""
    manifest = out / MANIFEST
    legacy = [out / d for d in ("train", "test") if (out / d).exists()]
    if not manifest.is_file():
        return legacy
    try:
        names = json.loads(manifest.read_text(encoding="utf-8")).get("entries", ["train", "test"])
    except (ValueError, AttributeError):
        names = ["train", "test"]
    safe = [n for n in names if isinstance(n, str) and n and "/" not in n and n not in (".", "..")]
    return [manifest, *[out / n for n in safe if (out / n).exists()]]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_staging(out: Path) -> None:
    if not out.parent.is_dir():
        return
    for p in out.parent.iterdir():
        m = _STAGING.fullmatch(p.name)
        if m and m["name"] == out.name and p.is_dir() and not _pid_alive(int(m["pid"])):
            shutil.rmtree(p, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_dataset(out: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield a hidden empty folder beside ``out`` to write a dataset into; on normal exit move its entries
    into ``out`` (the previous dataset's entries removed first; refused without ``overwrite``), on an
    exception remove it. The refusal comes before anything is written."""
    out = Path(out).absolute()
    if dataset_entries(out) and not overwrite:
        raise OutputError("already holds a dataset (use --overwrite to replace it)", out)
    _remove_stale_staging(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.synth-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
    except OSError as e:
        raise OutputError(f"cannot write here ({e.strerror})", out.parent) from None
    try:
        yield tmp
        new = sorted(tmp.iterdir(), key=lambda p: p.name == MANIFEST)  # the manifest last
        old = dataset_entries(out)
        clash = [p.name for p in new if (out / p.name).exists() and out / p.name not in old]
        if clash:
            raise OutputError(f"holds {', '.join(clash)} that the new dataset would replace; move them", out)
        if not out.exists():
            os.replace(tmp, out)
            return
        for path in old:
            _remove(path)
        for entry in new:
            os.replace(entry, out / entry.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
