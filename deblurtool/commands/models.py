"""``deblurtool models``: the shipped generators, their facts and which one runs by default."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from deblurtool import ui
from deblurtool.commands.common import handle_errors

Json = Annotated[
    bool, typer.Option("--json", help="Print the list as JSON (for scripts) instead of a table.")
]

# A model card's headline for one file: a line ``headline <filename>: <text>``, e.g. beside its sha256 line.
_HEADLINE = re.compile(r"^\s*headline (\S+?):\s+(\S.*?)\s*$")


def card_headlines(card: Path) -> dict[str, str]:
    """``{filename: headline}`` from the card's ``headline <filename>: <text>`` lines (none: empty)."""
    try:
        text = card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    return {m[1]: m[2] for line in text.splitlines() if (m := _HEADLINE.match(line))}


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M"


@handle_errors
def models(json_out: Json = False) -> None:
    """List the shipped generators: name, architecture, parameters, file checksum and the model card's
    headline figures, and which one runs by default.

    Pick one with --model NAME in `video` and `folder` (a file of your own with --weights FILE
    instead, not both). The full card with every figure is weights/README.md of the installation.

    Examples:

      deblurtool models

      deblurtool models --json
    """
    from deblurtool.models.weights import card_path, shipped_models

    shipped = shipped_models()
    headlines = card_headlines(card_path())
    rows: list[dict[str, Any]] = [
        {
            "name": m.name,
            "arch": m.arch,
            "parameters": m.parameters,
            "sha256": m.sha256,
            "path": str(m.path),
            "default": m.default,
            "headline": headlines.get(m.path.name),
        }
        for m in shipped
    ]
    if json_out:
        ui.say(json.dumps(rows, indent=2))
        return
    if not rows:
        ui.say(f"no shipped models in this installation ({card_path().parent}); use --weights FILE")
        return
    from rich.table import Table

    default = next((r["name"] for r in rows if r["default"]), None)
    caption = f"default: {default} (runs when neither --model nor --weights is given)" if default else None
    table = Table(title="shipped models", caption=caption)
    for column in (
        "name",
        "architecture",
        "parameters",
        "sha256",
        "headline (see weights/README.md)",
        "default",
    ):
        table.add_column(column, justify="right" if column == "parameters" else "left")
    for r in rows:
        table.add_row(
            r["name"],
            r["arch"],
            _millions(r["parameters"]),
            r["sha256"][:12],
            r["headline"] or "-",
            "yes" if r["default"] else "",
        )
    ui.print_table(table)
