"""One error type for everything a user can get wrong, mapped to exit codes by the CLI.

Exit codes (documented in ``--help`` and the README):
0 all done; 1 some inputs failed (the rest were done); 2 usage or unusable input; 130 interrupted.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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


def one_line(e: BaseException) -> str:
    """A one-line reason for ``e``: a DeblurError's message without its path, else ``Type: first line``."""
    if isinstance(e, DeblurError):
        return str(e).removeprefix(f"{e.path}: ") if e.path else str(e)
    return f"{type(e).__name__}: {e}".splitlines()[0]
