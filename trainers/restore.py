"""The restoration recipe: pixel + frequency loss, AdamW, warm-up and cosine decay, EMA, a CPU or wall budget.

This is the recipe of the efficient generator (``nafunet``): no critic, no perceptual network; every step
goes to the pixel loss (Charbonnier) plus MIMO-UNet's frequency loss. The learning rate warms up linearly,
then follows a cosine to ``min_lr`` over the run's budget; the budget is steps, or minutes of process CPU
time (the fair unit on a shared CPU: it does not count time the process waited for a core), or minutes of
wall time (on a GPU). The exponential moving average of the weights is what is evaluated and exported.

Data: a mix of sources (``trainers.mix``): real pairs and high-frame-rate clips averaged on the fly.
Evaluation: held-out scenes (``trainers.holdout``), gain in dB over the blurry input, and the sharp-input
check; the best EMA weights by the held-out score (with every sharp frame >= ``sharp_floor`` dB) are
exported. DeblurGAN's GAN recipe for the ResNet-9 stays in ``trainers.train``.

Resumable: ``OUT/state.pt`` holds the full state (model, EMA, optimiser, step, budget used, RNG); a rerun
with the same OUT continues it. ``--init`` starts a new run from a generator ``.safetensors``.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import os
import time
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deblurtool.models import registry
from deblurtool.models.weights import load_generator, save_generator
from trainers.holdout import HeldOut, evaluate_heldout
from trainers.losses import frequency_loss, pixel_loss
from trainers.mix import SourceMix, build_mix


@dataclass
class RecipeConfig:
    """Everything a run needs; written to ``OUT/config.json``."""

    out: str = "runs/restore"
    arch: str = "nafunet"
    arch_config: dict[str, object] = field(default_factory=dict)
    init: str = ""  # a generator .safetensors to start from ("" = from scratch)
    data_root: str = "../shared/data"
    sources: str = "default"  # a named mix (trainers.mix.MIXES)
    crop: int = 128
    batch_size: int = 4
    sharp_share: float = 0.1  # share of samples whose input is the sharp frame itself
    optimizer: str = "adamw"  # adamw | adam
    lr: float = 1e-3
    min_lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.9)
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    grad_clip: float = 1.0
    ema: float = 0.999  # 0 = no EMA (the raw weights are evaluated)
    pixel: str = "charbonnier"
    pixel_weight: float = 1.0
    fft_weight: float = 0.05
    precision: str = "bf16"  # bf16 | fp32 | fp16 (fp16 on CUDA only)
    device: str = "cpu"
    threads: int = 0  # torch threads on the CPU (0: PyTorch's default)
    budget_steps: int = 0
    budget_cpu_min: float = 0.0
    budget_wall_min: float = 0.0
    eval_every_min: float = 5.0  # in the budget's unit (steps: eval_every_steps)
    eval_every_steps: int = 0
    eval_full: bool = False  # whole frames instead of centre crops
    sharp_floor: float = 40.0
    seed: int = 0
    stop_at_step: int = 0  # save state.pt and stop after this step (0: run the budget out)
    loader_threads: int = 0  # >0: batches made ahead in threads, batch i from its own seed (seed, i)

    def __post_init__(self) -> None:
        budgets = [self.budget_steps > 0, self.budget_cpu_min > 0, self.budget_wall_min > 0]
        if sum(budgets) != 1:
            raise ValueError("give exactly one budget: budget_steps, budget_cpu_min or budget_wall_min")
        if self.precision not in ("bf16", "fp32", "fp16"):
            raise ValueError(f"precision must be bf16, fp32 or fp16, got {self.precision!r}")
        if self.precision == "fp16" and not self.device.startswith("cuda"):
            raise ValueError("fp16 training needs a CUDA device (use bf16 on a CPU)")
        if self.optimizer not in ("adamw", "adam"):
            raise ValueError(f"optimizer must be adamw or adam, got {self.optimizer!r}")
        if not 0 <= self.ema < 1 or not 0 <= self.sharp_share < 1:
            raise ValueError("ema and sharp_share must be in [0, 1)")
        if self.crop < 16 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("crop >= 16, batch_size >= 1 and lr > 0 are required")
        self.betas = (float(self.betas[0]), float(self.betas[1]))

    @classmethod
    def from_json(cls, path: Path) -> RecipeConfig:
        d = json.loads(Path(path).read_text())
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class EvalRow:
    """One evaluation, one row of ``OUT/metrics.csv``."""

    step: int
    cpu_min: float
    wall_min: float
    lr: float
    loss: float
    score: float  # mean gain (dB) over the held-out scenes: what selection maximises
    sharp_min: float
    gains: dict[str, float]
    best: bool


class Budget:
    """Progress of the run in its budget's unit, in [0, 1]; training time only (evaluation excluded)."""

    def __init__(self, cfg: RecipeConfig, used: dict[str, float] | None = None) -> None:
        self.cfg = cfg
        self.used = {"cpu_s": 0.0, "wall_s": 0.0, **(used or {})}
        self._t: tuple[float, float] | None = None

    def start(self) -> None:
        self._t = (time.process_time(), time.perf_counter())

    def stop(self) -> None:
        if self._t is not None:
            self.used["cpu_s"] += time.process_time() - self._t[0]
            self.used["wall_s"] += time.perf_counter() - self._t[1]
            self._t = None

    def progress(self, step: int) -> float:
        c = self.cfg
        if c.budget_steps:
            return step / c.budget_steps
        if c.budget_cpu_min:
            return self.used["cpu_s"] / (60 * c.budget_cpu_min)
        return self.used["wall_s"] / (60 * c.budget_wall_min)

    def since(self, step: int, last: tuple[int, float]) -> bool:
        """Whether an evaluation is due, given the (step, used) at the last one."""
        c = self.cfg
        if c.eval_every_steps:
            return step - last[0] >= c.eval_every_steps
        unit = self.used["cpu_s"] if c.budget_cpu_min else self.used["wall_s"]
        return unit - last[1] >= 60 * c.eval_every_min

    def unit(self) -> float:
        return self.used["cpu_s"] if self.cfg.budget_cpu_min else self.used["wall_s"]


