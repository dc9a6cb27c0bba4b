"""``deblurtool train --arch nafunet``: the restoration recipe (``trainers.restore``) run from a TrainConfig.

The run folder follows the rules of the GAN recipe's: a folder holding a run is refused unless --resume
(continue from ``state.pt``, with the run's own settings for every option left off the command line, see
``trainers.config.merge_resumed``) or --overwrite (its outputs removed once the data has been read). The
``auto`` device and precision are resolved here: CUDA when present; bf16 autocast where the device runs it
natively (fp16 on older GPUs, fp32 on a CPU where bf16 is not faster).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import torch

from deblurtool.errors import InputError, OutputError
from deblurtool.fsutil import write_bytes
from trainers.config import TrainConfig, merge_resumed
from trainers.mix import build_mix
from trainers.restore import RecipeConfig, RestoreTrainer

RUN_OUTPUTS = (
    "state.pt",
    "metrics.csv",
    "config.json",
    "train_config.json",
    "best.safetensors",
    "last.safetensors",
)


@dataclass(frozen=True)
class RestoreResult:
    out: Path
    step: int
    stopped_early: bool
    best_step: int
    best_score: float  # mean held-out gain (dB) of best.safetensors
    best_path: Path | None  # None until an evaluation passed the sharp-input floor
    last_path: Path | None


def resolve_precision(spec: str, device: torch.device) -> str:
    """The autocast precision name (bf16 | fp16 | fp32) for ``spec`` on ``device``."""
    from deblurtool.devices import cuda_supports_bf16, precision_name
    from deblurtool.devices import resolve_precision as resolve

    if spec == "auto" and device.type == "cuda":
        return "bf16" if cuda_supports_bf16(device) else "fp16"
    return precision_name(resolve(spec, device))


def recipe_config(cfg: TrainConfig) -> RecipeConfig:
    """The RecipeConfig of a validated nafunet TrainConfig (device and precision resolved)."""
    from deblurtool.devices import resolve_device

    device = resolve_device(cfg.device)
    return RecipeConfig(
        out=cfg.out,
        arch=cfg.arch,
        arch_config=json.loads(cfg.arch_config) if cfg.arch_config.strip() else {},
        init=cfg.init_weights,
        data_root=cfg.data[0],
        sources=cfg.sources,
        crop=cfg.crop,
        batch_size=cfg.batch_size,
        sharp_share=cfg.sharp_share,
        lr=cfg.lr,
        min_lr=cfg.min_lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps,
        grad_clip=cfg.grad_clip,
        ema=cfg.ema,
        pixel=cfg.pixel_loss,
        pixel_weight=cfg.pixel_weight,
        fft_weight=cfg.freq_weight,
        precision=resolve_precision(cfg.precision, device),
        device=str(device),
        threads=cfg.threads,
        budget_steps=cfg.steps,
        budget_cpu_min=cfg.cpu_minutes,
        budget_wall_min=cfg.minutes,
        eval_every_min=cfg.eval_every_minutes,
        eval_every_steps=cfg.eval_every_steps,
        eval_full=cfg.eval_full,
        sharp_floor=cfg.sharp_floor,
        seed=cfg.seed,
        stop_at_step=cfg.stop_at_step,
        loader_threads=cfg.workers,
    )


def train_restore(
    cfg: TrainConfig, given: Collection[str] | None = None, *, log: Callable[[str], None] = print
) -> RestoreResult:
    """Run (or resume) the nafunet recipe a TrainConfig describes; ``given`` as for ``trainers.train``."""
    out = Path(cfg.out)
    saved = out / "train_config.json"
    if cfg.resume:
        if not (out / "state.pt").is_file():
            raise InputError("no state.pt to resume (the run has not saved its state yet)", out)
        if saved.is_file():
            cfg = merge_resumed(cfg, json.loads(saved.read_text(encoding="utf-8")), given, log=log)
    elif any((out / n).exists() for n in RUN_OUTPUTS) and not cfg.overwrite:
        raise OutputError(
            "already holds a training run; pass --resume to continue it or --overwrite to start afresh", out
        )
    recipe = recipe_config(cfg)
    mix = build_mix(Path(recipe.data_root), recipe.sources, log=log)  # the data is read before anything goes
    if cfg.overwrite:
        for name in RUN_OUTPUTS:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(saved, (json.dumps(cfg.to_dict(), indent=2) + "\n").encode("utf-8"))
    log(
        f"training {cfg.arch} on {recipe.device} {recipe.precision}, "
        f"batch {recipe.batch_size} of {recipe.crop}px crops"
    )
    trainer = RestoreTrainer(recipe, log=log, mix=mix)
    trainer.run()
    best, last = out / "best.safetensors", out / "last.safetensors"
    return RestoreResult(
        out,
        trainer.step,
        trainer.stopped,
        trainer.best_step,
        trainer.best_score,
        best if trainer.best_step >= 0 and best.is_file() else None,
        last if last.is_file() else None,
    )
