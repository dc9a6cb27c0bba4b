"""TrainConfig: every option of ``deblurtool train``, declared once, validated once; the rules for --resume.

Each field carries its own CLI declaration (``Opt`` in the field's metadata): the section it is listed under
(data, model, losses, optimisation, evaluation, run), its help text, which recipe reads it and, where the
recipes differ, the nafunet recipe's default (and its default on a CUDA GPU). ``deblurtool train`` builds its
options from these fields (``deblurtool/commands/train.py``), so a name, default or help text exists in one
place only; every check lives in ``TrainConfig.__post_init__``.

Two recipes, picked by ``arch``:
- ``resnet9``: DeblurGAN's recipe (``trainers.train``): WGAN-GP with a PatchGAN critic and VGG16 perceptual
  loss, epochs over GoPro-layout pairs;
- ``nafunet``: the restoration recipe (``trainers.restore``): pixel + frequency loss, AdamW with warm-up and
  cosine decay over a budget of steps, CPU minutes or wall minutes, EMA weights, held-out scenes.
An option of the other recipe left at its default is ignored; set to anything else it is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from deblurtool.errors import DeblurError

GAN, RESTORE, BOTH = "resnet9", "nafunet", "both"  # recipes: the GAN's (resnet9 only), the restoration one
GAN_MODES = ("wgan-gp", "wgan")
SELECT_MODES = ("test", "test+extra")
TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # int8 is an inference precision (OpenVINO quantisation)
SECTIONS = ("Data", "Model", "Losses", "Optimisation", "Evaluation", "Run")
# Settings a resumed run may change (where data lives, how long to go, how it reports: an epoch count or a
# budget); everything else that shapes the optimisation comes from the checkpoint.
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
    "sharp_check",
    "resume",
    "overwrite",
    "device",
    "steps",
    "cpu_minutes",
    "minutes",
    "threads",
    "eval_every_steps",
    "eval_every_minutes",
    "eval_full",
)
# Settings of the invocation itself, not of the run: always taken from the command line, even on --resume
# (a run stopped by --stop-at-step N and resumed without it goes on to the end; the device is this machine's).
PER_INVOCATION = ("data", "out", "resume", "overwrite", "stop_at_step", "device")
_TUPLES = ("data", "mix", "eval_extra")


@dataclass(frozen=True)
class Opt:
    """The CLI declaration of one TrainConfig field."""

    section: str
    help: str
    recipe: str = BOTH  # resnet9 | nafunet | both: which recipe reads the field
    nafunet: object = None  # the nafunet recipe's default, where it differs
    nafunet_gpu: object = None  # ... on a CUDA device
    metavar: str | None = None
    argument: bool = False  # a positional argument (DATA) rather than an --option


def _f(default: Any, section: str, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"opt": Opt(section, help, **kw)})


def opt_of(name: str) -> Opt:
    """The CLI declaration of TrainConfig field ``name``."""
    return _OPTS[name]


@dataclass
class TrainConfig:
    """Every option of a run. Field names are the CLI's option names with ``-`` for ``_``; the defaults are
    the resnet9 recipe's (they reproduce the DeblurGAN report: WGAN-GP, perceptual 100, batch 1, 256 crops,
    200 epochs). ``TrainConfig.create`` applies the nafunet recipe's own defaults to the options not given."""

    data: tuple[str, ...] = field(
        metadata={
            "opt": Opt(
                "Data",
                "Training data root(s). resnet9: GOPRO_Large roots (train/ and test/ with "
                "SEQ/{blur,blur_gamma,sharp}) or pair folders; the first root's test split is scored. "
                "nafunet: one folder laid out as shared/data (see trainers/mix.py), mixed and held out by "
                "--sources.",
                argument=True,
                metavar="DATA",
            )
        }
    )
    out: str = field(
        metadata={"opt": Opt("Run", "Run folder for metrics, plots, weights, checkpoints.", metavar="RUN")},
    )
    # -- data
    blur: str = _f("linear", "Data", "GoPro blur variant: linear (blur/) or gamma (blur_gamma/).", recipe=GAN)
    crop: int = _f(
        256,
        "Data",
        "Train on aligned random NxN crops at full resolution, with random flips.",
        nafunet=128,
        nafunet_gpu=256,
    )
    crop_tries: int = _f(
        1,
        "Data",
        "Take each training crop as the most textured (mean gradient of the sharp crop) of N random "
        "candidates: photo collections hold more flat sky than GoPro footage; 1: plain crops.",
        recipe=GAN,
    )
    resize: int = _f(
        0,
        "Data",
        "Instead of crops, resize whole frames to NxN (the report's protocol: 256); scores are then on "
        "resized frames too.",
        recipe=GAN,
    )
    mix: tuple[float, ...] = _f(
        (),
        "Data",
        "Sampling weights of the DATA roots, comma-separated in their order (e.g. 0.5,0.3,0.2): each sample "
        "comes from root k with probability w_k/sum(w). Empty: proportional to their sizes.",
        recipe=GAN,
        metavar="W,W,...",
    )
    sources: str = _f(
        "default",
        "Data",
        "The named mix of training sources and held-out scenes in DATA (trainers/mix.py: real pairs and "
        "high-frame-rate clips averaged on the fly).",
        recipe=RESTORE,
    )
    sharp_share: float = _f(
        0.0,
        "Data",
        "Share of samples whose input is the sharp frame itself: teaches the model to leave sharp footage "
        "alone.",
        nafunet=0.1,
    )
    scale_min: float = _f(
        1.0,
        "Data",
        "Shrink each training sample by a random factor in [S, 1] (area filter): real blur, shorter. 1: no "
        "scaling.",
        recipe=GAN,
    )
    dihedral: bool = _f(
        False, "Data", "Random transposes besides the flips (all 8 orientations).", recipe=GAN
    )
    steps_per_epoch: int = _f(
        0,
        "Data",
        "Steps (batches) per epoch; 0: one pass over the pairs. More than one pass (or --mix, --sharp-share) "
        "samples with replacement.",
        recipe=GAN,
    )
    batch_size: int = _f(1, "Data", "Training pairs per step.", nafunet=4, nafunet_gpu=16)
    workers: int = _f(
        2,
        "Data",
        "resnet9: DataLoader worker processes. nafunet: threads making batches ahead, each batch from its "
        "own seed; 0: one random stream, batches made in the training loop.",
        nafunet=0,
        nafunet_gpu=8,
    )
    # -- model
    arch: str = _f(
        "resnet9",
        "Model",
        "Generator architecture, and with it the recipe: resnet9 (DeblurGAN's GAN recipe) or nafunet (the "
        "restoration recipe: pixel + frequency loss, AdamW, warm-up and cosine decay, EMA).",
    )
    arch_config: str = _f(
        "",
        "Model",
        "The architecture's constructor arguments as JSON, e.g. '{\"width\": 16}'; empty: its defaults.",
        recipe=RESTORE,
        metavar="JSON",
    )
    ngf: int = _f(64, "Model", "Generator width.", recipe=GAN)
    n_blocks: int = _f(9, "Model", "Generator residual blocks.", recipe=GAN)
    critic_ndf: int = _f(64, "Model", "Critic width.", recipe=GAN)
    critic_norm: str = _f(
        "instance",
        "Model",
        "Critic normalisation: instance (per sample, sound with the gradient penalty), layer, batch or none.",
        recipe=GAN,
    )
    init_weights: str = _f(
        "", "Model", "Start the generator from this .safetensors (fine-tuning).", metavar="FILE"
    )
    # -- losses
    gan: str = _f(
        "wgan-gp",
        "Losses",
        "wgan-gp (gradient penalty) or wgan (the report's plain WGAN with weight clipping).",
        recipe=GAN,
    )
    gp_weight: float = _f(10.0, "Losses", "Gradient penalty weight (lambda).", recipe=GAN)
    clip_value: float = _f(0.01, "Losses", "Weight clipping for --gan wgan.", recipe=GAN)
    adv_weight: float = _f(1.0, "Losses", "Adversarial loss weight; 0 trains without a critic.", recipe=GAN)
    perceptual_weight: float = _f(
        100.0, "Losses", "VGG16 perceptual loss weight; 0 turns VGG off.", recipe=GAN
    )
    perceptual_layers: str = _f(
        "block3_conv3",
        "Losses",
        "Comma-separated VGG16 layers (Keras names: block1_conv1 ... block5_conv3), MSEs averaged.",
        recipe=GAN,
    )
    vgg_weights: str = _f(
        "imagenet",
        "Losses",
        "imagenet (torchvision's download and torch hub cache) or PATH to a torchvision VGG16 state_dict.",
        recipe=GAN,
    )
    pixel_loss: str = _f("none", "Losses", "Pixel loss: none, l1, mse or charbonnier.", nafunet="charbonnier")
    pixel_weight: float = _f(0.0, "Losses", "Pixel loss weight.", nafunet=1.0)
    freq_weight: float = _f(
        0.0,
        "Losses",
        "Frequency loss weight: L1 between the orthonormal 2-D FFTs of output and target (MIMO-UNet's "
        "auxiliary loss); on the scale of a per-pixel L1.",
        nafunet=0.05,
    )
    # -- optimisation
    epochs: int = _f(
        200,
        "Optimisation",
        "Epochs; the learning rate decays linearly to 0 over the second half.",
        recipe=GAN,
    )
    lr: float = _f(
        1e-4,
        "Optimisation",
        "Peak learning rate (resnet9: Adam, betas 0.5, 0.999; nafunet: AdamW after the warm-up).",
        nafunet=1e-3,
    )
    min_lr: float = _f(1e-6, "Optimisation", "Learning rate at the end of the cosine decay.", recipe=RESTORE)
    weight_decay: float = _f(
        1e-4, "Optimisation", "AdamW weight decay (weights, not norms or biases).", recipe=RESTORE
    )
    warmup_steps: int = _f(200, "Optimisation", "Steps of linear learning-rate warm-up.", recipe=RESTORE)
    grad_clip: float = _f(1.0, "Optimisation", "Gradient norm clipping; 0: none.", recipe=RESTORE)
    ema: float = _f(
        0.999,
        "Optimisation",
        "Decay of the exponential moving average of the weights that is evaluated and exported; 0: none.",
        recipe=RESTORE,
    )
    steps: int = _f(0, "Optimisation", "Budget: this many steps (give one budget).", recipe=RESTORE)
    cpu_minutes: float = _f(
        0.0,
        "Optimisation",
        "Budget: minutes of this process's CPU time (fair on a shared CPU: time spent waiting for a core is "
        "not counted).",
        recipe=RESTORE,
    )
    minutes: float = _f(
        0.0,
        "Optimisation",
        "Budget: minutes of wall time spent training (the unit on a GPU).",
        recipe=RESTORE,
    )
    critic_steps: int = _f(5, "Optimisation", "Critic updates per generator update.", recipe=GAN)
    seed: int = _f(0, "Optimisation", "Seed of initialisation, data order, crops, flips.")
    threads: int = _f(0, "Optimisation", "PyTorch CPU threads; 0: PyTorch's default.", recipe=RESTORE)
    device: str = _f("auto", "Run", "auto, cpu, cuda or cuda:N.", metavar="DEVICE")
    precision: str = _f(
        "auto",
        "Run",
        "Training precision: auto (CUDA: bf16 where the GPU has it natively, else fp16, for nafunet; fp16 "
        "for resnet9; CPU: bf16 where native and measured faster, else fp32), fp32, bf16 or fp16 (mixed "
        "precision via autocast; fp16 on CUDA only for nafunet). int8 is an inference precision.",
        metavar="PRECISION",
    )
    # -- evaluation
    eval_limit: int = _f(
        0, "Evaluation", "Score N test pairs spread over the split each epoch; 0: all.", recipe=GAN
    )
    eval_extra: tuple[str, ...] = _f(
        (),
        "Evaluation",
        "Extra pairs folder scored each epoch (extra_psnr/ssim); never picks the best. Repeatable.",
        recipe=GAN,
        metavar="DIR",
    )
    sharp_check: int = _f(
        0,
        "Evaluation",
        "Each epoch, feed N sharp frames (test split, then extras) as input and report how far the output "
        "moves from them (sharp_min_psnr, sharp_mean_psnr).",
        recipe=GAN,
    )
    sharp_floor: float = _f(
        40.0,
        "Evaluation",
        "Only weights leaving every sharp frame given as input at least this many dB PSNR from itself can be "
        "the best (resnet9: with --sharp-check; nafunet: always, on the held-out scenes).",
    )
    select: str = _f(
        "test",
        "Evaluation",
        "Best epoch by: test (PSNR on the first root's test split) or test+extra (the mean of the gains over "
        "the blurry input on the test split and on the --eval-extra pairs).",
        recipe=GAN,
    )
    eval_every_steps: int = _f(
        0,
        "Evaluation",
        "Evaluate on the held-out scenes every N steps (0: by --eval-every-minutes).",
        recipe=RESTORE,
    )
    eval_every_minutes: float = _f(
        5.0, "Evaluation", "Evaluate every N minutes of the budget's clock (CPU or wall).", recipe=RESTORE
    )
    eval_full: bool = _f(
        False, "Evaluation", "Evaluate on whole frames instead of centre crops.", recipe=RESTORE
    )
    # -- run
    log_every: int = _f(50, "Run", "Log line every N steps when stdout is not a terminal.", recipe=GAN)
    checkpoint_every: int = _f(
        500, "Run", "Also checkpoint every N steps mid-epoch; 0: epoch ends only.", recipe=GAN
    )
    stop_at_step: int = _f(
        0,
        "Run",
        "Checkpoint and stop after this global step (time-sliced runs; --resume continues); 0: never.",
    )
    resume: bool = _f(
        False, "Run", "Continue the run in --out from its checkpoint; options left out keep the run's values."
    )
    overwrite: bool = _f(False, "Run", "Replace a run already in --out.")

    def __post_init__(self) -> None:
        data: object = self.data  # a plain string from older checkpoints or callers is one root
        self.data = (data,) if isinstance(data, str) else tuple(str(p) for p in self.data)
        self.eval_extra = tuple(str(p) for p in self.eval_extra)
        self.mix = tuple(float(w) for w in self.mix)
        self._check()

    def _check(self) -> None:
        if not self.data:
            raise DeblurError("give at least one training data root")
        if self.precision == "int8":
            raise DeblurError(
                "--precision int8 is an inference-only precision (OpenVINO quantises trained weights for "
                f"deblurring); training runs in {', '.join(TRAIN_PRECISIONS)}"
            )
        # Imported here: the CLI builds its options from this module at start-up, without loading torch.
        from deblurtool.models import registry
        from trainers.critic import NORMS
        from trainers.data import BLUR_DIRS
        from trainers.losses import PIXEL_LOSSES

        choices = {
            "arch": tuple(sorted(registry.ARCHS)),
            "blur": tuple(BLUR_DIRS),
            "gan": GAN_MODES,
            "pixel_loss": PIXEL_LOSSES,
            "critic_norm": NORMS,
            "precision": TRAIN_PRECISIONS,
            "select": SELECT_MODES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise DeblurError(
                    f"{_flag(name)} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        foreign = [
            f.name
            for f in fields(self)
            if opt_of(f.name).recipe not in (BOTH, self.recipe) and getattr(self, f.name) != _default(f.name)
        ]
        if foreign:
            other = "resnet9 (GAN)" if self.recipe == RESTORE else "restoration (nafunet)"
            raise DeblurError(
                f"{', '.join(_flag(n) for n in foreign)}: option(s) of the {other} recipe, not of --arch "
                f"{self.arch}; see deblurtool train --help"
            )
        positive = ("epochs", "batch_size", "crop_tries", "critic_steps", "ngf", "critic_ndf", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise DeblurError(f"{_flag(name)} must be at least 1, got {getattr(self, name)}")
        non_negative = (
            "steps_per_epoch", "workers", "n_blocks", "eval_limit", "checkpoint_every", "stop_at_step",
            "resize", "lr", "gp_weight", "clip_value", "adv_weight", "perceptual_weight", "pixel_weight",
            "freq_weight", "sharp_check", "min_lr", "weight_decay", "warmup_steps", "grad_clip", "steps",
            "cpu_minutes", "minutes", "threads", "eval_every_steps", "eval_every_minutes",
        )  # fmt: skip
        for name in non_negative:
            if getattr(self, name) < 0:
                raise DeblurError(f"{_flag(name)} must be >= 0, got {getattr(self, name)}")
        size = self.resize or self.crop
        if size < 16 or size % 4:
            raise DeblurError(f"--crop/--resize must be a multiple of 4 and at least 16, got {size}")
        if self.pixel_loss != "none" and self.pixel_weight == 0:
            raise DeblurError(f"--pixel-loss {self.pixel_loss} needs a --pixel-weight above 0")
        if self.resume and self.overwrite:
            raise DeblurError("--resume and --overwrite contradict each other; pick one")
        if self.mix and len(self.mix) != len(self.data):
            raise DeblurError(f"--mix has {len(self.mix)} weight(s) for {len(self.data)} data root(s)")
        if self.mix and (min(self.mix) < 0 or sum(self.mix) <= 0):
            raise DeblurError(f"--mix weights must be >= 0 with a positive sum, got {list(self.mix)}")
        if not 0.0 <= self.sharp_share < 1.0:
            raise DeblurError(f"--sharp-share must be in [0, 1), got {self.sharp_share}")
        if not 0.0 < self.scale_min <= 1.0:
            raise DeblurError(f"--scale-min must be in (0, 1], got {self.scale_min}")
        if self.select == "test+extra" and not self.eval_extra:
            raise DeblurError("--select test+extra needs --eval-extra pairs")
        if self.recipe == RESTORE:
            self._check_restore()

    def _check_restore(self) -> None:
        if len(self.data) != 1:
            raise DeblurError(
                f"--arch {self.arch} reads one data folder (its --sources pick from it), got {len(self.data)}"
            )
        budgets = [n for n in ("steps", "cpu_minutes", "minutes") if getattr(self, n) > 0]
        if len(budgets) != 1:
            raise DeblurError(
                f"--arch {self.arch} trains for a budget: give exactly one of --steps, --cpu-minutes or "
                "--minutes" + (f" (got {', '.join(_flag(n) for n in budgets)})" if budgets else "")
            )
        if self.pixel_loss == "none":
            raise DeblurError(f"--arch {self.arch} needs a --pixel-loss (l1, mse or charbonnier)")
        if not 0.0 <= self.ema < 1.0:
            raise DeblurError(f"--ema must be in [0, 1), got {self.ema}")
        if self.lr <= 0:
            raise DeblurError(f"--lr must be > 0, got {self.lr}")
        if self.precision == "fp16" and self.device == "cpu":
            raise DeblurError("--precision fp16 trains on CUDA only; use bf16 or fp32 on a CPU")
        if self.arch_config.strip():
            import json

            try:
                parsed = json.loads(self.arch_config)
            except ValueError as e:
                raise DeblurError(f"--arch-config is not JSON ({e})") from None
            if not isinstance(parsed, dict):
                raise DeblurError("--arch-config must be a JSON object of constructor arguments")
            from deblurtool.models import registry

            try:
                registry.build(self.arch, parsed)
            except (ValueError, TypeError) as e:
                raise DeblurError(f"--arch-config: {e}") from None

    @classmethod
    def create(cls, values: Mapping[str, object], given: Collection[str] | None = None) -> TrainConfig:
        """A config from option values where the recipe's own defaults replace those not ``given`` (None:
        the keys of ``values`` are the given ones): ``--arch nafunet`` alone trains with nafunet's learning
        rate, crop and batch, and on a CUDA device with its GPU crop and batch."""
        given = set(values) if given is None else set(given)
        kw = dict(values)
        if kw.get("arch", GAN) != GAN:
            on_gpu = _on_cuda(str(kw.get("device", "auto")))
            for name, o in _OPTS.items():
                if name in given:
                    continue
                if on_gpu and o.nafunet_gpu is not None:
                    kw[name] = o.nafunet_gpu
                elif o.nafunet is not None:
                    kw[name] = o.nafunet
        return cls(**kw)  # type: ignore[arg-type]

    @property
    def recipe(self) -> str:
        """``resnet9``: DeblurGAN's GAN recipe (trainers.train); ``nafunet``: the restoration recipe
        (trainers.restore), which trains every other registered architecture too."""
        return GAN if self.arch == GAN else RESTORE

    @property
    def protocol(self) -> str:
        return "resize" if self.resize else "crop"

    @property
    def size(self) -> int:
        return self.resize or self.crop

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        for name in _TUPLES:
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> TrainConfig:
        """The inverse of ``to_dict``; unknown keys are ignored and a pre-mix ``data`` string is accepted,
        so checkpoints of older runs still resume."""
        names = {f.name for f in fields(cls)}
        kw = {
            k: (tuple(v) if k in _TUPLES and isinstance(v, list) else v) for k, v in d.items() if k in names
        }
        return cls(**kw)  # type: ignore[arg-type]


_OPTS: dict[str, Opt] = {f.name: f.metadata["opt"] for f in fields(TrainConfig)}


def _default(name: str) -> object:
    f = TrainConfig.__dataclass_fields__[name]
    return f.default


def _on_cuda(device: str) -> bool:
    if device.startswith("cuda"):
        return True
    if device != "auto":
        return False
    import torch

    return bool(torch.cuda.is_available())


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def merge_resumed(
    cfg: TrainConfig, saved: dict[str, object], given: Collection[str] | None, *, log: Callable[[str], None]
) -> TrainConfig:
    """The configuration a resumed run continues with: the checkpoint's (``saved``), with the resumable
    settings of ``cfg`` on top. With ``given`` known (the CLI passes the options spelled out), a resumable
    setting left off the command line keeps the checkpoint's value: `--resume` alone must not quietly reset
    --epochs or drop --eval-extra. Settings that may not change are kept, and ``log`` says which were."""
    old = TrainConfig.from_dict(saved)
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
        and getattr(cfg, n) != getattr(old, n)
    ]
    if ignored:
        log(
            f"resuming: keeping the checkpoint's {', '.join(ignored)} "
            f"(only {', '.join(RESUMABLE_OVERRIDES)} may change on --resume)"
        )
    return replace(old, **overrides)
