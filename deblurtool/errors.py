"""One error type for everything a user can get wrong, mapped to exit codes by the CLI.

Exit codes (documented in ``--help`` and the README): 0 all done; 1 some inputs failed (the rest were done);
2 usage or unusable input (nothing was done); 70 internal error (a bug: an exception nobody foresaw, shown
as one ``internal error:`` line, the traceback with ``--debug``); 130 interrupted (Ctrl-C, SIGINT); 143
terminated (SIGTERM). A script can tell a bad input (2) from a bug (70).
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE of sysexits.h
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM

EXIT_CODES_HELP = (
    "Exit codes: 0 all done; 1 some inputs failed (the rest were done); 2 usage or unusable input (nothing "
    "done); 70 internal error (a bug; --debug shows the traceback); 130 interrupted (Ctrl-C); 143 terminated "
    "(SIGTERM)."
)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``docker stop``): stops like Ctrl-C (threads stop, temporary files go), exit 143."""


class DeblurError(Exception):
    """A failure we can explain in one line (no traceback shown unless ``--debug``).

    ``path`` names the file concerned when there is one; the message is the reason.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, path: object | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(message)

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{self.path}: {msg}" if self.path else msg


class InputError(DeblurError):
    """An input that is missing, unreadable or not what the command expects."""


class OutputError(DeblurError):
    """An output that may not be written (exists without --overwrite, equals the input, ...)."""


class WeightsError(DeblurError):
    """A weights file that is missing, altered or of the wrong format."""


class ModelOutputError(DeblurError):
    """The model returned something unusable for a frame (NaN or infinite values): the job stops, since every
    later frame would be as bad, and nothing is written under the final name."""


class PartialFailure(DeblurError):
    """Some inputs of a batch failed; the rest were done."""

    exit_code = EXIT_PARTIAL


class InternalError(DeblurError):
    """An exception nobody foresaw (a bug, or a library failing in a way we do not know), in one line that
    names the file concerned; the original is chained for ``--debug``."""

    exit_code = EXIT_INTERNAL


def disk_full(e: BaseException) -> bool:
    """``e`` says the disk (or the user's quota) is full: no other encoder or container would help."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def os_reason(e: OSError) -> str:
    """An OS error in words (``Permission denied``), not Python's repr; a full disk says so plainly."""
    if disk_full(e):
        return "the disk is full (no space left on the device)"
    return str(e.strerror or e)


def one_line(e: BaseException) -> str:
    """A one-line reason for ``e``: a DeblurError's message without its path, else ``Type: first line``."""
    if isinstance(e, DeblurError):
        return str(e).removeprefix(f"{e.path}: ") if e.path else str(e)
    return f"{type(e).__name__}: {e}".splitlines()[0]
