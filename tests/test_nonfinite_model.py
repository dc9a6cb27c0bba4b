"""Weights with NaN, infinity or absurd values never give a black video with exit 0: refused at load time
(naming the tensor) or, if they only blow up while running, the job stops on the first such frame with
nothing under the final name. All-zero weights load, with a note that they change nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import identity_generator, make_image, make_video, random_generator, save_image
from typer.testing import CliRunner

from deblurtool.config import EncodeConfig, RuntimeConfig, TileConfig
from deblurtool.errors import ModelOutputError, WeightsError
from deblurtool.inference import Deblurrer
from deblurtool.models import weights as W
from deblurtool.models.generator import GeneratorConfig
from deblurtool.pipeline import run_folder, run_video

runner = CliRunner()
TINY = GeneratorConfig(ngf=4, n_blocks=1)


def _weights_with(path: Path, name: str, value: float, *, dtype: torch.dtype = torch.float16) -> Path:
    model = identity_generator()
    with torch.no_grad():
        model.state_dict()[name].view(-1)[0] = value
    W.save_generator(model, path, dtype=dtype)
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path: Path, value: float) -> None:
    path = _weights_with(tmp_path / "bad.safetensors", "model.20.weight", value)
    with pytest.raises(WeightsError, match=r"tensor model\.20\.weight holds 1 non-finite value") as info:
        W.load_generator(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_cli_refuses_nan_weights_in_one_line(tmp_path: Path) -> None:
    from deblurtool.cli import app

    spec = make_video(tmp_path / "in.mp4", frames=2, audio=False)
    bad = _weights_with(tmp_path / "bad.safetensors", "model.1.weight", float("nan"))
    dst = tmp_path / "out.mp4"
    result = runner.invoke(app, ["video", str(spec.path), str(dst), "--weights", str(bad), "--no-progress"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "model.1.weight" in errors[0] and "non-finite" in errors[0]
    assert not dst.exists()


def _exploding_deblurrer() -> Deblurrer:
    """Finite weights (they pass the load check) so large that the activations overflow float32: what a
    flipped exponent bit does."""
    model = random_generator(TINY, seed=1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("weight") and t.dim() == 4:
                t.mul_(1e25)
    return Deblurrer.from_model(model, TileConfig(tile_size=0), RuntimeConfig("cpu", "fp32", "torch"))


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_non_finite_model_output_stops_the_video_with_nothing_written(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=4)
    before = set(tmp_path.rglob("*"))
    dst = tmp_path / "out" / "out.mp4"
    with pytest.raises(ModelOutputError, match=r"frame 0: the model returned non-finite values") as info:
        run_video(spec.path, dst, _exploding_deblurrer(), EncodeConfig(), progress=False)
    assert str(info.value).startswith(f"{spec.path}: ") and "nothing was written" in str(info.value)
    assert set(tmp_path.rglob("*")) == before  # no output, no temporary file, no folder


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_non_finite_model_output_stops_a_folder_run(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        save_image(src / f"{i}.png", make_image("u8_rgb", seed=i))
    with pytest.raises(ModelOutputError, match="the run stopped"):
        run_folder(src, dst, _exploding_deblurrer(), progress=False)
    assert not any(p.suffix == ".png" for p in dst.rglob("*"))


def test_progress_lines_in_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Where stderr is not a terminal (as under pytest), a line with done/total, rate and ETA replaces the
    bar, at most every ``log_every`` seconds."""
    from deblurtool.ui import ProgressBar

    with ProgressBar("fps", log_every=0.0).items("clip.mp4", 4) as advance:
        for _ in range(4):
            advance()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and lines[1].startswith("clip.mp4: 2/4, ") and " fps, elapsed 0:00:00" in lines[1]
    assert "ETA" in lines[1] and "ETA" not in lines[3]
    with ProgressBar("fps", log_every=3600.0).items("clip.mp4", 4) as advance:
        advance()
    assert capsys.readouterr().err == ""


def test_all_zero_weights_load_with_a_note_that_they_change_nothing(tmp_path: Path) -> None:
    from test_registry import tiny_nafunet

    for model in (random_generator(TINY, seed=2), tiny_nafunet(seed=2)):
        with torch.no_grad():
            for t in model.state_dict().values():
                if t.is_floating_point():
                    t.zero_()
        path = tmp_path / "zero.safetensors"
        W.save_generator(model, path)
        d = Deblurrer.from_weights(path, None, RuntimeConfig("cpu", "fp32", "torch"))
        assert any(n.startswith("this generator changes nothing") for n in d.notes), d.notes
        img = make_image("u8_rgb", seed=1)[:, :, :3]
        assert np.array_equal(d(np.ascontiguousarray(img)), img)
    trained = Deblurrer.from_model(
        random_generator(TINY, seed=3), None, RuntimeConfig("cpu", "fp32", "torch")
    )
    assert not any("changes nothing" in n for n in trained.notes)
