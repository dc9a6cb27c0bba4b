"""`deblurtool video` and `deblurtool folder` through typer's CliRunner, with a tiny real identity model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from conftest import decode_video, make_image, make_video, random_generator, save_image
from typer.testing import CliRunner

from deblurtool import inference
from deblurtool.commands import folder as folder_cmd
from deblurtool.commands import video as video_cmd
from deblurtool.config import RuntimeConfig, TileConfig
from deblurtool.inference import Deblurrer
from deblurtool.models.generator import GeneratorConfig
from deblurtool.models.weights import save_generator

runner = CliRunner()

FailOnCall = Callable[[int, BaseException], Callable[[], None]]


def _app() -> typer.Typer:
    # Only these two commands: the real cli.py also imports commands other helpers are writing.
    app = typer.Typer()
    app.command("video")(video_cmd.video)
    app.command("folder")(folder_cmd.folder)
    return app


@pytest.fixture(autouse=True)
def _tiny_model(tiny_default: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command loads the tiny identity generator and has a note to show."""
    load = inference.load_deblurrer

    def with_a_note(spec: Any) -> Deblurrer:
        model = load(spec)
        model.notes.append("a note from the model")
        return model

    monkeypatch.setattr(inference, "load_deblurrer", with_a_note)


def _run(*args: str | Path) -> Any:
    return runner.invoke(_app(), [str(a) for a in args])


def test_video_command_round_trip(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=6)
    dst = tmp_path / "out.mp4"
    result = _run(
        "video", spec.path, dst, "--no-progress", "--crf", "0", "--tile-size", "128", "--device", "cpu",
        "--precision", "fp32", "--engine", "torch",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "device cpu, engine torch, precision fp32, tile_size 128, tile_overlap 32, batch_size 4" in (
        result.output
    )
    assert "note: a note from the model" in result.output
    assert "6 frames" in result.output
    assert len(decode_video(dst)[1]) == 6


def test_video_command_tile_defaults_are_left_to_the_device(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=2, audio=False)
    result = _run("video", spec.path, tmp_path / "out.mkv", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "whole frames, batch_size 1 (device default)" in result.output


@pytest.mark.parametrize(
    ("error", "code"), [(RuntimeError("model exploded"), 70), (KeyboardInterrupt(), 130)]
)
def test_video_command_failure_leaves_nothing(
    tmp_path: Path, error: BaseException, code: int, fail_on_call: FailOnCall
) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=12)
    fail_on_call(5, error)
    dst = tmp_path / "out.mp4"
    result = _run("video", spec.path, dst, "--no-progress")
    assert result.exit_code == code, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    if code == 130:
        assert "interrupted" in result.output
    else:  # an exception nobody foresaw is a bug: its own exit code and words, one line
        assert f"internal error: {spec.path}: failed: RuntimeError: model exploded" in result.output


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
    assert "model:" not in result.output  # refused before loading the model
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
    assert not (src / "out").exists() and "model:" not in result.output


def test_folder_command_interrupt(tmp_path: Path, fail_on_call: FailOnCall) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        save_image(src / f"{i}.png", make_image("u8_rgb", seed=i))
    fail_on_call(2, KeyboardInterrupt())
    result = _run("folder", src, dst, "--no-progress")
    assert result.exit_code == 130
    assert sorted(p.name for p in dst.iterdir() if not p.name.startswith(".deblurtool")) == ["0.png"]


def test_folder_signature_changes_with_settings(tiny_weights: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.safetensors"
    save_generator(random_generator(GeneratorConfig(ngf=4, n_blocks=1)), other)

    def signature(tile: TileConfig | None, weights: Path = tiny_weights, precision: str = "fp32") -> str:
        return Deblurrer.from_weights(weights, tile, RuntimeConfig("cpu", precision)).signature

    a = signature(TileConfig())
    variants = {signature(TileConfig(tile_size=512)), signature(TileConfig(), other), signature(None),
                signature(TileConfig(), precision="bf16")}  # fmt: skip
    assert a == signature(TileConfig()) and a not in variants and len(variants) == 4
    assert "device=cpu" in a and "tile=256/32" in a and "precision=fp32" in a
