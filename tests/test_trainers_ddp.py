"""DDP smoke run: torchrun with 2 CPU processes (gloo), stopped and resumed, ranks stay in sync."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_trainers_data import make_gopro

from trainers.run_files import read_metrics

TORCHRUN = Path(sys.executable).with_name("torchrun")

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch
    import torch.distributed as dist

    from trainers.config import TrainConfig
    from trainers.train import Trainer

    data, out = sys.argv[1], Path(sys.argv[2])
    dist.init_process_group("gloo")  # one group for both Trainers (each would otherwise make and end its own)
    kw = dict(data=data, out=str(out), ngf=4, n_blocks=1, critic_ndf=4, crop=32, epochs=2, steps_per_epoch=2,
              batch_size=1, workers=0, perceptual_weight=0.0, pixel_loss="l1", pixel_weight=1.0,
              precision="fp32", device="cpu", critic_steps=2, log_every=1)
    first = Trainer(TrainConfig(stop_at_step=3, **kw)).run()
    assert first.stopped_early and first.global_step == 3, first
    trainer = Trainer(TrainConfig(resume=True, **kw))
    rank = trainer.rank
    result = trainer.run()
    assert result.global_step == 4 and dist.is_initialized(), result
    # Parameters only: BN running statistics are rank 0's at each forward, then updated from local batches.
    params = {net: {k: p.detach() for k, p in getattr(trainer, net).named_parameters()}
              for net in ("generator", "critic")}
    torch.save(params, out / f"rank{rank}.pt")
    dist.destroy_process_group()
    """
)


def _torchrun_2(*args: str) -> str:
    """``torchrun --standalone --nproc_per_node=2 ARGS`` (one thread each); its stdout, after exit 0."""
    torchrun = str(TORCHRUN) if TORCHRUN.is_file() else "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", *args]
    # Own session, so a hang is ended with all of torchrun's workers rather than leaving them orphaned.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail("torchrun timed out:\n" + stdout[-3000:] + stderr[-3000:])
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout


@pytest.mark.slow
@pytest.mark.skipif(
    not TORCHRUN.is_file() and shutil.which("torchrun") is None, reason="torchrun not installed"
)
def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    data = make_gopro(tmp_path / "GOPRO_Large", n_train=5, n_test=1, size=40)
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    stdout = _torchrun_2(str(script), str(data), str(out))
    assert stdout.count("training on") == 2  # one per run, rank 0 only
    assert "2 process(es)" in stdout
    rows = read_metrics(out / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [2, 4]  # 5 pairs over 2 ranks, batch 1: 2 steps per epoch
    assert (out / "best.safetensors").is_file()
    states = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for net in ("generator", "critic"):
        for name, t in states[0][net].items():
            assert torch.equal(t, states[1][net][name]), f"{net}.{name} differs between ranks"


@pytest.mark.slow
@pytest.mark.skipif(
    not TORCHRUN.is_file() and shutil.which("torchrun") is None, reason="torchrun not installed"
)
def test_torchrun_runs_the_cli(tmp_path: Path) -> None:
    """The README's line: `torchrun --nproc_per_node=N -m deblurtool train DATA --out RUN ...`."""
    data = make_gopro(tmp_path / "GOPRO_Large", n_train=4, n_test=1, size=40)
    out = tmp_path / "run"
    stdout = _torchrun_2("-m", "deblurtool", "train", str(data), "--out", str(out), "--ngf", "4",
                         "--n-blocks", "1", "--adv-weight", "0", "--perceptual-weight", "0", "--pixel-loss",
                         "l1", "--pixel-weight", "1", "--crop", "32", "--epochs", "1", "--workers", "0",
                         "--precision", "fp32", "--device", "cpu")  # fmt: skip
    assert "2 process(es)" in stdout and stdout.count("training on") == 1 and stdout.count("done:") == 1
    assert [int(r["step"]) for r in read_metrics(out / "metrics.csv")] == [2]  # 4 pairs, 2 ranks, batch 1
