"""Finished files only: every output is written under a temporary name beside it and renamed when complete.

One temporary naming scheme for the whole tool: ``.NAME.<hash>.<token>.tmp<SUFFIX>`` in the final file's
folder (hidden; ``NAME`` the final name, cut short where the whole would pass the file system's limit on a
name, so any name the file system accepts can be written; ``hash`` 10 hex of the sha256 of the final name,
which ties the temporary file to it even when ``NAME`` is cut; a random ``token`` of 8 hex so threads and
processes never collide; the final suffix kept last, so FFmpeg and OpenCV pick the format from the name).
While it is being written the temporary file holds an exclusive ``flock``: the kernel drops it when the owner
exits, even on SIGKILL or a power cut, so :func:`remove_stale_temps` removes exactly the temporary files
whose owner is gone and never one that another running process is still writing (a pid alone would be
reused). Temporary files of earlier versions (``.NAME.<pid>[.<token>].tmp<SUFFIX>``) are recognised too.

Output locks (:func:`output_lock`) use the same kernel locks on a small ``.deblurtool.lock`` file, so that two
jobs never write into the same output: the second is refused with a line naming the first one's pid.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from deblurtool.errors import OutputError, one_line

if sys.platform != "win32":  # no flock on Windows: there stale temporary files are left alone
    import fcntl

NAME_MAX = 255  # the usual limit on one name, in bytes (ext4, XFS, Btrfs, APFS, NTFS in UTF-16 units)
_HASH_HEX = 10
_TOKEN_HEX = 8
_MAX_SUFFIX = 32  # a longer "suffix" is not a format's: not repeated in the temporary name

# This version's temporary names: ``.NAME.<hash>.<token>.tmp<SUFFIX>`` (NAME possibly cut short, or empty).
_TEMP_NAME = re.compile(
    r"\.(?:(?P<name>.*)\.)?"
    rf"(?P<hash>[0-9a-f]{{{_HASH_HEX}}})\.[0-9a-f]{{{_TOKEN_HEX}}}\.tmp(?P<suffix>(?:\.[^.]*)?)",
    re.DOTALL,
)
# Earlier versions': ``.NAME.<pid>.<token>.tmp<SUFFIX>``, and without the token (deblurtool 0.1).
_OLD_MIDDLE = r"\d+(?:\.[0-9a-f]{8})?"
_OLD_TEMP_NAME = re.compile(rf"\.(?P<name>.+?)\.{_OLD_MIDDLE}\.tmp(?P<suffix>(?:\.[^.]*)?)", re.DOTALL)


def name_max(folder: Path) -> int:
    """The longest file name (bytes) ``folder``'s file system takes: ``NAME_MAX`` where it cannot tell."""
    try:
        return min(int(os.pathconf(folder, "PC_NAME_MAX")), 4096)
    except (OSError, ValueError, AttributeError):  # no such folder (yet), no pathconf (Windows)
        return NAME_MAX


def _name_bytes(name: str) -> int:
    return len(os.fsencode(name))


