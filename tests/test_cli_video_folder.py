"""`deblurtool video` and `deblurtool folder` through typer's CliRunner, with a fake Deblurrer module."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import typer
from conftest import IdentityModel, decode_video, make_image, make_video, save_image
from typer.testing import CliRunner

from deblurtool.commands import folder as folder_cmd
from deblurtool.commands import video as video_cmd
from deblurtool.config import TileConfig

runner = CliRunner()


def _app() -> typer.Typer:
    # Only these two commands: the real cli.py also imports commands other helpers are writing.
    app = typer.Typer()
    app.command("video")(video_cmd.video)
    app.command("folder")(folder_cmd.folder)
    return app


class FakeDeblurrer(IdentityModel):
    """Stands in for deblurtool.inference.Deblurrer: records how it was built; ``fail_at`` makes call
    number ``fail_at`` raise ``error``."""

    built: ClassVar[list[dict[str, Any]]] = []
    fail_at: int | None = None
    error: BaseException = RuntimeError("boom")

    def __init__(self, tile: TileConfig | None) -> None:
        super().__init__()
        self.device, self.dtype, self.tile = "cpu", "torch.bfloat16", tile
        self.notes = ["a note from the model"]

    @classmethod
    def from_weights(cls, path: Path | None = None, tile: Any = None, runtime: Any = None) -> FakeDeblurrer:
        cls.built.append({"path": path, "tile": tile, "runtime": runtime})
        return cls(tile)

    def deblur_array(self, img: np.ndarray) -> np.ndarray:
        if self.fail_at is not None and self.calls + 1 >= self.fail_at:
            raise self.error
        return super().deblur_array(img)


@pytest.fixture(autouse=True)
def fake_inference(monkeypatch: pytest.MonkeyPatch) -> type[FakeDeblurrer]:
    module = types.ModuleType("deblurtool.inference")
    module.Deblurrer = FakeDeblurrer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "deblurtool.inference", module)
    monkeypatch.setattr(FakeDeblurrer, "built", [])
    monkeypatch.setattr(FakeDeblurrer, "fail_at", None)
    return FakeDeblurrer


def _run(*args: str | Path) -> Any:
    return runner.invoke(_app(), [str(a) for a in args])


def test_video_command_round_trip(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=6)
    dst = tmp_path / "out.mp4"
    result = _run(
        "video", spec.path, dst, "--no-progress", "--crf", "0", "--tile-size", "128", "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    assert "device cpu, precision bf16, tile_size 128, tile_overlap 32, batch_size 4" in result.output
    assert "note: a note from the model" in result.output
    assert "6 frames" in result.output
    built = FakeDeblurrer.built[0]
    assert built["tile"] == TileConfig(tile_size=128) and built["runtime"].device == "cpu"
    assert len(decode_video(dst)[1]) == 6


def test_video_command_tile_defaults_are_left_to_the_device(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=2, audio=False)
    result = _run("video", spec.path, tmp_path / "out.mkv", "--no-progress")
    assert result.exit_code == 0, result.output
    assert FakeDeblurrer.built[0]["tile"] is None and "tiles: device default" in result.output


@pytest.mark.parametrize(("error", "code"), [(RuntimeError("model exploded"), 2), (KeyboardInterrupt(), 130)])
def test_video_command_failure_leaves_nothing(tmp_path: Path, error: BaseException, code: int) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=12)
    FakeDeblurrer.fail_at, FakeDeblurrer.error = 5, error
    dst = tmp_path / "out.mp4"
    result = _run("video", spec.path, dst, "--no-progress")
    assert result.exit_code == code, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    if code == 130:
        assert "interrupted" in result.output
    else:
        assert "model exploded" in result.output


def test_video_command_damaged_and_unusable_inputs(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "full.mp4", frames=24, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(spec.path.read_bytes()[: int(spec.path.stat().st_size * 0.6)])
    result = _run("video", cut, tmp_path / "out.mp4", "--no-progress")
    assert result.exit_code == 1, result.output
    assert "damaged" in result.output and "could be decoded were deblurred" in result.output
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 50)
    result = _run("video", text, tmp_path / "out2.mp4", "--no-progress")
    assert result.exit_code == 2 and "notes.txt" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out2.mp4").exists()


def test_video_command_refusals(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=2, audio=False)
    result = _run("video", spec.path, spec.path, "--no-progress")
    assert result.exit_code == 2 and "is the input" in result.output
    (tmp_path / "out.mp4").write_bytes(b"keep")
    result = _run("video", spec.path, tmp_path / "out.mp4", "--no-progress")
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert FakeDeblurrer.built == []  # refused before loading the model
    result = _run("video", spec.path, tmp_path / "x.mp4", "--codec", "nope", "--no-progress")
    assert result.exit_code == 2 and "nope" in result.output
    result = _run("video", spec.path, tmp_path / "x.mp4", "--tile-size", "30", "--no-progress")
    assert result.exit_code == 2 and "multiple of 4" in result.output
    assert not (tmp_path / "x.mp4").exists()


def test_video_help_teaches() -> None:
    result = _run("video", "--help")
    assert result.exit_code == 0
    for text in (
        "Examples",
        "deblurtool video shaky.mp4 sharp.mp4",
        "--codec",
        "--crf",
        "--pix-fmt",
        "--tile-size",
    ):
        assert text in result.output


def test_help_paragraphs_are_reflowed_examples_kept() -> None:
    from deblurtool.cli import app, reflow

    doc = """Title.

    One paragraph
    written over
    lines.

    Examples:

      deblurtool video a.mp4 b.mp4
      deblurtool video c.mp4 d.mkv
    """
    assert reflow(doc) == (
        "Title.\n\nOne paragraph written over lines.\n\nExamples:\n\n"
        "  deblurtool video a.mp4 b.mp4\n  deblurtool video c.mp4 d.mkv"
    )
    wide = CliRunner().invoke(app, ["video", "--help"], terminal_width=240).output
    assert "colour tags and rotation are kept" in " ".join(wide.split())
    # no paragraph of the real help keeps the source's line breaks (a short ragged line mid-sentence)
    assert "colour tags and\n" not in wide


def test_folder_command(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    save_image(src / "a.png", make_image("u8_rgba"))
    save_image(src / "sub" / "b.tif", make_image("u16_gray"))
    broken = src / "sub" / "broken[draft].jpg"  # brackets: must not be taken for rich markup
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really")
    result = _run("folder", src, dst, "--no-progress")
    assert result.exit_code == 1, result.output
    assert "broken[draft].jpg" in result.output and "2 done, 0 skipped, 1 failed" in result.output
    assert (dst / "a.png").exists() and (dst / "sub" / "b.tif").exists()
    broken.unlink()
    result = _run("folder", src, dst, "--no-progress")
    assert result.exit_code == 0 and "0 done, 2 skipped, 0 failed" in result.output


def test_folder_command_refuses_output_inside_input(tmp_path: Path) -> None:
    src = tmp_path / "in"
    save_image(src / "a.png", make_image("u8_rgb"))
    result = _run("folder", src, src / "out", "--no-progress")
    assert result.exit_code == 2 and "inside the input folder" in result.output
    assert not (src / "out").exists() and FakeDeblurrer.built == []


def test_folder_command_interrupt(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        save_image(src / f"{i}.png", make_image("u8_rgb", seed=i))
    FakeDeblurrer.fail_at, FakeDeblurrer.error = 2, KeyboardInterrupt()
    result = _run("folder", src, dst, "--no-progress")
    assert result.exit_code == 130
    assert sorted(p.name for p in dst.iterdir() if not p.name.startswith(".deblurtool")) == ["0.png"]


def test_folder_signature_changes_with_settings() -> None:
    a = folder_cmd.settings_signature(FakeDeblurrer(TileConfig()), Path("w.safetensors"))
    b = folder_cmd.settings_signature(FakeDeblurrer(TileConfig(tile_size=512)), Path("w.safetensors"))
    c = folder_cmd.settings_signature(FakeDeblurrer(TileConfig()), Path("other.safetensors"))
    assert len({a, b, c}) == 3