def lr_at(cfg: RecipeConfig, step: int, progress: float) -> float:
    """Linear warm-up over ``warmup_steps``, then a cosine from ``lr`` to ``min_lr`` over the budget."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = min(max(progress, 0.0), 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * p))


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        ema_p: list[torch.Tensor] = list(ema.parameters())
        cur_p = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_p, cur_p, 1.0 - decay)
        for be, b in zip(ema.buffers(), model.buffers(), strict=True):
            be.copy_(b)


class Batches:
    """Training batches made ahead in ``cfg.loader_threads`` threads (the sources' numpy and OpenCV work
    releases the GIL), so that a GPU does not wait for the CPU. Batch ``i`` is drawn from its own
    generator seeded with (seed, i): one stream whatever the thread count, continued exactly on resume."""

    def __init__(self, mix: SourceMix, cfg: RecipeConfig, start: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.mix, self.cfg = mix, cfg
        self.pool = ThreadPoolExecutor(cfg.loader_threads, thread_name_prefix="batches")
        self.ahead = 2 * cfg.loader_threads
        self.pending: dict[int, typing.Any] = {}
        self.next = start

    def _make(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.seed, i])
        blur, sharp = self.mix.batch(rng, self.cfg.batch_size, self.cfg.crop, self.cfg.sharp_share)
        if torch.cuda.is_available():  # page-locked: the copy to the GPU can overlap the step
            blur, sharp = blur.pin_memory(), sharp.pin_memory()
        return blur, sharp

    def take(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``i`` (steps are taken in order)."""
        self.next = max(self.next, i)
        while self.next < i + self.ahead:
            self.pending[self.next] = self.pool.submit(self._make, self.next)
            self.next += 1
        future = self.pending.pop(i, None) or self.pool.submit(self._make, i)
        blur, sharp = future.result()
        return blur, sharp

    def close(self) -> None:
        for f in self.pending.values():
            f.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


