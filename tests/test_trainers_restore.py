"""trainers.restore (the restoration recipe) and `deblurtool train --arch nafunet`: tiny nets, a miniature
shared/data tree, resume, exports, the CLI and the GPU command run on the CPU."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from shared_layout import make_shared_data
from typer.testing import CliRunner

from deblurtool.models import registry
from deblurtool.models.weights import load_generator
from trainers.holdout import EvalPair, HeldOut
from trainers.mix import PairSource, SourceMix
from trainers.restore import Batches, RecipeConfig, RestoreTrainer, lr_at

torch.set_num_threads(1)
ROOT = Path(__file__).parents[1]
TINY_NAF = {"width": 8, "enc_blocks": [1, 1], "dec_blocks": [1, 1], "mid_blocks": 1}
TINY_NAF_JSON = '{"width": 8, "enc_blocks": [1, 1], "dec_blocks": [1, 1], "mid_blocks": 1}'


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shared_data(tmp_path_factory.mktemp("shared") / "data")


def tiny(shared: Path, out: Path, **kw: object) -> RecipeConfig:
    base: dict[str, object] = dict(
        out=str(out), arch_config=TINY_NAF, data_root=str(shared), crop=32, batch_size=2, precision="fp32",
        budget_steps=4, eval_every_steps=2, warmup_steps=1, threads=1, seed=0,
        sharp_floor=0.0,  # an untrained U-Net alters sharp input: these runs test the loop, not the model
    )  # fmt: skip
    base.update(kw)
    return RecipeConfig(**base)  # type: ignore[arg-type]


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def state(out: Path) -> dict[str, object]:
    return torch.load(out / "state.pt", map_location="cpu", weights_only=False)  # type: ignore[no-any-return]


def test_a_run_evaluates_exports_and_saves_its_state(shared: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    trainer = RestoreTrainer(tiny(shared, out), log=lambda _: None)
    best = trainer.run()
    assert trainer.step == 4 and not trainer.stopped
    r = rows(out)
    assert [int(x["step"]) for x in r] == [0, 2, 4]
    assert {k for k in r[0] if k.startswith("gain_")} == {
        f"gain_{s}" for s in ("gopro0374", "samples", "tail0372", "x4k")
    }
    assert math.isclose(best, max(float(x["score"]) for x in r if x["best"] == "True"), abs_tol=1e-3)
    for name in ("best", "last"):
        model = load_generator(out / f"{name}.safetensors", verify=False)
        assert registry.arch_of(model) == "nafunet" and model.config.to_dict()["width"] == 8
    s = state(out)
    assert s["step"] == 4 and s["arch"] == "nafunet" and s["best_step"] == trainer.best_step >= 0
    last = load_generator(out / "last.safetensors", verify=False)
    for k, v in last.state_dict().items():  # last.safetensors holds the EMA weights (stored in fp16)
        torch.testing.assert_close(v, s["ema"][k].float(), rtol=1e-3, atol=1e-3)  # type: ignore[index]


def test_stopped_and_resumed_equals_the_uninterrupted_run(shared: Path, tmp_path: Path) -> None:
    full = RestoreTrainer(tiny(shared, tmp_path / "full"), log=lambda _: None)
    full.run()
    part = RestoreTrainer(tiny(shared, tmp_path / "part", stop_at_step=3), log=lambda _: None)
    part.run()
    assert part.stopped and part.step == 3 and state(tmp_path / "part")["step"] == 3
    resumed = RestoreTrainer(tiny(shared, tmp_path / "part"), log=lambda _: None)
    assert resumed.step == 3  # continues the step count
    resumed.run()
    a, b = state(tmp_path / "full"), state(tmp_path / "part")
    assert a["step"] == b["step"] == 4
    for key in ("model", "ema"):
        for name, t in a[key].items():  # type: ignore[attr-defined]
            assert torch.equal(t, b[key][name]), f"{key}.{name}"  # type: ignore[index]


def test_a_tiny_resnet9_trains_with_the_recipe_too(shared: Path, tmp_path: Path) -> None:
    cfg = tiny(shared, tmp_path / "r9", arch="resnet9", arch_config={"ngf": 4, "n_blocks": 1}, budget_steps=2,
               optimizer="adam", ema=0.0)  # fmt: skip
    RestoreTrainer(cfg, log=lambda _: None).run()
    model = load_generator(tmp_path / "r9" / "last.safetensors", verify=False)
    assert registry.arch_of(model) == "resnet9"


def test_a_mix_built_in_the_test_and_batches_made_in_threads(tmp_path: Path) -> None:
    """``mix=`` takes sources made anywhere; with loader threads, batch i comes from its own seed: the same
    batches whatever the thread count."""
    rng = np.random.default_rng(0)
    pairs = [
        (rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    ]
    held = HeldOut([EvalPair("a", "p", *pairs[0])], select_sets=("a",))
    mix = SourceMix([PairSource("p", pairs)], [1.0], held)
    cfg = RecipeConfig(out=str(tmp_path / "m"), arch_config=TINY_NAF, crop=32, batch_size=2, precision="fp32",
                       budget_steps=2, eval_every_steps=1, warmup_steps=1, loader_threads=2)  # fmt: skip
    trainer = RestoreTrainer(cfg, log=lambda _: None, mix=mix)
    trainer.run()
    assert [int(x["step"]) for x in rows(tmp_path / "m")] == [0, 1, 2] and "gain_a" in rows(tmp_path / "m")[0]
    one = Batches(mix, RecipeConfig(**{**cfg.__dict__, "loader_threads": 1}), 0)
    three = Batches(mix, RecipeConfig(**{**cfg.__dict__, "loader_threads": 3}), 5)
    try:
        for i in range(5, 9):
            assert all(torch.equal(x, y) for x, y in zip(one.take(i), three.take(i), strict=True))
    finally:
        one.close()
        three.close()


def test_learning_rate_warms_up_then_follows_the_cosine() -> None:
    cfg = RecipeConfig(budget_steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-5)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(1e-4)
    assert lr_at(cfg, 9, 0.09) == pytest.approx(1e-3)
    assert lr_at(cfg, 50, 0.0) == pytest.approx(1e-3)
    assert lr_at(cfg, 50, 0.5) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(cfg, 100, 1.0) == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="one budget"):
        RecipeConfig(budget_steps=10, budget_wall_min=1.0)


def _cli() -> typer.Typer:
    from deblurtool.commands.train import train

    app = typer.Typer()
    app.command()(train)
    app.command("noop")(lambda: None)
    return app


def _naf_args(shared: Path, out: Path) -> list[str]:
    return ["train", str(shared), "--out", str(out), "--arch", "nafunet", "--arch-config", TINY_NAF_JSON,
            "--crop", "32", "--batch-size", "2", "--precision", "fp32", "--device", "cpu",
            "--warmup-steps", "1", "--eval-every-steps", "2", "--threads", "1",
            "--sharp-floor", "0"]  # fmt: skip


def test_train_arch_nafunet_cli(shared: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    runner = CliRunner()
    r = runner.invoke(_cli(), [*_naf_args(shared, out), "--steps", "2"])
    assert r.exit_code == 0, r.output
    assert "done: step 2" in r.stdout and f"-> {out / 'best.safetensors'}" in r.stdout
    assert "training nafunet on cpu fp32, batch 2 of 32px crops" in r.stderr  # diagnostics on stderr
    r = runner.invoke(_cli(), [*_naf_args(shared, out), "--steps", "2"])
    assert r.exit_code == 2 and "--resume" in r.output
    # --resume with only DATA, --out and a longer budget keeps the run's other settings (tiny net, crop).
    r = runner.invoke(_cli(), ["train", str(shared), "--out", str(out), "--arch", "nafunet", "--resume",
                               "--steps", "3", "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert state(out)["step"] == 3 and state(out)["arch_config"]["width"] == 8  # type: ignore[index]
    r = runner.invoke(_cli(), [*_naf_args(shared, out), "--steps", "1", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert [int(x["step"]) for x in rows(out)] == [0, 1]


def test_stop_at_step_stops_and_names_the_file_it_wrote(shared: Path, tmp_path: Path) -> None:
    out = tmp_path / "stop"
    r = CliRunner().invoke(_cli(), [*_naf_args(shared, out), "--steps", "4", "--stop-at-step", "1",
                                    "--eval-every-steps", "3"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "stopped early: step 1" in r.stdout and "best step 0" in r.stdout  # the step-0 evaluation wrote it


def test_the_gpu_command_runs_on_the_cpu_with_a_tiny_wall_budget(shared: Path, tmp_path: Path) -> None:
    """scripts/train_gpu.sh: the same command with DEVICE=cpu, a wall budget of about a second, batches made
    in two threads: weights and metrics land in the folder."""
    out = tmp_path / "gpu"
    env = {**os.environ, "DEVICE": "cpu", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    script = str(ROOT / "scripts" / "train_gpu.sh")
    extra = ["--arch-config", TINY_NAF_JSON, "--crop", "32", "--batch-size", "2", "--precision", "fp32",
             "--warmup-steps", "1", "--workers", "2", "--threads", "1", "--sharp-floor", "0"]  # fmt: skip
    done = subprocess.run(["bash", script, str(shared), str(out), "0.02", *extra], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "training nafunet on cpu fp32" in done.stderr and "done: step" in done.stdout
    r = rows(out)
    assert int(r[-1]["step"]) >= 1 and float(r[-1]["wall_min"]) >= 0.02
    assert (out / "best.safetensors").is_file() and (out / "last.safetensors").is_file()


def test_gpu_defaults_and_precision(shared: Path) -> None:
    from trainers.config import TrainConfig
    from trainers.restore_run import recipe_config, resolve_precision

    gpu = TrainConfig.create(
        {"data": (str(shared),), "out": "o", "arch": "nafunet", "minutes": 10, "device": "cuda"}
    )
    cpu = TrainConfig.create(
        {"data": (str(shared),), "out": "o", "arch": "nafunet", "minutes": 10, "device": "cpu"}
    )
    assert (gpu.crop, gpu.batch_size, gpu.workers) == (256, 16, 8)
    assert (cpu.crop, cpu.batch_size, cpu.workers, cpu.lr) == (128, 4, 0, 1e-3)
    assert resolve_precision("auto", torch.device("cpu")) in ("bf16", "fp32")
    recipe = recipe_config(cpu)
    assert recipe.budget_wall_min == 10 and recipe.pixel == "charbonnier" and recipe.fft_weight == 0.05
