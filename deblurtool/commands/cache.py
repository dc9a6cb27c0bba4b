"""``deblurtool cache [show|clear]``: where the compiled-model cache is, what it holds, and clearing it."""

from __future__ import annotations

from typing import Annotated

import typer

from deblurtool import ui
from deblurtool.commands.common import handle_errors
from deblurtool.errors import DeblurError


@handle_errors
def cache(
    action: Annotated[
        str, typer.Argument(metavar="ACTION", help="show (the default) or clear.", show_default=False)
    ] = "show",
) -> None:
    """Show or clear the cache of converted and compiled models.

    With the OpenVINO engine (the default on a CPU where it is installed) the model is converted from the
    weights file (int8, the CPU default, is also quantised on the calibration crops shipped with deblurtool)
    once per weights file, precision and OpenVINO version, and compiled once per frame or tile size, thread
    count and CPU; later runs load both in a fraction of a second. The cache lives in $DEBLURTOOL_CACHE if
    set, else $XDG_CACHE_HOME/deblurtool, else ~/.cache/deblurtool; only the 12 most recently used compiled
    sizes are kept. Anything in it may be deleted at any time (it is rebuilt when needed): `deblurtool cache
    clear` or rm -r of the folder. A damaged entry is found by its checksums, deleted and rebuilt.

    Examples:

      deblurtool cache

      deblurtool cache clear
    """
    from deblurtool.engines.cache import cache_dir, clear_cache

    if action == "show":
        folder = cache_dir()
        files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
        size = sum(p.stat().st_size for p in files)
        ui.say(f"cache: {folder} ({len(files)} file(s), {size / 2**20:.1f} MiB)")
    elif action == "clear":
        folder, count = clear_cache()
        ui.say(f"cache: removed {folder} ({count} file(s))")
    else:
        raise DeblurError(f"ACTION must be show or clear, got {action!r}")