class RestoreTrainer:
    def __init__(
        self,
        cfg: RecipeConfig,
        *,
        log: typing.Callable[[str], None] = print,
        mix: SourceMix | None = None,
    ) -> None:
        """``mix``: the training sources and held-out scenes (default: ``build_mix`` of ``cfg.sources``)."""
        self.cfg = cfg
        self.log = log
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        state_path = self.out / "state.pt"
        state = (
            torch.load(state_path, map_location="cpu", weights_only=False) if state_path.is_file() else None
        )
        if state is not None:
            self.model = registry.build(state["arch"], state["arch_config"])
            self.model.load_state_dict(state["model"])
        elif cfg.init:
            self.model = load_generator(Path(cfg.init), verify=False)
        else:
            self.model = registry.build(cfg.arch, cfg.arch_config or None)
        self.arch = registry.arch_of(self.model)
        self.model.to(self.device).train()
        self.ema = copy.deepcopy(self.model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay if cfg.optimizer == "adamw" else 0.0},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.opt = opt_cls(groups, lr=cfg.lr, betas=cfg.betas)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
        self.step = 0
        self.best_score = -math.inf
        self.best_step = -1  # the step best.safetensors holds (-1: none written yet)
        self.stopped = False  # stop_at_step ended the last run()
        self.budget = Budget(cfg)
        self.rng = np.random.default_rng(cfg.seed)
        if state is not None:
            self.ema.load_state_dict(state["ema"])
            self.opt.load_state_dict(state["opt"])
            self.step = int(state["step"])
            self.best_score = float(state["best_score"])
            self.best_step = int(state.get("best_step", -1))
            self.budget = Budget(cfg, state["budget"])
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = state["rng"]
            self.log(f"resumed {state_path} at step {self.step}")
        self.mix: SourceMix = (
            mix if mix is not None else build_mix(Path(cfg.data_root), cfg.sources, log=self.log)
        )
        self.heldout: HeldOut = self.mix.heldout
        self._batches: Batches | None = None

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.cfg.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def save_state(self) -> None:
        state = {
            "arch": self.arch,
            "arch_config": typing.cast(typing.Any, self.model).config.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "step": self.step,
            "best_score": self.best_score,
            "best_step": self.best_step,
            "budget": self.budget.used,
            "rng": self.rng.bit_generator.state,
            "config": asdict(self.cfg),
        }
        tmp = self.out / "state.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.out / "state.pt")

    def train_step(self) -> float:
        cfg = self.cfg
        if cfg.loader_threads:
            if self._batches is None:
                self._batches = Batches(self.mix, cfg, self.step)
            blur, sharp = self._batches.take(self.step)
        else:
            blur, sharp = self.mix.batch(self.rng, cfg.batch_size, cfg.crop, cfg.sharp_share)
        non_blocking = self.device.type == "cuda"
        blur = blur.to(self.device, non_blocking=non_blocking)
        sharp = sharp.to(self.device, non_blocking=non_blocking)
        lr = lr_at(cfg, self.step, self.budget.progress(self.step))
        for g in self.opt.param_groups:
            g["lr"] = lr
        with self._autocast():
            out = self.model(blur)
        loss = pixel_loss(cfg.pixel, out, sharp)
        if cfg.pixel_weight != 1.0:
            loss = cfg.pixel_weight * loss
        if cfg.fft_weight:
            loss = loss + cfg.fft_weight * frequency_loss(out, sharp)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        _ema_update(self.ema, self.model, cfg.ema if self.step >= cfg.warmup_steps else 0.0)
        self.step += 1
        return float(loss.detach())

    def evaluate(self, loss: float) -> EvalRow:
        model = self.ema if self.cfg.ema else self.model
        model.eval()
        gains, sharp_min = evaluate_heldout(
            model, self.heldout, self.device, self._autocast, full=self.cfg.eval_full
        )
        self.model.train()
        score = float(np.mean([gains[k] for k in self.heldout.select_sets]))
        best = score > self.best_score and sharp_min >= self.cfg.sharp_floor
        row = EvalRow(
            step=self.step,
            cpu_min=self.budget.used["cpu_s"] / 60,
            wall_min=self.budget.used["wall_s"] / 60,
            lr=self.opt.param_groups[0]["lr"],
            loss=loss,
            score=score,
            sharp_min=sharp_min,
            gains=gains,
            best=best,
        )
        self._append(row)
        extra = {"arch_trained_by": "trainers.restore", "step": str(self.step), "score_db": f"{score:.3f}"}
        save_generator(model, self.out / "last.safetensors", extra=extra)
        if best:
            self.best_score = score
            self.best_step = self.step
            save_generator(model, self.out / "best.safetensors", extra=extra)
        return row

    def _append(self, row: EvalRow) -> None:
        path = self.out / "metrics.csv"
        flat = {k: v for k, v in asdict(row).items() if k != "gains"}
        flat.update({f"gain_{k}": v for k, v in row.gains.items()})
        new = not path.is_file()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(flat))
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in flat.items()})

    def run(self) -> float:
        cfg = self.cfg
        (self.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        if self.step == 0:
            row = self.evaluate(float("nan"))
            self.log(self._line(row))
        last = (self.step, self.budget.unit())
        losses: list[float] = []
        self.stopped = False
        try:
            while self.budget.progress(self.step) < 1.0:
                if cfg.stop_at_step and self.step >= cfg.stop_at_step:
                    self.save_state()
                    self.stopped = True
                    self.log(f"stopped at step {self.step} (stop_at_step); --resume continues from state.pt")
                    break
                self.budget.start()
                losses.append(self.train_step())
                self.budget.stop()
                if self.budget.since(self.step, last) or self.budget.progress(self.step) >= 1.0:
                    row = self.evaluate(float(np.mean(losses)))
                    losses = []
                    self.log(self._line(row))
                    self.save_state()
                    last = (self.step, self.budget.unit())
        finally:
            if self._batches is not None:
                self._batches.close()
                self._batches = None
        return self.best_score

    @staticmethod
    def _line(row: EvalRow) -> str:
        gains = " ".join(f"{k} {v:+.3f}" for k, v in row.gains.items())
        return (
            f"step {row.step} cpu {row.cpu_min:.1f} min wall {row.wall_min:.1f} min lr {row.lr:.2e} "
            f"loss {row.loss:.4f} | score {row.score:+.3f} sharp_min {row.sharp_min:.2f} | {gains}"
            f"{' *' if row.best else ''}"
        )


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Train a generator with the restoration recipe (see module doc).")
    p.add_argument("--config", type=Path, help="a JSON file of RecipeConfig fields")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override one field")
    a = p.parse_args(argv)
    d: dict[str, object] = json.loads(a.config.read_text()) if a.config else {}
    for kv in a.set:
        k, _, v = kv.partition("=")
        try:
            d[k] = json.loads(v)
        except json.JSONDecodeError:
            d[k] = v
    cfg = RecipeConfig(**d)  # type: ignore[arg-type]

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    RestoreTrainer(cfg, log=log).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
