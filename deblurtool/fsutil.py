"""Small file-system helpers shared by the writers of finished files."""

from __future__ import annotations

import os
from pathlib import Path


def new_file_mode() -> int:
    """The permission bits an ordinary new file gets here (0o666 less the umask).

    ``tempfile.mkstemp`` creates its files 0o600 for safety; a finished output renamed from one would stay
    readable by its owner only, unlike every other file the user makes, so writers apply this before renaming.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def publish(tmp: Path | str, final: Path | str) -> None:
    """Give a complete temporary file ordinary permissions and rename it to its final name (atomic)."""
    os.chmod(tmp, new_file_mode())
    os.replace(tmp, final)