def _cut(name: str, limit: int) -> str:
    """``name``'s longest beginning of at most ``limit`` bytes (whole characters)."""
    if _name_bytes(name) <= limit:
        return name
    if limit <= 0:
        return ""
    lo, hi = 0, len(name)
    while lo < hi:  # the longest prefix that fits
        mid = (lo + hi + 1) // 2
        if _name_bytes(name[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return name[:lo]


def name_hash(name: str) -> str:
    """A short hex digest of a file name: names a hidden file that belongs to it when the whole name cannot
    be repeated (:func:`temp_name`, :func:`lock_path`)."""
    return hashlib.sha256(os.fsencode(name)).hexdigest()[:_HASH_HEX]


def _temp_suffix(final_name: str) -> str:
    suffix = Path(final_name).suffix
    return suffix if _name_bytes(suffix) <= _MAX_SUFFIX else ""


def side_name(final: Path, tag: str) -> Path:
    """A hidden name beside ``final`` that ends in ``tag`` and belongs to it: ``.NAME<tag>`` where that fits
    the file system's limit on a name, else ``.<NAME cut short>.<hash of NAME><tag>`` (still unique to it)."""
    limit = name_max(final.parent)
    whole = f".{final.name}{tag}"
    if _name_bytes(whole) <= limit:
        return final.with_name(whole)
    tail = f".{name_hash(final.name)}{tag}"
    head = _cut(final.name, limit - 1 - _name_bytes(tail))
    return final.with_name(f".{head}{tail}")


def temp_name(final: Path) -> Path:
    """A new temporary name beside ``final`` (nothing is created); never longer than the file system allows
    (see the module docstring)."""
    tail = f".{name_hash(final.name)}.{secrets.token_hex(_TOKEN_HEX // 2)}.tmp{_temp_suffix(final.name)}"
    head = _cut(final.name, name_max(final.parent) - 1 - _name_bytes(tail))  # 1: the leading dot
    return final.with_name(f".{head}{tail}" if head else tail)


def is_temp_of(path: Path, final_name: str) -> bool:
    """Whether ``path`` is named as a temporary file of a final file called ``final_name`` (by this version
    or an earlier one)."""
    m = _TEMP_NAME.fullmatch(path.name)
    if m:
        return (
            m["hash"] == name_hash(final_name)
            and m["suffix"] == _temp_suffix(final_name)
            and final_name.startswith(m["name"] or "")
        )
    final = re.escape(f".{final_name}.")
    return (
        re.fullmatch(final + _OLD_MIDDLE + re.escape(f".tmp{Path(final_name).suffix}"), path.name) is not None
    )


def _looks_like_temp(name: str) -> bool:
    """Whether ``name`` is named as one of our temporary files (of whatever final name)."""
    if _TEMP_NAME.fullmatch(name):
        return True
    m = _OLD_TEMP_NAME.fullmatch(name)
    return m is not None and m["suffix"] == Path(m["name"]).suffix


# -- temporary files -----------------------------------------------------------------------------------------


def _lock(fd: int, *, wait: bool) -> bool | None:
    """Take the exclusive lock on ``fd``: True; False if another open file holds it (``wait`` False); None
    where the platform or file system has no such locks (Windows, some network mounts)."""
    if sys.platform == "win32":
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK, EOPNOTSUPP...: write unlocked; the clean-up then leaves such files alone
        return None
    return True


def _create_locked(final: Path) -> tuple[int, Path]:
    """Create and lock a new temporary file beside ``final``: ``(fd, path)``.

    The mode is the one any new file gets here (0o666 less the umask, applied by the kernel; not
    ``mkstemp``'s 0o600), so the finished file is as readable as the user's other files. A clean-up may
    remove the file between its creation and the lock: then the lock is on a name that is gone, and we
    start again.
    """
    while True:
        tmp = temp_name(final)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        _lock(fd, wait=True)
        try:
            same = os.stat(tmp).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, tmp
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a new, empty, locked temporary file beside ``path`` to write (by name: ``write_bytes``, ``open``,
    an encoder); on a normal exit it is renamed to ``path`` (replacing any file there), on an exception it is
    removed and the exception goes on. ``fsync`` flushes the data to disk before the rename.

    The folder must exist. Creating, syncing or renaming failing (no permission, disk full) raises
    :class:`OutputError` naming ``path``; errors of the body pass unchanged.
    """
    try:
        fd, tmp = _create_locked(path)
    except OSError as e:
        raise OutputError(f"cannot write ({e.strerror or e})", path) from None
    try:
        try:
            yield tmp
        except BaseException:
            _unlink_quietly(tmp)
            raise
        try:
            if fsync:
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            _unlink_quietly(tmp)
            raise OutputError(f"cannot write ({e.strerror or e})", path) from None
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """``path`` holds ``data`` afterwards, or (on any error) is as it was: :func:`atomic_write` of bytes."""
    with atomic_write(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


# -- stale temporary files -----------------------------------------------------------------------------------


def _owner_gone(path: Path) -> bool:
    """True if no process holds ``path``'s lock (so it is left over), False if one does or we cannot tell."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return _lock(fd, wait=False) is True
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _remove_if_stale(path: Path) -> bool:
    if _owner_gone(path):
        with contextlib.suppress(OSError):
            path.unlink()
            return True
    return False


def remove_stale_temps(final: Path) -> int:
    """Remove the temporary files of ``final`` left by writers that are gone (killed, crashed); return how
    many. Files another process is still writing are kept."""
    try:
        candidates = [p for p in final.parent.iterdir() if p.name.startswith(".")]
    except OSError:
        return 0
    return sum(_remove_if_stale(p) for p in candidates if is_temp_of(p, final.name))


def remove_stale_temps_under(folder: Path) -> int:
    """:func:`remove_stale_temps` for every file in ``folder`` and its subfolders (links not followed)."""
    removed = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.startswith(".") and _looks_like_temp(name):
                removed += _remove_if_stale(Path(root, name))
    return removed


# -- folders ------------------------------------------------------------------------------------------------


def make_folders(folder: Path, *, for_path: Path) -> list[Path]:
    """Create ``folder`` and its missing parents (users type ``out/sharp.mp4``); return the folders this call
    created, deepest first, so a failed job can remove them again (:func:`remove_empty_folders`). A parent
    that is a file, or one we may not write, is an :class:`OutputError` naming ``for_path``."""
    missing: list[Path] = []
    probe = folder
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the folder {folder} ({e.strerror or e})", for_path) from None
    return missing


def check_writable(folder: Path, *, for_path: Path | None = None) -> None:
    """Create and remove a temporary file in ``folder``: an :class:`OutputError` (naming ``for_path``, default
    ``folder``) now, before any work, rather than one failure per output after the model has run."""
    try:
        fd, tmp = _create_locked(folder / ".deblurtool-write-test")
    except OSError as e:
        raise OutputError(f"cannot write in this folder ({e.strerror or e})", for_path or folder) from None
    os.close(fd)
    _unlink_quietly(tmp)


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) where empty; one that is not (someone else's files) stays."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


# -- output locks ------------------------------------------------------------------------------------------

LOCK_NAME = ".deblurtool.lock"


def lock_path(target: Path) -> Path:
    """Where the lock of ``target`` lives: ``FOLDER/.deblurtool.lock`` for a folder, ``.NAME.deblurtool.lock``
    beside a file (a folder may hold several outputs, each written by its own job), with NAME cut short and
    hashed where the whole would be too long a name (:func:`side_name`)."""
    return target / LOCK_NAME if target.is_dir() else side_name(target, LOCK_NAME)


def _holder(path: Path) -> tuple[int, str] | None:
    """``(pid, host)`` written in a lock file, or None if it cannot be read."""
    try:
        pid, host = path.read_text(encoding="utf-8").split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill would terminate it there; count it as running
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _live_elsewhere(holder: tuple[int, str]) -> bool:
    """A lock file's holder is another process of this host that still runs (for file systems without
    ``flock``; a pid on another host cannot be checked, and a reused pid errs on the side of refusing)."""
    pid, host = holder
    return host == socket.gethostname() and pid != os.getpid() and _alive(pid)


def _refuse(target: Path, holder: tuple[int, str] | None) -> OutputError:
    who = "another deblurtool job" if holder is None else f"another deblurtool job (pid {holder[0]})"
    if holder is not None and holder[1] != socket.gethostname():
        who = f"another deblurtool job (pid {holder[0]} on {holder[1]})"
    return OutputError(f"{who} is writing to this output; wait for it to finish or choose another", target)


def _take_lock(path: Path, target: Path) -> int:
    """Open and lock ``path`` (created if missing): the locked fd. The kernel drops the lock when its holder
    exits however it ends, so a lock file left by a killed job is stale by itself. Where the file system has
    no ``flock``, a lock file naming a live process on this host counts as held."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise OutputError(f"cannot write here ({e.strerror or e})", target) from None
        got = _lock(fd, wait=False)
        if got is False:
            os.close(fd)
            raise _refuse(target, _holder(path))
        holder = _holder(path) if got is None else None
        if holder is not None and _live_elsewhere(holder):
            os.close(fd)
            error = _refuse(target, holder)
            raise OutputError(f"{one_line(error)} (if no such job runs, remove {path})", target)
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the holder removed the file between our open and our lock: start again
            return fd
        os.close(fd)


@contextlib.contextmanager
def output_lock(target: Path) -> Iterator[Path]:
    """Hold the lock of the output ``target`` (a folder, or a file whose folder exists) while the body runs;
    yield the lock file's path. A second job into the same output gets :class:`OutputError` ("another
    deblurtool job (pid N) is writing to this output") instead of doubling work or racing the first.
    The lock file holds ``pid host`` for people and for file systems without ``flock``; it is removed on
    exit. Within one process the lock is not re-entrant either."""
    path = lock_path(target)
    fd = _take_lock(path, target)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield path
    finally:
        _unlink_quietly(path)  # while still locked: a job waiting on this file then finds it gone
        os.close(fd)
