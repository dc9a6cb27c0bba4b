"""Scale-out on Ray: the same pieces as ``pipeline`` on many workers (see the README, "Scale-out").

driver: checks, scan and output lock as without Ray -> work units (an image | a video | a frame range of a
long video) -> Ray actors, one per GPU (the model loaded once per actor) -> each unit written
temp-then-rename by the same code as without Ray -> the driver joins a video's chunks by packet remux with
the source's timestamps through the same writer, which copies audio/subtitles once -> manifest (driver only).

Ray is an optional extra and is imported only here, only when ``--ray`` is given: :func:`require_ray`.
``units``, ``chunk`` and ``join`` do not import Ray at all (they are tested without a cluster).
"""

from __future__ import annotations

from types import ModuleType

from deblurtool.errors import DeblurError

INSTALL_HINT = '--ray needs Ray: pip install "deblurtool[ray]"'


def require_ray() -> ModuleType:
    """The ``ray`` module, or a one-line DeblurError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DeblurError(INSTALL_HINT) from None
    return ray
