"""Temporary files for writers of finished files: created beside the final name, renamed when complete."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def create_temp(final: Path) -> tuple[int, Path]:
    """Open a new hidden temporary file beside ``final`` (O_EXCL, a random name): ``(fd, path)``.

    Unlike ``tempfile.mkstemp`` (always 0o600) the file gets the mode any new file gets here (0o666 less the
    umask, applied by the kernel), so the finished output renamed from it is as readable as the user's other
    files; nothing touches the process-wide umask, which other threads may be creating files under.
    """
    while True:
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
