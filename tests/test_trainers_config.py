"""trainers.config and the `train` command built from it: one declaration, one validation, recipe defaults,
the int8 refusal, the module entry, and what a stopped run says it wrote."""

from __future__ import annotations

import subprocess
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
import typer
from test_trainers_data import make_gopro
from typer.testing import CliRunner

from deblurtool.errors import DeblurError
from trainers.config import SECTIONS, TRAIN_PRECISIONS, TrainConfig, opt_of


def _command() -> typing.Any:
    """The click command typer builds for `train` (typer vendors click: its classes are not imported)."""
    from deblurtool.commands.train import train

    app = typer.Typer(add_completion=False)
    app.command()(train)
    return typer.main.get_command(app)


def _cli() -> typer.Typer:
    from deblurtool.commands.train import train

    app = typer.Typer()
    app.command()(train)
    app.command("noop")(lambda: None)
    return app


def test_the_cli_is_the_config_field_for_field() -> None:
    """Every TrainConfig field is one CLI parameter of the same name, listed under its section, with the
    field's own default; nothing else is. Fails as soon as the two drift."""
    params = {p.name: p for p in _command().params}
    assert set(params) == {f.name for f in fields(TrainConfig)}
    for f in fields(TrainConfig):
        p, o = params[f.name], opt_of(f.name)
        assert o.section in SECTIONS and o.help
        if o.argument:
            assert p.param_type_name == "argument" and p.required
            continue
        assert p.param_type_name == "option" and p.opts[0] == "--" + f.name.replace("_", "-")
        assert getattr(p, "rich_help_panel", None) == o.section, f.name
        if f.default is MISSING:
            assert p.required, f.name
        elif isinstance(f.default, tuple):
            assert p.default in ((), None, ""), f.name
        elif f.name == "init_weights":
            assert p.default is None
        else:
            assert p.default == f.default and type(p.default) is type(f.default), f.name
    from deblurtool.commands.train import parse_train_args

    cfg, given = parse_train_args(["d", "--out", "o"])
    assert cfg == TrainConfig(data=("d",), out="o") and given == {"data", "out"}


def test_recipe_defaults_apply_to_the_options_not_given() -> None:
    naf = TrainConfig.create({"data": ("d",), "out": "o", "arch": "nafunet", "steps": 5, "crop": 64})
    assert (naf.lr, naf.crop, naf.batch_size, naf.sharp_share, naf.pixel_loss, naf.freq_weight) == (
        1e-3, 64, 4, 0.1, "charbonnier", 0.05,
    )  # fmt: skip
    gan = TrainConfig.create({"data": ("d",), "out": "o"})
    assert gan == TrainConfig(data=("d",), out="o") and gan.lr == 1e-4 and gan.crop == 256
    from deblurtool.commands.train import parse_train_args

    cfg, _ = parse_train_args(["d", "--out", "o", "--arch", "nafunet", "--minutes", "3", "--device", "cuda"])
    assert (cfg.crop, cfg.batch_size, cfg.minutes) == (256, 16, 3.0)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"minutes": 3.0}, "--minutes: option.* not of --arch resnet9"),
        ({"arch": "nafunet", "steps": 2, "gan": "wgan"}, "--gan: option.* not of --arch nafunet"),
        ({"arch": "nafunet"}, "exactly one of --steps, --cpu-minutes or --minutes"),
        ({"arch": "nafunet", "steps": 2, "minutes": 1.0}, r"got --steps, --minutes"),
        ({"arch": "nafunet", "steps": 2, "arch_config": "[1]"}, "JSON object"),
        ({"arch": "nafunet", "steps": 2, "arch_config": '{"width": 3}'}, "invalid nafunet config"),
        ({"arch": "nafunet", "steps": 2, "data": ("a", "b")}, "one data folder"),
        ({"arch": "unet9"}, "--arch must be one of"),
        ({"critic_norm": "group"}, "--critic-norm must be one of"),
    ],
)
def test_one_validation_for_every_option(kw: dict[str, object], match: str) -> None:
    with pytest.raises(DeblurError, match=match):
        TrainConfig.create({"data": ("d",), "out": "o", **kw})


def test_int8_is_refused_as_an_inference_precision(tmp_path: Path) -> None:
    with pytest.raises(DeblurError) as e:
        TrainConfig(data=("d",), out="o", precision="int8")
    assert "inference-only" in str(e.value) and ", ".join(TRAIN_PRECISIONS) in str(e.value)
    r = CliRunner().invoke(
        _cli(), ["train", str(tmp_path), "--out", str(tmp_path / "o"), "--precision", "int8"]
    )
    assert r.exit_code == 2
    assert "int8 is an inference-only precision" in r.output and "auto, fp32, bf16, fp16" in r.output
    assert "got 'int8'" not in r.output and not (tmp_path / "o").exists()


def test_python_m_trainers_train_without_arguments_prints_usage_and_fails() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trainers.train"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "Usage: python -m trainers.train" in done.stderr and "Missing argument" in done.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "trainers.train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert helped.returncode == 0 and "--arch" in helped.stdout


def test_stop_at_step_before_an_epoch_ends_names_no_weights(tmp_path: Path) -> None:
    """Stopped mid-epoch 1, the run wrote no weights: the summary must not point at best.safetensors."""
    gopro = make_gopro(tmp_path / "g", n_train=6, n_test=2, size=48)
    out = tmp_path / "run"
    base = [str(gopro), "--out", str(out), "--ngf", "4", "--n-blocks", "1", "--critic-ndf", "4",
            "--crop", "32", "--epochs", "1", "--steps-per-epoch", "3", "--perceptual-weight", "0",
            "--workers", "0", "--precision", "fp32", "--device", "cpu", "--critic-steps", "1"]  # fmt: skip
    r = CliRunner().invoke(_cli(), ["train", *base, "--stop-at-step", "1"])
    assert r.exit_code == 0, r.output
    assert "stopped early" in r.stdout and "no weights were written" in r.stdout
    assert "best.safetensors" not in r.stdout and not (out / "best.safetensors").exists()
    r = CliRunner().invoke(_cli(), ["train", *base, "--resume"])
    assert r.exit_code == 0, r.output
    assert f"-> {out / 'best.safetensors'}" in r.stdout and (out / "best.safetensors").is_file()
