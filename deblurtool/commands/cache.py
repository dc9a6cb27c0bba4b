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
    count and CPU; later runs load both instead of building them again. The cache lives in
    $DEBLURTOOL_CACHE if set, else $XDG_CACHE_HOME/deblurtool, else ~/.cache/deblurtool; only the 12 most
    recently used compiled sizes are kept. Anything in it is rebuilt when needed. A damaged entry is found by
    its checksums, deleted and rebuilt.

    `clear` deletes only what deblurtool wrote there: the folder's entries (files named
    KIND-<32 hex>.dbc) and unfinished ones left by stopped runs; the folder and its CACHEDIR.TAG marker
    stay. A folder that holds anything else (a $DEBLURTOOL_CACHE pointed at a folder of photos) is refused,
    exit code 2, and nothing in it is deleted; deblurtool never caches models in such a folder either.

    Examples:

      deblurtool cache

      deblurtool cache clear
    """
    from deblurtool.engines.cache import clear_cache, contents

    if action == "show":
        found = contents()
        if not found.exists:
            ui.say(f"cache: {found.folder} (not created yet: empty)")
        elif found.foreign:
            ui.say(
                f"cache: {found.folder} is not a deblurtool cache folder ({len(found.foreign)} file(s) or "
                "folder(s) deblurtool did not write): nothing is cached there"
            )
        else:
            unfinished = f", {len(found.temps)} unfinished" if found.temps else ""
            ui.say(
                f"cache: {found.folder} ({len(found.entries)} entries, {found.size() / 2**20:.1f} MiB"
                f"{unfinished})"
            )
    elif action == "clear":
        cleared = clear_cache()
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(cleared.kinds.items()))
        stale = f" and {cleared.stale} unfinished file(s) of stopped runs" if cleared.stale else ""
        if cleared.entries or cleared.stale:
            ui.say(
                f"cache: removed {cleared.entries} entries ({cleared.size / 2**20:.1f} MiB"
                f"{': ' + kinds if kinds else ''}){stale} from {cleared.folder}"
            )
        else:
            ui.say(f"cache: nothing to remove in {cleared.folder}")
        if cleared.busy:
            ui.note(f"{cleared.busy} entry(ies) being written by another deblurtool run were left")
    else:
        raise DeblurError(f"ACTION must be show or clear, got {action!r}")
