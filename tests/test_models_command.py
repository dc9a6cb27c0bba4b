"""``deblurtool models``: the shipped generators as a table (stdout) or JSON, the default named; the card's
headline lines; ``--model NAME`` for an unknown name is one error line listing the known ones."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

from deblurtool.commands.models import card_headlines
from deblurtool.models.weights import DEFAULT_MODEL, card_path, file_sha256, shipped_models


def test_models_table_names_the_shipped_default() -> None:
    code, output = run_cli("models")
    assert code == 0, output
    default = next(m for m in shipped_models() if m.default)
    assert default.name == DEFAULT_MODEL
    row = next(line for line in output.splitlines() if f" {DEFAULT_MODEL} " in line)
    assert default.arch in row and default.sha256[:12] in row and "yes" in row
    assert f"{default.parameters / 1e6:.2f} M" in row
    assert f"default: {DEFAULT_MODEL}" in output


def test_models_json_for_scripts() -> None:
    code, output = run_cli("models", "--json")
    assert code == 0, output
    rows = json.loads(output)
    assert [r["name"] for r in rows if r["default"]] == [DEFAULT_MODEL]
    row = next(r for r in rows if r["default"])
    assert row["sha256"] == file_sha256(Path(row["path"]))  # the card's checksum is the file's
    assert row["parameters"] > 0 and row["arch"]
    assert set(row) == {"name", "arch", "parameters", "sha256", "path", "default", "headline"}


def test_card_headline_lines_are_read(tmp_path: Path) -> None:
    card = tmp_path / "README.md"
    card.write_text(
        "# card\n```\nsha256 " + "a" * 64 + "  deblurtool-x.safetensors\n"
        "headline deblurtool-x.safetensors: +0.70 dB on samples/gopro\n```\nheadline in prose: not one\n"
    )
    assert card_headlines(card) == {"deblurtool-x.safetensors": "+0.70 dB on samples/gopro"}
    assert card_headlines(tmp_path / "missing.md") == {}


def test_shipped_card_headlines_reach_the_listing() -> None:
    headlines = card_headlines(card_path())
    rows = json.loads(run_cli("models", "--json")[1])
    for row in rows:
        assert row["headline"] == headlines.get(Path(row["path"]).name)


def test_unknown_model_name_lists_the_known_ones(tmp_path: Path) -> None:
    code, output = run_cli("video", tmp_path / "in.mp4", tmp_path / "out.mp4", "--model", "no-such-model")
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, output
    assert "no-such-model" in lines[0] and DEFAULT_MODEL in lines[0] and "deblurtool models" in lines[0]
    assert not (tmp_path / "out.mp4").exists()
