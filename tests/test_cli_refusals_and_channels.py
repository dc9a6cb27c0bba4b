"""The command line's promises: what would be refused is refused before the model loads; results on stdout,
diagnostics (model:/note: lines, engine and Ray chatter, progress, errors) on stderr; one model spec per
command; a full disk said as such; exit codes 0/1/2/70."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image, make_video, save_image
from typer.testing import CliRunner

from deblurtool import inference
from deblurtool.commands import common
from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError, InternalError
from deblurtool.fsutil import output_lock

OrdinaryUser = Callable[[], AbstractContextManager[None]]


@pytest.fixture(autouse=True)
def _tiny_model(tiny_default: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common.state, "debug", False)


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the model is a failure of the test: the refusal must come first."""

    def refuse(spec: Any) -> None:
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(inference, "load_deblurrer", refuse)


def _cli(*args: str | Path) -> Any:
    from deblurtool.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_video(tmp_path / "in.mp4", frames=2, audio=False).path


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--crf", "60"], "--crf for libx264 must be at most 51, got 60"),
        (["--pix-fmt", "rgba"], "--pix-fmt rgba is not supported by libx264"),
        (["--pix-fmt", "nosuch"], "--pix-fmt 'nosuch' is not a pixel format"),
    ],
)
def test_video_encoder_settings_are_refused_before_the_model_loads(
    tmp_path: Path, clip: Path, no_model: None, extra: list[str], words: str
) -> None:
    result = _cli("video", clip, tmp_path / "out" / "o.mp4", "--no-progress", *extra)
    assert result.exit_code == 2, result.output
    assert words in result.stderr and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_png_output_name_for_video_is_refused_before_the_model_loads(
    tmp_path: Path, clip: Path, no_model: None
) -> None:
    result = _cli("video", clip, tmp_path / "o.png", "--no-progress")
    assert result.exit_code == 2 and "cannot write a video in .png files" in result.stderr


def test_locked_output_is_refused_before_the_model_loads(tmp_path: Path, clip: Path, no_model: None) -> None:
    src, dst = tmp_path / "pics", tmp_path / "out"
    save_image(src / "a.png", make_image("u8_rgb"))
    dst.mkdir()
    with output_lock(dst / "o.mp4"):
        result = _cli("video", clip, dst / "o.mp4", "--no-progress")
        assert result.exit_code == 2 and "another deblurtool job" in result.stderr, result.output
    with output_lock(dst):
        result = _cli("folder", src, dst, "--no-progress")
        assert result.exit_code == 2 and "another deblurtool job" in result.stderr, result.output


def test_read_only_output_is_refused_before_the_model_loads(
    tmp_path: Path, clip: Path, no_model: None, ordinary_user: OrdinaryUser
) -> None:
    src, dst = tmp_path / "pics", tmp_path / "out"
    save_image(src / "a.png", make_image("u8_rgb"))
    dst.mkdir()
    os.chmod(dst, 0o555)
    try:
        with ordinary_user():
            video = _cli("video", clip, dst / "o.mp4", "--no-progress")
            folder = _cli("folder", src, dst, "--no-progress")
    finally:
        os.chmod(dst, 0o755)
    for result in (video, folder):
        assert result.exit_code == 2 and "cannot write in this folder" in result.stderr, result.output
    assert list(dst.iterdir()) == []


def test_results_on_stdout_diagnostics_on_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load = inference.load_deblurrer

    def chatty(spec: Any) -> Any:
        print("Statistics collection 100% ━━━━━━ 8/8")  # what NNCF draws on stdout while it quantises
        return load(spec)

    monkeypatch.setattr(inference, "load_deblurrer", chatty)
    src, dst = tmp_path / "in", tmp_path / "out"
    save_image(src / "a.png", make_image("u8_rgb"))
    save_image(src / "b.png", make_image("u8_rgb", seed=1))
    result = _cli("folder", src, dst, "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["2 image(s), 0 video(s): 2 done, 0 skipped, 0 failed"]
    assert "model: device cpu" in result.stderr and "Statistics collection" in result.stderr
    clip = make_video(tmp_path / "v.mp4", frames=2, audio=False).path
    result = _cli("video", clip, tmp_path / "v_out.mp4", "--no-progress")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert line.startswith("2 frames in ") and "model:" in result.stderr


def test_model_and_weights_together_are_refused(tmp_path: Path, clip: Path, no_model: None) -> None:
    result = _cli("video", clip, tmp_path / "o.mp4", "--model", "default", "--weights", clip, "--no-progress")
    assert result.exit_code == 2
    assert "--model and --weights both name the generator to run; give one of them" in result.stderr


def test_one_model_spec_reaches_the_run_whole(
    tmp_path: Path, clip: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    load = inference.load_deblurrer
    monkeypatch.setattr(inference, "load_deblurrer", lambda spec: seen.append(spec) or load(spec))
    args = ["--weights", tiny_weights, "--device", "cpu", "--precision", "fp32", "--engine", "torch"]
    args += ["--tile-size", "64", "--strength", "0.5", "--no-progress"]
    result = _cli("video", clip, tmp_path / "o.mp4", *args)
    assert result.exit_code == 0, result.output
    (spec,) = seen
    assert spec == common.model_spec(weights=tiny_weights, device="cpu", precision="fp32", engine="torch",
                                     tile_size=64, strength=0.5)  # fmt: skip
    from deblurtool.scale.run import worker_spec

    on_ray = worker_spec(spec, EncodeConfig())  # what every Ray worker loads: the same spec, whole
    assert on_ray.model == spec


def test_a_full_disk_is_said_as_such_and_a_bug_is_an_internal_error(tmp_path: Path) -> None:
    def raising(error: Exception) -> None:
        with common.naming_the_file(tmp_path / "in.mp4", "nothing was written"):
            raise error

    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.mp4"))
    with pytest.raises(DeblurError) as info:
        raising(full)
    text = str(info.value)
    assert not isinstance(info.value, InternalError) and info.value.exit_code == 2
    assert "the disk is full" in text and str(tmp_path / "out.mp4") in text and "--codec" not in text
    with pytest.raises(InternalError) as bug:
        raising(KeyError("x"))
    assert bug.value.exit_code == 70 and "KeyError" in str(bug.value)


def test_help_documents_every_exit_code() -> None:
    text = " ".join(_cli("--help").output.split())
    for words in ("0 all done", "1 some inputs failed", "2 usage or unusable input", "70 internal error",
                  "130 interrupted", "143 terminated"):  # fmt: skip
        assert words in text, words


def test_a_full_disk_when_the_video_header_is_written_names_no_codec(
    tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import av.container
    import av.error

    def full(self: object) -> None:
        raise av.error.OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o.mp4"))

    monkeypatch.setattr(av.container.OutputContainer, "start_encoding", full)
    result = _cli("video", clip, tmp_path / "o.mp4", "--no-progress")
    assert result.exit_code == 2, result.output
    assert "the disk is full" in result.stderr and str(tmp_path / "o.mp4") in result.stderr
    assert "--codec" not in result.stderr and "container" not in result.stderr
