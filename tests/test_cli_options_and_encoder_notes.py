"""The command line's options: bad options, inputs and output names are refused before torch is even
imported, an overlap nobody asked for fits small tiles, ``--version``, readable usage lines, and notes for
encoder settings that lose something (10-bit written as 8-bit, a --crf the encoder has not)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IdentityModel, make_video, run_cli
from typer.testing import CliRunner

from deblurtool import __version__
from deblurtool.commands.common import tile_config
from deblurtool.config import EncodeConfig
from deblurtool.pipeline import run_video

runner = CliRunner()


@pytest.fixture(autouse=True)
def _tiny_model(tiny_default: Path) -> None:
    """Commands load the tiny identity generator as their default weights."""


_cli = run_cli


_REFUSE = """
import sys
from deblurtool.cli import app
try:
    app(sys.argv[1:], prog_name="deblurtool")
except SystemExit as e:
    print("exit", e.code, "torch" in sys.modules, flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", ["tile size", "not a video", "codec", "crf beyond the encoder", "pix fmt", "image output"]
)
def test_bad_options_and_inputs_are_refused_before_torch_is_imported(tmp_path: Path, case: str) -> None:
    video = make_video(tmp_path / "in.mp4", frames=1, audio=False).path
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n" * 20)
    args = {
        "tile size": ["video", video, tmp_path / "o.mp4", "--tile-size", "30"],
        "not a video": ["video", text, tmp_path / "o.mp4"],
        "codec": ["video", video, tmp_path / "o.mp4", "--codec", "nosuchcodec"],
        "crf beyond the encoder": ["video", video, tmp_path / "o.mp4", "--crf", "60"],
        "pix fmt": ["video", video, tmp_path / "o.mp4", "--pix-fmt", "rgba"],
        "image output": ["video", video, tmp_path / "o.png"],
    }[case]
    done = subprocess.run(
        [sys.executable, "-c", _REFUSE, *map(str, args)], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "exit 2 False", (done.stdout, done.stderr)
    assert done.stderr.startswith("error: ")


def test_overlap_not_given_shrinks_to_fit_small_tiles(tmp_path: Path) -> None:
    assert tile_config(64, None, None) == tile_config(64, 16, 4)
    assert tile_config(256, None, None) == tile_config(256, 32, 4)
    spec = make_video(tmp_path / "in.mp4", frames=2, audio=False)
    code, output = _cli("video", spec.path, tmp_path / "out.mp4", "--tile-size", "32", "--no-progress")
    assert code == 0, output
    assert "tile_size 32, tile_overlap 8" in output


def test_version_and_readable_usage() -> None:
    code, output = _cli("--version")
    assert code == 0 and output.strip() == f"deblurtool {__version__}"
    for command, usage in (("video", "SRC DST"), ("folder", "SRC DST"), ("synth", "SRC OUT")):
        code, output = _cli(command, "--help")
        (line,) = [line.strip() for line in output.splitlines() if "Usage:" in line]
        assert code == 0 and line == f"Usage: root {command} [OPTIONS] {usage}"  # root: CliRunner's name
        assert "<bool>" not in output
    assert "<bool>" not in _cli("--help")[1]


def test_ten_bit_input_written_as_eight_bit_says_so(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "deep.mkv", frames=2, audio=False, pix_fmt="yuv420p10le")
    summary = run_video(spec.path, tmp_path / "out.avi", IdentityModel(), EncodeConfig(), progress=False)
    assert summary.pix_fmt == "yuv420p"
    assert any(
        n.startswith("note: the input is 10-bit but mpeg4 writes yuv420p (8-bit)") for n in summary.notes
    )
    kept = run_video(spec.path, tmp_path / "out.mkv", IdentityModel(), EncodeConfig(), progress=False)
    assert kept.pix_fmt == "yuv420p10le" and not any("10-bit" in n for n in kept.notes)


def test_crf_the_encoder_has_not_is_noted(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=2, audio=False)
    code, output = _cli(
        "video", spec.path, tmp_path / "out.mkv", "--codec", "ffv1", "--crf", "10", "--no-progress"
    )
    assert code == 0, output
    assert "note: --crf 10 ignored: ffv1 has no constant-quality setting" in output
