"""trainers.train: exact resume, outputs and exports, run-folder rules, loss switches, CLI, module entry."""

from __future__ import annotations

import json
import typing
from dataclasses import fields
from pathlib import Path

import cv2
import pytest
import torch
import typer
from safetensors import safe_open
from test_trainers_data import make_gopro
from test_trainers_losses import random_vgg16_state
from typer.testing import CliRunner

from deblurtool.errors import InputError, OutputError
from deblurtool.models.weights import load_generator, save_generator
from trainers.config import TrainConfig
from trainers.run_files import METRIC_COLUMNS, read_metrics
from trainers.train import Trainer, lr_factor, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def gopro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gopro(tmp_path_factory.mktemp("data") / "GOPRO_Large", n_train=6, n_test=2, size=48)


def tiny(data: Path, out: Path, **kw: object) -> TrainConfig:
    """A run of two 3-step epochs of a 4-wide generator and critic on 32-pixel crops, fp32, no VGG."""
    base: dict[str, object] = dict(
        data=str(data), out=str(out), ngf=4, n_blocks=1, critic_ndf=4, crop=32, epochs=2, steps_per_epoch=3,
        batch_size=2, workers=0, perceptual_weight=0.0, pixel_loss="l1", pixel_weight=1.0, precision="fp32",
        device="cpu", critic_steps=2, checkpoint_every=0, log_every=1,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def final_state(out: Path) -> dict[str, typing.Any]:
    return torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)


def assert_same_run(a: Path, b: Path) -> None:
    sa, sb = final_state(a), final_state(b)
    for key in ("generator", "critic"):
        assert sa[key].keys() == sb[key].keys()
        for name in sa[key]:
            assert torch.equal(sa[key][name], sb[key][name]), f"{key}.{name} differs"
    assert sa["global_step"] == sb["global_step"] and sa["epoch"] == sb["epoch"]
    ra, rb = read_metrics(a / "metrics.csv"), read_metrics(b / "metrics.csv")
    assert [{k: v for k, v in r.items() if k != "wall_s"} for r in ra] == [
        {k: v for k, v in r.items() if k != "wall_s"} for r in rb
    ]


def test_stop_and_resume_is_identical(gopro: Path, tmp_path: Path) -> None:
    """Stopped after epoch 1, or mid-epoch 2, then resumed: bitwise the uninterrupted two-epoch run."""
    vgg = tmp_path / "vgg.pth"
    torch.save(random_vgg16_state(upto="block2_conv2"), vgg)
    extra = dict(perceptual_weight=1.0, perceptual_layers="block1_conv2,block2_conv2", vgg_weights=str(vgg))
    full = train(tiny(gopro, tmp_path / "full", **extra))
    assert (full.epochs_done, full.global_step, full.stopped_early) == (2, 6, False)
    for stop in (3, 4):
        out = tmp_path / f"stop{stop}"
        part = train(tiny(gopro, out, stop_at_step=stop, **extra))
        assert part.stopped_early and part.global_step == stop
        assert len(read_metrics(out / "metrics.csv")) == 1
        resumed = train(tiny(gopro, out, resume=True, **extra))
        assert (resumed.epochs_done, resumed.global_step) == (2, 6)
        assert_same_run(tmp_path / "full", out)


