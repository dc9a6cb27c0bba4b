"""The training loop: WGAN-GP with a PatchGAN critic, perceptual and pixel losses, evaluation every epoch.

One step = one batch: the generator's output is made once, the critic is updated ``critic_steps`` times on it
(detached, as DeblurGAN does), then the generator once. One optimizer-step path (``_optimizer_step``) and one
mixed-precision path (autocast in ``_autocast``; a GradScaler only for fp16 on CUDA) serve both networks.

Run layout (``RUN`` = ``--out``)::

    RUN/config.json          the resolved TrainConfig
    RUN/metrics.csv          one row per epoch (losses, lr, PSNR/SSIM, the blurry input's own scores, extras)
    RUN/{loss,psnr,ssim}.png curves per epoch
    RUN/last.safetensors     generator after the latest epoch   } ``deblurtool folder --weights FILE``
    RUN/best.safetensors     best epoch by PSNR (SSIM breaks ties)}
    RUN/checkpoints/last.pt  full state for ``--resume`` (every epoch and every ``checkpoint_every`` steps)

Runs unchanged under ``torchrun --nproc_per_node=N -m trainers.train`` (DDP; rank 0 alone evaluates and
writes). Resuming is exact: data order and augmentation are functions of (seed, epoch, index), and the
checkpoint holds every RNG state, so a resumed run ends where an uninterrupted one would.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import shutil
import sys
import time
import typing
from collections.abc import Collection, Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from deblurtool.config import PRECISIONS, RuntimeConfig
from deblurtool.errors import DeblurError, InputError, OutputError
from deblurtool.models.generator import GeneratorConfig, ResnetGenerator
from deblurtool.pairs import find_pairs
from trainers.critic import NORMS, CriticConfig, PatchCritic
from trainers.data import BLUR_DIRS, PairDataset, ResumableSampler, check_pairs, split_pairs
from trainers.evaluate import Scores, evaluate_generator, score_pairs, spread_subset
from trainers.losses import (
    PIXEL_LOSSES,
    VGGPerceptual,
    clip_weights,
    critic_loss,
    generator_adv_loss,
    gradient_penalty,
    pixel_loss,
)

CHECKPOINT_FORMAT = "deblurtool-train-checkpoint-v1"
GAN_MODES = ("wgan-gp", "wgan")
# Settings a resumed run may change (where data lives, how long to go, how it reports); everything else that
# shapes the optimisation comes from the checkpoint.
RESUMABLE_OVERRIDES = (
    "data",
    "out",
    "epochs",
    "workers",
    "log_every",
    "checkpoint_every",
    "stop_at_step",
    "eval_limit",
    "eval_extra",
    "resume",
    "overwrite",
    "device",
)
# Settings of the invocation itself, not of the run: always taken from the command line, even on --resume
# (a run stopped by --stop-at-step N and resumed without it goes on to the end; the device is this machine's).
PER_INVOCATION = ("data", "out", "resume", "overwrite", "stop_at_step", "device")
METRIC_COLUMNS = (
    "epoch", "step", "wall_s", "lr", "g_loss", "g_adv", "g_perceptual", "g_pixel", "d_loss", "w_dist",
    "psnr", "ssim", "input_psnr", "input_ssim", "extra_psnr", "extra_ssim", "extra_input_psnr",
    "extra_input_ssim",
)  # fmt: skip
LOSS_KEYS = ("g_loss", "g_adv", "g_perceptual", "g_pixel", "d_loss", "w_dist")


def _opt(default: object, help: str) -> typing.Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every knob of a run; the defaults reproduce the DeblurGAN report (WGAN-GP, perceptual 100, batch 1,
    256 crops, 200 epochs). ``help`` metadata feeds ``python -m trainers.train --help``."""

    data: str = _opt(
        MISSING, "GOPRO_Large root (train/ and test/) or a pairs folder ({blur,sharp} or SEQ/...)."
    )
    out: str = _opt(MISSING, "Run folder: metrics.csv, plots, best/last.safetensors, checkpoints/.")
    blur: str = _opt("linear", "GoPro blur variant: linear (blur/) or gamma (blur_gamma/).")
    crop: int = _opt(256, "Aligned random crops of this size at full resolution (the default protocol).")
    crop_tries: int = _opt(1, "Each crop is the most textured of N random candidates; 1: plain random crops.")
    resize: int = _opt(0, "Instead of crops, resize whole frames to this size (the report's protocol, 256).")
    epochs: int = _opt(200, "Epochs; the learning rate decays linearly to 0 over the second half.")
    steps_per_epoch: int = _opt(0, "Cap on steps (batches) per epoch; 0: the whole training split.")
    batch_size: int = _opt(1, "Training pairs per step.")
    workers: int = _opt(2, "DataLoader worker processes (0: load in the training process).")
    lr: float = _opt(1e-4, "Adam learning rate of both networks (betas 0.5, 0.999).")
    critic_steps: int = _opt(5, "Critic updates per generator update.")
    gan: str = _opt(
        "wgan-gp", "wgan-gp (gradient penalty) or wgan (the report's plain WGAN, weight clipping)."
    )
    gp_weight: float = _opt(10.0, "Gradient penalty weight (lambda) for wgan-gp.")
    clip_value: float = _opt(0.01, "Critic weight clipping bound for --gan wgan.")
    adv_weight: float = _opt(1.0, "Weight of the adversarial loss; 0 trains without a critic.")
    perceptual_weight: float = _opt(100.0, "Weight of the VGG16 perceptual loss; 0 turns it (and VGG) off.")
    perceptual_layers: str = _opt(
        "block3_conv3", "Comma-separated VGG16 layers (Keras names, e.g. block2_conv2)."
    )
    vgg_weights: str = _opt("imagenet", "imagenet (torchvision's download/cache) or a VGG16 state_dict file.")
    pixel_loss: str = _opt("none", "Pixel loss: none, l1 or mse (not in the report; helps short CPU runs).")
    pixel_weight: float = _opt(0.0, "Weight of the pixel loss.")
    ngf: int = _opt(64, "Generator width.")
    n_blocks: int = _opt(9, "Generator residual blocks.")
    critic_ndf: int = _opt(64, "Critic width.")
    critic_norm: str = _opt(
        "instance", "Critic normalisation: instance, layer, batch or none (see critic.py)."
    )
    init_weights: str = _opt("", "Start the generator from this .safetensors file (fine-tuning).")
    precision: str = _opt("auto", "auto (fp16 on CUDA, bf16 on CPUs with it, else fp32), fp32, bf16 or fp16.")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N (under torchrun: each rank's local GPU).")
    seed: int = _opt(0, "Seed of initialisation, data order, crops and flips.")
    eval_limit: int = _opt(0, "Score this many test pairs (spread over the split) each epoch; 0: all.")
    eval_extra: tuple[str, ...] = _opt(
        (), "Extra pairs folder(s) scored each epoch, not used to pick the best."
    )
    log_every: int = _opt(50, "Print a log line every N steps when stdout is not a terminal.")
    checkpoint_every: int = _opt(500, "Also checkpoint every N steps within an epoch; 0: only at epoch ends.")
    stop_at_step: int = _opt(0, "Checkpoint and stop after this global step (time-sliced runs); 0: never.")
    resume: bool = _opt(False, "Continue the run in --out from its checkpoints/last.pt.")
    overwrite: bool = _opt(False, "Start afresh in an --out that already holds a run (deletes its outputs).")

    def __post_init__(self) -> None:
        self.eval_extra = tuple(str(p) for p in self.eval_extra)
        positive = ("epochs", "batch_size", "crop_tries", "critic_steps", "ngf", "critic_ndf", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise DeblurError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        non_negative = (
            "steps_per_epoch",
            "workers",
            "n_blocks",
            "eval_limit",
            "checkpoint_every",
            "stop_at_step",
            "resize",
            "lr",
            "gp_weight",
            "clip_value",
            "adv_weight",
            "perceptual_weight",
            "pixel_weight",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise DeblurError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        choices = {
            "blur": tuple(BLUR_DIRS),
            "gan": GAN_MODES,
            "pixel_loss": PIXEL_LOSSES,
            "critic_norm": NORMS,
            "precision": PRECISIONS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise DeblurError(
                    f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                    f"got {getattr(self, name)!r}"
                )
        size = self.resize or self.crop
        if size < 16 or size % 4:
            raise DeblurError(f"--crop/--resize must be a multiple of 4 and at least 16, got {size}")
        if self.pixel_loss != "none" and self.pixel_weight == 0:
            raise DeblurError(f"--pixel-loss {self.pixel_loss} needs a --pixel-weight above 0")
        if self.resume and self.overwrite:
            raise DeblurError("--resume and --overwrite contradict each other; pick one")

    @property
    def protocol(self) -> str:
        return "resize" if self.resize else "crop"

    @property
    def size(self) -> int:
        return self.resize or self.crop

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["eval_extra"] = list(self.eval_extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "eval_extra" else v) for k, v in d.items() if k in names})  # type: ignore[arg-type]


def _lr_factor(epochs: int) -> typing.Callable[[int], float]:
    """1 for the first half of the epochs, then linear towards 0 (epoch e trains at (E - e) / (E - E//2))."""
    half = epochs // 2
    return lambda e: min(1.0, (epochs - e) / max(1, epochs - half))


def _rng_state() -> dict[str, object]:
    """Every RNG state as tensors and plain types, so ``torch.load(weights_only=True)`` reads it back."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, typing.Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_torch_save(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(path: Path) -> list[dict[str, str]]:
    """Rows of a run's metrics.csv ([] if there is none yet)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_metrics(path: Path, rows: list[dict[str, object]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(METRIC_COLUMNS))
        writer.writeheader()
        writer.writerows([{k: row.get(k, "") for k in METRIC_COLUMNS} for row in rows])
    os.replace(tmp, path)


@dataclass
class TrainResult:
    out: Path
    epochs_done: int
    global_step: int
    best_epoch: int
    best_psnr: float
    best_ssim: float
    stopped_early: bool


class Trainer:
    """Builds everything from a TrainConfig (and a checkpoint when resuming) and runs the epochs."""

    def __init__(self, cfg: TrainConfig, given: Collection[str] | None = None) -> None:
        """``given``: the names of the settings the user spelled out; on --resume the others keep the
        checkpoint's values. None: every resumable setting is taken from ``cfg``."""
        from deblurtool.devices import precision_notes, resolve_device, resolve_precision

        self.given = None if given is None else frozenset(given)

        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.rank = int(os.environ.get("RANK", "0")) if self.distributed else 0
        self.world = int(os.environ.get("WORLD_SIZE", "1")) if self.distributed else 1
        self.out = Path(cfg.out)
        ckpt = self._prepare_out(cfg)
        if ckpt is not None:
            cfg = self._merge_resumed_config(cfg, ckpt)
        self.cfg = cfg
        device_spec = cfg.device
        if self.distributed and device_spec in ("auto", "cuda") and torch.cuda.is_available():
            device_spec = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        self.device = resolve_device(device_spec)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.amp_dtype = resolve_precision(cfg.precision, self.device)
        for note in precision_notes(self.amp_dtype, self.device, cfg.precision):
            self.log(note)
        # A process group made here is destroyed at the end of run(); a caller's own group is left alone
        # (re-creating the default group in one process can hang gloo, so callers running several Trainers
        # under one torchrun make the group themselves).
        self.owns_process_group = self.distributed and not dist.is_initialized()
        if self.owns_process_group:
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=timedelta(hours=2))

        self.train_split = split_pairs(Path(cfg.data), "train", blur=cfg.blur)
        check_pairs(self.train_split.pairs, min_size=0 if cfg.resize else cfg.crop)
        self.dataset = PairDataset(
            self.train_split.pairs,
            protocol=cfg.protocol,
            size=cfg.size,
            seed=cfg.seed,
            crop_tries=cfg.crop_tries,
        )
        self.sampler = ResumableSampler(self.dataset, num_replicas=self.world, rank=self.rank, seed=cfg.seed)
        self.steps_per_epoch = self.sampler.num_samples // cfg.batch_size
        if cfg.steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.steps_per_epoch)
        if self.steps_per_epoch < 1:
            raise InputError(
                f"{len(self.dataset)} training pairs cannot fill a batch of {cfg.batch_size} "
                f"on {self.world} process(es)",
                cfg.data,
            )

        # Resolve the evaluation data now: a missing test split should fail here, not after the first epoch.
        self.test_split = split_pairs(Path(cfg.data), "test", blur=cfg.blur)
        self.extra_pairs = [
            p for d in cfg.eval_extra for p in find_pairs(Path(d), blur_dir=BLUR_DIRS[cfg.blur])
        ]

        torch.manual_seed(cfg.seed)
        self._build_models(cfg, ckpt)
        self.epoch, self.step_in_epoch, self.global_step, self.wall_s = 0, 0, 0, 0.0
        self.sums: dict[str, float] = dict.fromkeys(LOSS_KEYS, 0.0)
        self.best = {"epoch": 0, "psnr": -float("inf"), "ssim": -float("inf")}
        self.baselines: dict[str, list[float]] = {}
        torch.manual_seed(cfg.seed + self.rank)  # per-rank randomness (gradient-penalty mixing) from here on
        if ckpt is not None:
            self._load_state(ckpt)
        elif cfg.overwrite:
            self._clear_outputs()

    # ---------------------------------------------------------------- set-up
    def log(self, message: str) -> None:
        if self.rank == 0:
            print(message, flush=True)

    def _prepare_out(self, cfg: TrainConfig) -> dict[str, typing.Any] | None:
        ckpt_path = self.out / "checkpoints" / "last.pt"
        if cfg.resume:
            if not ckpt_path.is_file():
                raise InputError("no checkpoint to resume from (expected checkpoints/last.pt)", self.out)
            try:
                ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            except Exception as e:
                raise InputError(f"cannot read the checkpoint ({type(e).__name__}: {e})", ckpt_path) from None
            if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
                raise InputError(f"not a {CHECKPOINT_FORMAT} checkpoint", ckpt_path)
            return ckpt
        if any(p.exists() for p in self._run_outputs()) and not cfg.overwrite:
            raise OutputError(
                "already holds a training run; pass --resume to continue it or --overwrite to start afresh",
                self.out,
            )
        return None

    def _run_outputs(self) -> list[Path]:
        names = ("metrics.csv", "best.safetensors", "last.safetensors", "checkpoints", "config.json")
        return [self.out / n for n in names]

    def _clear_outputs(self) -> None:
        """--overwrite: remove the old run's outputs (after everything else was checked, so a typo in the
        data path does not cost the old run), so nothing stale is taken for this run's."""
        if self.rank == 0 and not self.cfg.resume:
            for p in self._run_outputs():
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        self._barrier()

    def _merge_resumed_config(self, cfg: TrainConfig, ckpt: dict[str, typing.Any]) -> TrainConfig:
        saved = TrainConfig.from_dict(ckpt["config"])
        # With ``given`` known (the CLIs pass it), a resumable setting left off the command line keeps the
        # checkpoint's value: `--resume` alone must not quietly reset --epochs or drop --eval-extra.
        given = self.given
        overrides = {
            name: getattr(cfg, name)
            for name in RESUMABLE_OVERRIDES
            if given is None or name in given or name in PER_INVOCATION
        }
        ignored = [
            n
            for n in asdict(cfg)
            if n not in RESUMABLE_OVERRIDES
            and (given is None or n in given)
            and getattr(cfg, n) != getattr(saved, n)
        ]
        if ignored:
            self.log(
                f"resuming: keeping the checkpoint's {', '.join(ignored)} "
                f"(only {', '.join(RESUMABLE_OVERRIDES)} may change on --resume)"
            )
        return replace(saved, **overrides)

    def _build_models(self, cfg: TrainConfig, ckpt: dict[str, typing.Any] | None) -> None:
        if ckpt is not None:
            self.generator = ResnetGenerator(GeneratorConfig.from_dict(ckpt["generator_config"]))
        elif cfg.init_weights:
            from deblurtool.models.weights import load_generator

            self.generator = load_generator(Path(cfg.init_weights), verify=False).train()
            self.log(f"generator initialised from {cfg.init_weights} ({self.generator.config.to_dict()})")
        else:
            self.generator = ResnetGenerator(GeneratorConfig(ngf=cfg.ngf, n_blocks=cfg.n_blocks))
        self.generator.to(self.device).train()
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=betas)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, _lr_factor(cfg.epochs))
        fp16_cuda = self.device.type == "cuda" and self.amp_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16_cuda)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16_cuda)
        self.critic: PatchCritic | None = None
        self.critic_ddp: nn.Module | None = None
        if cfg.adv_weight > 0:
            self.critic = (
                PatchCritic(CriticConfig(ndf=cfg.critic_ndf, norm=cfg.critic_norm)).to(self.device).train()
            )
            self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, betas=betas)
            self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, _lr_factor(cfg.epochs))
            self.critic_ddp = self._wrap(self.critic)
        self.generator_ddp = self._wrap(self.generator)
        self.perceptual: VGGPerceptual | None = None
        if cfg.perceptual_weight > 0:
            layers = [s.strip() for s in cfg.perceptual_layers.split(",") if s.strip()]
            self.perceptual = VGGPerceptual(layers, cfg.vgg_weights).to(self.device)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """DDP wrapper under torchrun; the unwrapped model stays beside it for evaluation and export."""
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, object]:
        rng = _rng_state()
        rngs: list[object] = [rng]
        if self.distributed:
            rngs = [None] * self.world
            dist.all_gather_object(rngs, rng)
        state: dict[str, object] = {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            "generator_config": self.generator.config.to_dict(),
            "generator": self.generator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "rng": rngs,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "sampler": {"epoch": self.epoch, "start": self.step_in_epoch * self.cfg.batch_size},
            "sums": dict(self.sums),
            "wall_s": self.wall_s,
            "best": dict(self.best),
            "baselines": dict(self.baselines),
        }
        if self.critic is not None:
            state |= {
                "critic": self.critic.state_dict(),
                "opt_d": self.opt_d.state_dict(),
                "sched_d": self.sched_d.state_dict(),
            }
        return state

    def _load_state(self, ckpt: dict[str, typing.Any]) -> None:
        self.generator.load_state_dict(ckpt["generator"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.sched_g.load_state_dict(ckpt["sched_g"])
        self.scaler_g.load_state_dict(ckpt["scaler_g"])
        self.scaler_d.load_state_dict(ckpt["scaler_d"])
        if self.critic is not None:
            self.critic.load_state_dict(ckpt["critic"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
            self.sched_d.load_state_dict(ckpt["sched_d"])
        for sched in (self.sched_g, *([self.sched_d] if self.critic is not None else [])):
            sched.lr_lambdas = [_lr_factor(self.cfg.epochs)]  # --epochs may grow on resume
            for group, base in zip(sched.optimizer.param_groups, sched.base_lrs, strict=True):
                group["lr"] = base * sched.lr_lambdas[0](sched.last_epoch)
        self.epoch, self.step_in_epoch = int(ckpt["epoch"]), int(ckpt["step_in_epoch"])
        self.global_step, self.wall_s = int(ckpt["global_step"]), float(ckpt["wall_s"])
        self.sums = {k: float(v) for k, v in ckpt["sums"].items()}
        self.best = dict(ckpt["best"])
        self.baselines = {k: [float(x) for x in v] for k, v in ckpt["baselines"].items()}
        rngs = ckpt["rng"]
        if len(rngs) == self.world:
            _set_rng_state(rngs[self.rank])
        else:
            self.log(
                f"resuming on {self.world} process(es) from a {len(rngs)}-process run: RNG streams re-seeded"
            )
            torch.manual_seed(self.cfg.seed + self.rank + self.global_step)
        if self.rank == 0:  # rows of epochs the checkpoint has not finished are redone: drop them
            path = self.out / "metrics.csv"
            rows = [r for r in read_metrics(path) if int(r["epoch"]) <= self.epoch]
            _write_metrics(path, rows)  # type: ignore[arg-type]
        self.log(f"resumed {self.out} at epoch {self.epoch + 1}, step {self.global_step}")

    def save_checkpoint(self) -> None:
        state = self.state_dict()  # every rank takes part (RNG gather)
        if self.rank == 0:
            _atomic_torch_save(state, self.out / "checkpoints" / "last.pt")
        self._barrier()

    def _barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    # ---------------------------------------------------------------- one step
    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.amp_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @staticmethod
    def _optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        """The one optimizer-step path: (scaled) backward, (unscaled, inf-checked) step, scale update."""
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    def train_step(self, blur_pm1: torch.Tensor, sharp_pm1: torch.Tensor) -> dict[str, float]:
        """One batch (Nx3xSxS in [-1, 1]): ``critic_steps`` critic updates, then one generator update."""
        cfg = self.cfg
        blur_pm1 = blur_pm1.to(self.device, non_blocking=True)
        sharp_pm1 = sharp_pm1.to(self.device, non_blocking=True)
        with self._autocast():
            fake_pm1 = self.generator_ddp(blur_pm1)
        logs = dict.fromkeys(LOSS_KEYS, 0.0)
        if self.critic is not None and self.critic_ddp is not None:
            self.critic.requires_grad_(True)
            fake_d = fake_pm1.detach()
            for _ in range(cfg.critic_steps):
                with self._autocast():
                    w_loss = critic_loss(self.critic_ddp(sharp_pm1), self.critic_ddp(fake_d))
                    d_loss = w_loss
                    if cfg.gan == "wgan-gp" and cfg.gp_weight > 0:
                        gp = gradient_penalty(self.critic_ddp, sharp_pm1, fake_d, scaler=self.scaler_d)
                        d_loss = w_loss + cfg.gp_weight * gp
                self._optimizer_step(d_loss, self.opt_d, self.scaler_d)
                if cfg.gan == "wgan":
                    clip_weights(self.critic, cfg.clip_value)
                logs["d_loss"] += d_loss.item() / cfg.critic_steps
                logs["w_dist"] -= w_loss.item() / cfg.critic_steps
            # The generator step backpropagates through the critic but must not train it (nor sync it under
            # DDP: the unwrapped critic is called, its parameters identical on every rank).
            self.critic.requires_grad_(False)
        with self._autocast():
            total = fake_pm1.new_zeros((), dtype=torch.float32)
            if self.critic is not None:
                adv = generator_adv_loss(self.critic(fake_pm1))
                total = total + cfg.adv_weight * adv
                logs["g_adv"] = adv.item()
            if self.perceptual is not None:
                perc = self.perceptual(fake_pm1, sharp_pm1)
                total = total + cfg.perceptual_weight * perc
                logs["g_perceptual"] = perc.item()
            if cfg.pixel_loss != "none":
                pix = pixel_loss(cfg.pixel_loss, fake_pm1, sharp_pm1)
                total = total + cfg.pixel_weight * pix
                logs["g_pixel"] = pix.item()
        self._optimizer_step(total, self.opt_g, self.scaler_g)
        logs["g_loss"] = total.item()
        return logs

    # ---------------------------------------------------------------- epochs
    def _loader(self, epoch: int) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        self.dataset.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        self.sampler.set_start(self.step_in_epoch * self.cfg.batch_size)
        return DataLoader(
            self.dataset,
            batch_size=self.cfg.batch_size,
            sampler=self.sampler,
            num_workers=self.cfg.workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            # A private generator: creating the loader must not consume the global RNG (exact resume).
            generator=torch.Generator().manual_seed(self.cfg.seed + epoch),
        )

    def run(self) -> TrainResult:
        cfg = self.cfg
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(self.out / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
            self.log(
                f"training on {self.train_split.description}, {cfg.protocol} {cfg.size}, "
                f"{self.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, {self.device} "
                f"{str(self.amp_dtype).removeprefix('torch.')}, {self.world} process(es)"
            )
        stopped = bool(cfg.stop_at_step) and self.global_step >= cfg.stop_at_step
        if stopped:
            self.log(
                f"already at step {self.global_step} >= --stop-at-step {cfg.stop_at_step}: nothing to do"
            )
        with _Reporter(self, enabled=self.rank == 0) as reporter:
            while self.epoch < cfg.epochs and not stopped:
                stopped = self._run_epoch(reporter)
        if self.owns_process_group:
            dist.destroy_process_group()
        return TrainResult(
            self.out,
            self.epoch,
            self.global_step,
            int(self.best["epoch"]),
            float(self.best["psnr"]),
            float(self.best["ssim"]),
            stopped,
        )

    def _run_epoch(self, reporter: _Reporter) -> bool:
        """Train the rest of the current epoch; True when ``stop_at_step`` ended the run early."""
        cfg = self.cfg
        reporter.start_epoch(self.epoch, self.step_in_epoch, self.steps_per_epoch)
        tic = time.perf_counter()
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = iter(self._loader(self.epoch))
        while self.step_in_epoch < self.steps_per_epoch:
            blur_pm1, sharp_pm1 = next(batches)
            logs = self.train_step(blur_pm1, sharp_pm1)
            self.step_in_epoch += 1
            self.global_step += 1
            for k in LOSS_KEYS:
                self.sums[k] += logs[k]
            reporter.step(logs)
            mid_epoch = self.step_in_epoch < self.steps_per_epoch
            stop = bool(cfg.stop_at_step) and self.global_step >= cfg.stop_at_step
            if mid_epoch and (
                stop or (cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0)
            ):
                self.wall_s += time.perf_counter() - tic
                tic = time.perf_counter()
                self.save_checkpoint()
                if stop:
                    self.log(f"stopped at step {self.global_step} (--stop-at-step); --resume continues")
                    return True
        del batches
        self.wall_s += time.perf_counter() - tic
        self._end_epoch()
        return bool(cfg.stop_at_step) and self.global_step >= cfg.stop_at_step

    def _end_epoch(self) -> None:
        """Scheduler step, evaluation and outputs (rank 0), then the epoch-end checkpoint."""
        tic = time.perf_counter()
        lr = self.opt_g.param_groups[0]["lr"]
        self.sched_g.step()
        if self.critic is not None:
            self.sched_d.step()
        means = {k: v / self.step_in_epoch for k, v in self.sums.items()}
        self.epoch += 1
        if self.rank == 0:
            row: dict[str, object] = {"epoch": self.epoch, "step": self.global_step, "lr": f"{lr:.6g}"}
            row |= {k: f"{v:.6g}" for k, v in means.items()}
            fields_, scores = self._evaluate()
            row |= fields_
            self.wall_s += time.perf_counter() - tic
            row["wall_s"] = f"{self.wall_s:.1f}"
            self._write_outputs(row, scores)
        self.step_in_epoch = 0
        self.sums = dict.fromkeys(LOSS_KEYS, 0.0)
        self.save_checkpoint()

    def _evaluate(self) -> tuple[dict[str, object], Scores]:
        """Scores of the generator on the test split (and extras) and the metrics-row fields they fill."""
        cfg, test = self.cfg, self.test_split
        test_pairs = spread_subset(test.pairs, cfg.eval_limit)
        extra_pairs = spread_subset(self.extra_pairs, cfg.eval_limit)
        resize = cfg.resize or None
        if "test" not in self.baselines:  # the blurry input's own scores, once per run
            base = score_pairs(test_pairs, None, resize=resize)
            self.baselines["test"] = [base.psnr, base.ssim]
            note = " (no split folders: these are the training pairs)" if test.shared else ""
            self.log(
                f"input (blurry) on {base.count} test pairs{note}: PSNR {base.psnr:.3f} dB, "
                f"SSIM {base.ssim:.4f} ({cfg.protocol} protocol)"
            )
            if extra_pairs:
                ex = score_pairs(extra_pairs, None, resize=resize)
                self.baselines["extra"] = [ex.psnr, ex.ssim]
                self.log(
                    f"input (blurry) on {ex.count} extra pairs: PSNR {ex.psnr:.3f} dB, SSIM {ex.ssim:.4f}"
                )
        runtime = RuntimeConfig(device=str(self.device), precision="auto")
        scores: Scores = evaluate_generator(self.generator, test_pairs, runtime=runtime, resize=resize)
        row: dict[str, object] = {
            "psnr": f"{scores.psnr:.4f}",
            "ssim": f"{scores.ssim:.5f}",
            "input_psnr": f"{self.baselines['test'][0]:.4f}",
            "input_ssim": f"{self.baselines['test'][1]:.5f}",
        }
        if extra_pairs:
            ex = evaluate_generator(self.generator, extra_pairs, runtime=runtime, resize=resize)
            row |= {
                "extra_psnr": f"{ex.psnr:.4f}",
                "extra_ssim": f"{ex.ssim:.5f}",
                "extra_input_psnr": f"{self.baselines['extra'][0]:.4f}",
                "extra_input_ssim": f"{self.baselines['extra'][1]:.5f}",
            }
        self.generator.train()  # in case evaluation touched the mode; it must keep training
        return row, scores

    def _write_outputs(self, row: dict[str, object], scores: Scores) -> None:
        from deblurtool.models.weights import save_generator
        from trainers.plots import save_line_plot

        meta = {
            "epoch": str(self.epoch),
            "step": str(self.global_step),
            "psnr": f"{scores.psnr:.4f}",
            "ssim": f"{scores.ssim:.5f}",
            "eval_pairs": str(scores.count),
            "data": f"{self.train_split.description}; {self.cfg.protocol} {self.cfg.size}",
            "train_config": json.dumps(self.cfg.to_dict(), sort_keys=True),
        }
        save_generator(self.generator, self.out / "last.safetensors", extra=meta)
        if (scores.psnr, scores.ssim) > (self.best["psnr"], self.best["ssim"]):
            self.best = {"epoch": self.epoch, "psnr": scores.psnr, "ssim": scores.ssim}
            save_generator(self.generator, self.out / "best.safetensors", extra=meta)
        path = self.out / "metrics.csv"
        rows = [*read_metrics(path), row]
        _write_metrics(path, rows)  # type: ignore[arg-type]
        epochs = [float(r["epoch"]) for r in rows]

        def col(name: str) -> list[float]:
            return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in rows]  # type: ignore[arg-type]

        save_line_plot(
            self.out / "loss.png", {"g_loss": (epochs, col("g_loss"))}, title="generator loss", xlabel="epoch"
        )
        for metric in ("psnr", "ssim"):
            series = {metric: (epochs, col(metric)), "input": (epochs, col(f"input_{metric}"))}
            if any(r.get(f"extra_{metric}") for r in rows):
                series[f"extra_{metric}"] = (epochs, col(f"extra_{metric}"))
            save_line_plot(self.out / f"{metric}.png", series, title=f"test {metric.upper()}", xlabel="epoch")
        self.log(
            f"epoch {self.epoch}/{self.cfg.epochs} step {self.global_step}: g_loss {row['g_loss']} "
            f"d_loss {row['d_loss']} | PSNR {row['psnr']} dB SSIM {row['ssim']} "
            f"(input {row['input_psnr']} / {row['input_ssim']}) | best epoch {self.best['epoch']}"
        )


class _Reporter:
    """A rich progress bar with running losses on a terminal, else a plain line every ``log_every`` steps."""

    def __init__(self, trainer: Trainer, *, enabled: bool) -> None:
        self.trainer, self.enabled = trainer, enabled
        self.tty = enabled and sys.stdout.isatty()
        self.progress: typing.Any = None
        self.task: typing.Any = None
        self.running: dict[str, float] = {}

    def __enter__(self) -> _Reporter:
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"),
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def start_epoch(self, epoch: int, done: int, total: int) -> None:
        self.running = {}
        if self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            desc = f"epoch {epoch + 1}/{self.trainer.cfg.epochs}"
            self.task = self.progress.add_task(desc, total=total, completed=done, losses="")

    def step(self, logs: dict[str, float]) -> None:
        if not self.enabled:
            return
        for k, v in logs.items():  # exponential running means: readable, and cheap
            self.running[k] = v if k not in self.running else 0.9 * self.running[k] + 0.1 * v
        shown = " ".join(
            f"{k} {self.running[k]:.4g}" for k in ("g_loss", "d_loss", "w_dist") if k in self.running
        )
        t = self.trainer
        if self.progress is not None:
            self.progress.update(self.task, advance=1, losses=shown)
        elif t.global_step % t.cfg.log_every == 0:
            print(
                f"epoch {t.epoch + 1} step {t.global_step} ({t.step_in_epoch}/{t.steps_per_epoch}): {shown}",
                flush=True,
            )


def train(cfg: TrainConfig, given: Collection[str] | None = None) -> TrainResult:
    """Run (or resume) the training a TrainConfig describes (``given``: see ``Trainer``)."""
    return Trainer(cfg, given).run()


def _parser(*, defaults: bool = True) -> argparse.ArgumentParser:
    """The module's CLI; ``defaults=False`` leaves options not on the command line out of the namespace."""
    parser = argparse.ArgumentParser(
        prog="python -m trainers.train",
        description=__doc__.split("\n\n")[0],
        argument_default=None if defaults else argparse.SUPPRESS,
    )
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        flag, help_text = f"--{f.name.replace('_', '-')}", f.metadata["help"]
        if f.name == "data":
            parser.add_argument("data", help=help_text)
        elif hints[f.name] is bool:
            parser.add_argument(flag, action="store_true", help=help_text)
        elif f.name == "eval_extra":
            extra = {"default": []} if defaults else {}
            parser.add_argument(flag, action="append", help=help_text + " Repeatable.", **extra)
        else:
            required = f.default is MISSING
            parser.add_argument(
                flag,
                type=hints[f.name],
                required=required,
                **({"default": None if required else f.default} if defaults else {}),
                help=f"{help_text} (default: %(default)s)",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m trainers.train DATA --out RUN [options]`` (and ``torchrun ... -m trainers.train``)."""
    args = vars(_parser().parse_args(argv))
    given = set(vars(_parser(defaults=False).parse_args(argv)))  # the options spelled out
    try:
        result = train(TrainConfig(**args), given)
    except DeblurError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"done: {result.epochs_done} epochs, best epoch {result.best_epoch} "
            f"({result.best_psnr:.3f} dB, SSIM {result.best_ssim:.4f}) in {result.out}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
