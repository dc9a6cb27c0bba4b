"""The training loop: WGAN-GP with a PatchGAN critic, perceptual, pixel and frequency losses, evaluation every
epoch.

One step = one batch: the generator's output is made once, the critic is updated ``critic_steps`` times on it
(detached, as DeblurGAN does), then the generator once. One optimizer-step path (``_optimizer_step``) and one
mixed-precision path (autocast in ``_autocast``; a GradScaler only for fp16 on CUDA) serve both networks.
What a run writes is ``trainers.run_files``'s; the checkpoint is ``trainers.checkpoint``'s.

Runs unchanged under ``torchrun --nproc_per_node=N -m deblurtool train ...`` (DDP; rank 0 alone evaluates
and writes). Resuming is exact: data order and augmentation are functions of (seed, epoch, index), and the
checkpoint holds every RNG state, so a resumed run ends where an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import json
import time
import typing
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from deblurtool.errors import InputError
from deblurtool.evaluate import Scores
from deblurtool.models.generator import GeneratorConfig, ResnetGenerator
from trainers.checkpoint import rng_state, save_checkpoint, set_rng_state
from trainers.config import TrainConfig, merge_resumed
from trainers.critic import CriticConfig, PatchCritic
from trainers.data import ResumableSampler, build_training_set
from trainers.distributed import distributed_setup
from trainers.evaluate import EpochEvaluator
from trainers.losses import (
    VGGPerceptual,
    clip_weights,
    critic_loss,
    frequency_loss,
    generator_adv_loss,
    gradient_penalty,
    pixel_loss,
)
from trainers.progress import Reporter
from trainers.run_files import (
    EpochRow,
    append_metrics,
    clear_run_outputs,
    drop_unfinished_epochs,
    epoch_line,
    export_generator,
    plot_curves,
    prepare_run_folder,
    write_config,
)

LOSS_KEYS = ("g_loss", "g_adv", "g_perceptual", "g_pixel", "g_freq", "d_loss", "w_dist")


def lr_factor(epochs: int) -> typing.Callable[[int], float]:
    """1 for the first half of the epochs, then linear towards 0 (epoch e trains at (E - e) / (E - E//2))."""
    half = epochs // 2
    return lambda e: min(1.0, (epochs - e) / max(1, epochs - half))


@dataclass
class TrainResult:
    out: Path
    epochs_done: int
    global_step: int
    best_epoch: int
    best_psnr: float
    best_ssim: float
    stopped_early: bool
    best_path: Path | None = None  # RUN/best.safetensors once an epoch of this run has written it


class Trainer:
    """Builds everything from a TrainConfig (and a checkpoint when resuming) and runs the epochs."""

    def __init__(self, cfg: TrainConfig, given: Collection[str] | None = None) -> None:
        """``given``: the names of the settings the user spelled out; on --resume the others keep the
        checkpoint's values. None: every resumable setting is taken from ``cfg``."""
        from deblurtool.devices import precision_notes, resolve_device, resolve_precision

        self.given = None if given is None else frozenset(given)

        place = distributed_setup()
        self.distributed, self.rank, self.world = place.distributed, place.rank, place.world
        self.out = Path(cfg.out)
        ckpt = prepare_run_folder(self.out, resume=cfg.resume, overwrite=cfg.overwrite)
        if ckpt is not None:
            cfg = merge_resumed(cfg, ckpt["config"], self.given, log=self.log)
        self.cfg = cfg
        device_spec = cfg.device
        if self.distributed and device_spec in ("auto", "cuda") and torch.cuda.is_available():
            device_spec = f"cuda:{place.local_rank}"
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

        self.train_set = build_training_set(cfg, world=self.world)
        self.dataset = self.train_set.dataset
        self.train_description = self.train_set.description
        self.sampler = ResumableSampler(self.dataset, num_replicas=self.world, rank=self.rank, seed=cfg.seed)
        self.steps_per_epoch = self.sampler.num_samples // cfg.batch_size
        if cfg.steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.steps_per_epoch)
        if self.steps_per_epoch < 1:
            raise InputError(
                f"{self.train_set.n_pairs} training pairs cannot fill a batch of {cfg.batch_size} "
                f"on {self.world} process(es)",
                cfg.data[0],
            )

        # Resolve the evaluation data now: a missing test split should fail here, not after the first epoch.
        self.evaluator = EpochEvaluator(cfg, log=self.log)

        torch.manual_seed(cfg.seed)
        self._build_models(cfg, ckpt)
        self.epoch, self.step_in_epoch, self.global_step, self.wall_s = 0, 0, 0, 0.0
        self.sums: dict[str, float] = dict.fromkeys(LOSS_KEYS, 0.0)
        self.best = {"epoch": 0, "psnr": -float("inf"), "ssim": -float("inf")}
        torch.manual_seed(cfg.seed + self.rank)  # per-rank randomness (gradient-penalty mixing) from here on
        if ckpt is not None:
            self._load_state(ckpt)
        elif cfg.overwrite:
            self._clear_outputs()

    # ---------------------------------------------------------------- set-up
    def log(self, message: str) -> None:
        if self.rank == 0:
            print(message, flush=True)

    def _clear_outputs(self) -> None:
        """--overwrite: remove the old run's outputs (after everything else was checked, so a typo in the
        data path does not cost the old run), so nothing stale is taken for this run's."""
        if self.rank == 0 and not self.cfg.resume:
            clear_run_outputs(self.out)
        self._barrier()

    def _build_models(self, cfg: TrainConfig, ckpt: dict[str, typing.Any] | None) -> None:
        if ckpt is not None:
            self.generator = ResnetGenerator(GeneratorConfig.from_dict(ckpt["generator_config"]))
        elif cfg.init_weights:
            from deblurtool.models import registry
            from deblurtool.models.weights import load_generator

            loaded = load_generator(Path(cfg.init_weights), verify=False).train()
            if not isinstance(loaded, ResnetGenerator):
                raise InputError(
                    f"holds a {registry.arch_of(loaded)} generator: --arch resnet9 fine-tunes a ResNet-9 "
                    f"(train it with --arch {registry.arch_of(loaded)})",
                    cfg.init_weights,
                )
            self.generator = loaded
            self.log(f"generator initialised from {cfg.init_weights} ({self.generator.config.to_dict()})")
        else:
            self.generator = ResnetGenerator(GeneratorConfig(ngf=cfg.ngf, n_blocks=cfg.n_blocks))
        self.generator.to(self.device).train()
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=betas)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, lr_factor(cfg.epochs))
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
            self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, lr_factor(cfg.epochs))
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
        rng = rng_state()
        rngs: list[object] = [rng]
        if self.distributed:
            rngs = [None] * self.world
            dist.all_gather_object(rngs, rng)
        state: dict[str, object] = {
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
            "baselines": dict(self.evaluator.baselines),
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
            sched.lr_lambdas = [lr_factor(self.cfg.epochs)]  # --epochs may grow on resume
            for group, base in zip(sched.optimizer.param_groups, sched.base_lrs, strict=True):
                group["lr"] = base * sched.lr_lambdas[0](sched.last_epoch)
        self.epoch, self.step_in_epoch = int(ckpt["epoch"]), int(ckpt["step_in_epoch"])
        self.global_step, self.wall_s = int(ckpt["global_step"]), float(ckpt["wall_s"])
        self.sums = dict.fromkeys(LOSS_KEYS, 0.0) | {k: float(v) for k, v in ckpt["sums"].items()}
        self.best = dict(ckpt["best"])
        self.evaluator.baselines = {k: [float(x) for x in v] for k, v in ckpt["baselines"].items()}
        rngs = ckpt["rng"]
        if len(rngs) == self.world:
            set_rng_state(rngs[self.rank])
        else:
            self.log(
                f"resuming on {self.world} process(es) from a {len(rngs)}-process run: RNG streams re-seeded"
            )
            torch.manual_seed(self.cfg.seed + self.rank + self.global_step)
        if self.rank == 0:
            drop_unfinished_epochs(self.out / "metrics.csv", self.epoch)
        self.log(f"resumed {self.out} at epoch {self.epoch + 1}, step {self.global_step}")

    def save_checkpoint(self) -> None:
        state = self.state_dict()  # every rank takes part (RNG gather)
        if self.rank == 0:
            save_checkpoint(state, self.out / "checkpoints" / "last.pt")
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
            if cfg.freq_weight > 0:
                freq = frequency_loss(fake_pm1, sharp_pm1)
                total = total + cfg.freq_weight * freq
                logs["g_freq"] = freq.item()
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
            write_config(self.out, cfg.to_dict())
            self.log(
                f"training on {self.train_description}, {cfg.protocol} {cfg.size}, "
                f"{self.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, {self.device} "
                f"{str(self.amp_dtype).removeprefix('torch.')}, {self.world} process(es)"
            )
        stopped = bool(cfg.stop_at_step) and self.global_step >= cfg.stop_at_step
        if stopped:
            self.log(
                f"already at step {self.global_step} >= --stop-at-step {cfg.stop_at_step}: nothing to do"
            )
        with Reporter(self, enabled=self.rank == 0) as reporter:
            while self.epoch < cfg.epochs and not stopped:
                stopped = self._run_epoch(reporter)
        if self.owns_process_group:
            dist.destroy_process_group()
        best_path = self.out / "best.safetensors"
        return TrainResult(
            self.out,
            self.epoch,
            self.global_step,
            int(self.best["epoch"]),
            float(self.best["psnr"]),
            float(self.best["ssim"]),
            stopped,
            best_path if self.best["epoch"] and best_path.is_file() else None,
        )

    def _run_epoch(self, reporter: Reporter) -> bool:
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
            epoch_scores, scores = self.evaluator.evaluate(self.generator, self.device)
            self.generator.train()  # in case evaluation touched the mode; it must keep training
            self.wall_s += time.perf_counter() - tic
            row = EpochRow(self.epoch, self.global_step, self.wall_s, float(lr), means, epoch_scores)
            self._write_outputs(row, scores)
        self.step_in_epoch = 0
        self.sums = dict.fromkeys(LOSS_KEYS, 0.0)
        self.save_checkpoint()

    def _write_outputs(self, row: EpochRow, scores: Scores) -> None:
        meta = {
            "epoch": str(self.epoch),
            "step": str(self.global_step),
            "psnr": f"{scores.psnr:.4f}",
            "ssim": f"{scores.ssim:.5f}",
            "eval_pairs": str(scores.count),
            "data": f"{self.train_description}; {self.cfg.protocol} {self.cfg.size}",
            "train_config": json.dumps(self.cfg.to_dict(), sort_keys=True),
        }
        best = self.evaluator.is_best(row.scores, self.best)
        if best:
            self.best = {
                "epoch": self.epoch,
                "psnr": scores.psnr,
                "ssim": scores.ssim,
                "score": row.scores.select_score,
            }
        export_generator(self.generator, self.out, meta, best=best)
        plot_curves(self.out, append_metrics(self.out / "metrics.csv", row))
        self.log(epoch_line(row, epochs=self.cfg.epochs, best_epoch=int(self.best["epoch"])))


def train(cfg: TrainConfig, given: Collection[str] | None = None) -> TrainResult:
    """Run (or resume) the training a TrainConfig describes (``given``: see ``Trainer``)."""
    return Trainer(cfg, given).run()


def main(argv: list[str] | None = None) -> int:
    """``python -m trainers.train ARGS`` runs ``deblurtool train ARGS``; without arguments it prints the usage
    and exits 2, like any command missing its arguments."""
    import sys

    import typer

    from deblurtool.commands.train import train as train_command

    app = typer.Typer(add_completion=False)
    app.command()(train_command)
    try:
        app(list(sys.argv[1:] if argv is None else argv), prog_name="python -m trainers.train")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