def test_outputs_and_exports(gopro: Path, tmp_path: Path) -> None:
    extra_dir = tmp_path / "extra"
    make_gopro(extra_dir, n_train=0, n_test=2, size=40, seed=9)
    out = tmp_path / "run"
    result = train(tiny(gopro, out, eval_extra=(str(extra_dir / "test"),), precision="bf16"))
    rows = read_metrics(out / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2] and [int(r["step"]) for r in rows] == [3, 6]
    assert list(rows[0]) == list(METRIC_COLUMNS)
    for r in rows:
        for col in ("g_loss", "d_loss", "psnr", "ssim", "input_psnr", "extra_psnr", "extra_input_ssim", "lr"):
            assert r[col] != "" and float(r[col]) == float(r[col]), col
    best_epoch = max(rows, key=lambda r: (float(r["psnr"]), float(r["ssim"])))["epoch"]
    assert result.best_epoch == int(best_epoch)
    for name in ("loss.png", "psnr.png", "ssim.png"):
        img = cv2.imread(str(out / name))
        assert img is not None and img.shape == (400, 640, 3)
    assert json.loads((out / "config.json").read_text())["ngf"] == 4
    with safe_open(str(out / "best.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["epoch"] == best_epoch and float(meta["psnr"]) == pytest.approx(result.best_psnr, abs=1e-3)
    assert "GOPRO_Large/train" in meta["data"] and "crop 32" in meta["data"]
    last = load_generator(out / "last.safetensors")
    trained = final_state(out)["generator"]
    for name, t in last.state_dict().items():
        if t.is_floating_point():
            torch.testing.assert_close(t, trained[name].float(), rtol=1e-3, atol=1e-3)  # stored as fp16
    assert not list(out.glob(".*.tmp")) and not list((out / "checkpoints").glob(".*.tmp"))


def test_run_folder_rules(gopro: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(InputError, match="no checkpoint to resume"):
        Trainer(tiny(gopro, out, resume=True))
    train(tiny(gopro, out, epochs=1, steps_per_epoch=1))
    with pytest.raises(OutputError, match="--resume"):
        Trainer(tiny(gopro, out))
    with pytest.raises(InputError, match="not found"):  # checked before --overwrite deletes anything
        Trainer(tiny(tmp_path / "typo", out, overwrite=True))
    assert (out / "checkpoints" / "last.pt").is_file()
    result = train(tiny(gopro, out, epochs=1, steps_per_epoch=1, overwrite=True))
    assert result.global_step == 1 and len(read_metrics(out / "metrics.csv")) == 1
    # --resume may extend --epochs; settings that shape the optimisation come from the checkpoint.
    result = train(tiny(gopro, out, epochs=2, steps_per_epoch=1, resume=True, lr=1.0))
    assert (result.epochs_done, result.global_step) == (2, 2)
    assert final_state(out)["config"]["lr"] == 1e-4


def test_adv_weight_zero_builds_no_critic_and_wgan_clips(gopro: Path, tmp_path: Path) -> None:
    t = Trainer(tiny(gopro, tmp_path / "a", adv_weight=0.0))
    assert t.critic is None and t.perceptual is None
    batch = next(iter(t._loader(0)))
    logs = t.train_step(*batch)
    assert logs["d_loss"] == 0.0 and logs["g_pixel"] > 0
    t = Trainer(tiny(gopro, tmp_path / "b", gan="wgan", clip_value=0.005, critic_norm="batch"))
    t.train_step(*batch)
    assert t.critic is not None
    assert max(p.abs().max().item() for p in t.critic.parameters()) <= 0.005


def test_init_weights_fine_tunes_from_file(gopro: Path, tmp_path: Path) -> None:
    from deblurtool.models.generator import GeneratorConfig, ResnetGenerator

    torch.manual_seed(5)
    start = ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=2))
    torch.nn.init.normal_(start.head.weight, std=0.01)
    path = tmp_path / "start.safetensors"
    save_generator(start, path)
    t = Trainer(tiny(gopro, tmp_path / "ft", init_weights=str(path), n_blocks=1))
    assert t.generator.config.n_blocks == 2  # the file's architecture wins
    torch.testing.assert_close(t.generator.head.weight, start.head.weight.half().float())


def test_lr_schedule_decays_over_second_half() -> None:
    f = lr_factor(10)
    assert [f(e) for e in range(10)] == pytest.approx([1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2])
    assert lr_factor(1)(0) == 1.0


def test_config_validation() -> None:
    with pytest.raises(Exception, match="--critic-norm must be one of"):
        TrainConfig(data="d", out="o", critic_norm="group")
    with pytest.raises(Exception, match="--pixel-weight"):
        TrainConfig(data="d", out="o", pixel_loss="l1")
    with pytest.raises(Exception, match="multiple of 4"):
        TrainConfig(data="d", out="o", crop=30)
    with pytest.raises(Exception, match="--crop-tries must be at least 1"):
        TrainConfig(data="d", out="o", crop_tries=0)
    cfg = TrainConfig(data="d", out="o", eval_extra=("x",))
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def _cli() -> typer.Typer:
    from deblurtool.commands.train import train as train_command

    app = typer.Typer()
    app.command()(train_command)
    app.command("noop")(lambda: None)  # two commands, so `train` is addressed by name as in deblurtool
    return app


def test_cli_covers_every_knob_and_runs(gopro: Path, tmp_path: Path) -> None:
    import inspect

    from deblurtool.commands.train import train as train_command

    params = set(inspect.signature(train_command).parameters) - {"ctx"}
    assert params == {f.name for f in fields(TrainConfig)}
    runner = CliRunner()
    help_text = runner.invoke(_cli(), ["train", "--help"], terminal_width=200).output
    for flag in ("--critic-steps", "--perceptual-layers", "--vgg-weights", "--eval-extra", "--resume"):
        assert flag in help_text
    out = tmp_path / "cli"
    args = ["train", str(gopro), "--out", str(out), "--ngf", "4", "--n-blocks", "1", "--critic-ndf", "4",
            "--crop", "32", "--epochs", "1", "--steps-per-epoch", "1", "--perceptual-weight", "0",
            "--workers", "0", "--precision", "fp32"]  # fmt: skip
    result = runner.invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    assert "best epoch 1" in result.output and (out / "best.safetensors").is_file()
    result = runner.invoke(_cli(), args)
    assert result.exit_code == 2 and "--resume" in result.output
    result = runner.invoke(_cli(), ["train", str(tmp_path / "none"), "--out", str(out / "x")])
    assert result.exit_code == 2 and "not found" in result.output


def test_resume_keeps_the_settings_left_out(gopro: Path, tmp_path: Path) -> None:
    """`--resume` with only DATA and --out continues with the run's --epochs and --eval-extra (their defaults
    must not replace them); a setting spelled out on resume does change."""
    out = tmp_path / "run"
    first = [str(gopro), "--out", str(out), "--ngf", "4", "--n-blocks", "1", "--adv-weight", "0",
             "--crop", "32", "--epochs", "2", "--steps-per-epoch", "1", "--perceptual-weight", "0",
             "--pixel-loss", "l1", "--pixel-weight", "1", "--workers", "0", "--precision", "fp32",
             "--eval-extra", str(gopro / "test"), "--stop-at-step", "1"]  # fmt: skip

    def run(argv: list[str]) -> None:
        result = CliRunner().invoke(_cli(), ["train", *argv])
        assert result.exit_code == 0, result.output

    run(first)
    run([str(gopro), "--out", str(out), "--resume"])
    rows = read_metrics(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]  # not the default 200 epochs
    assert all(r["extra_psnr"] != "" for r in rows)  # --eval-extra kept
    run([str(gopro), "--out", str(out), "--resume", "--epochs", "3"])
    assert [r["epoch"] for r in read_metrics(out / "metrics.csv")] == ["1", "2", "3"]


@pytest.mark.slow
def test_python_m_deblurtool_train(gopro: Path, tmp_path: Path) -> None:
    """The module entry that torchrun uses (`torchrun ... -m deblurtool train`): one process here."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "deblurtool", "train", str(gopro), "--out", str(tmp_path / "m"),
            "--ngf", "4",
            "--n-blocks", "1", "--adv-weight", "0", "--crop", "32", "--epochs", "1", "--steps-per-epoch", "1",
            "--perceptual-weight", "0", "--pixel-loss", "mse", "--pixel-weight", "1", "--workers", "0",
            "--eval-extra", str(gopro / "test")]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done: 1 epochs" in done.stdout
    assert read_metrics(tmp_path / "m" / "metrics.csv")[0]["extra_psnr"] != ""
    bad = subprocess.run([*argv[:4], str(tmp_path / "missing"), "--out", str(tmp_path / "n")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "not found" in bad.stderr + bad.stdout


def test_best_export_runs_in_deblurtool_folder(gopro: Path, tmp_path: Path) -> None:
    """RUN/best.safetensors is what `deblurtool folder --weights` loads, with the output Deblurrer gives."""
    from deblurtool.cli import app
    from deblurtool.config import RuntimeConfig
    from deblurtool.inference import Deblurrer
    from deblurtool.pairs import read_rgb_u8

    out = tmp_path / "run"
    train(tiny(gopro, out, epochs=1))
    src, dst = gopro / "test" / "GOPR0000" / "blur", tmp_path / "deblurred"
    args = ["folder", str(src), str(dst), "--weights", str(out / "best.safetensors"), "--precision", "fp32",
            "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    deblurrer = Deblurrer.from_model(
        load_generator(out / "best.safetensors"), None, RuntimeConfig("cpu", "fp32")
    )
    for path in sorted(src.glob("*.png")):
        produced = read_rgb_u8(dst / path.name)
        expected = deblurrer.deblur_array(read_rgb_u8(path))
        assert produced.shape == expected.shape
        assert int(abs(produced.astype(int) - expected.astype(int)).max()) <= 1


def test_scaled_step_path_matches_unscaled(gopro: Path, tmp_path: Path) -> None:
    """The GradScaler path (fp16 on CUDA) only scales and unscales: exercised on the CPU, same result."""
    states, before = [], {}
    for enabled in (False, True):
        t = Trainer(tiny(gopro, tmp_path / f"scaled_{enabled}"))
        t.scaler_g = torch.amp.GradScaler("cpu", init_scale=256.0, enabled=enabled)
        t.scaler_d = torch.amp.GradScaler("cpu", init_scale=256.0, enabled=enabled)
        assert t.critic is not None
        both = {**t.generator.state_dict(), **{f"c.{k}": v for k, v in t.critic.state_dict().items()}}
        before = {k: v.clone() for k, v in both.items()}
        batch = next(iter(t._loader(0)))
        t.train_step(*batch)
        states.append({**t.generator.state_dict(), **{f"c.{k}": v for k, v in t.critic.state_dict().items()}})
    changed = 0
    for name, a in states[0].items():
        if a.is_floating_point():
            torch.testing.assert_close(states[1][name], a, rtol=1e-4, atol=1e-6)
            changed += int(not torch.equal(a, before[name]))
    assert changed > 10  # the step really moved both networks, so agreeing means something


def test_time_train_step_script_times_the_real_step(capsys: pytest.CaptureFixture[str]) -> None:
    """scripts/time_train_step.py (the README's step times) runs a tiny recipe, VGG and critic included."""
    from conftest import load_script

    module = load_script("time_train_step")
    tiny = ["--crop", "32", "--ngf", "8", "--n-blocks", "1", "--critic-ndf", "8", "--critic-steps", "1"]
    assert module.main([*tiny, "--steps", "2", "--warmup", "1", "--workers", "0", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "cpu float32" in out and "batch 1 of 32x32" in out and "over 2 steps after 1 warm-up" in out
