"""TrainConfig: every knob of a training run, validated once, and the rules for changing it on --resume.

The options' help texts live in one place, ``deblurtool train --help`` (``deblurtool/commands/train.py``);
this module holds the values, their defaults and their checks.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, fields, replace

from deblurtool.config import PRECISIONS
from deblurtool.errors import DeblurError
from trainers.critic import NORMS
from trainers.data import BLUR_DIRS
from trainers.losses import PIXEL_LOSSES

GAN_MODES = ("wgan-gp", "wgan")
SELECT_MODES = ("test", "test+extra")
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
    "sharp_check",
    "resume",
    "overwrite",
    "device",
)
# Settings of the invocation itself, not of the run: always taken from the command line, even on --resume
# (a run stopped by --stop-at-step N and resumed without it goes on to the end; the device is this machine's).
PER_INVOCATION = ("data", "out", "resume", "overwrite", "stop_at_step", "device")
_TUPLES = ("data", "mix", "eval_extra")


@dataclass
class TrainConfig:
    """Every knob of a run; the defaults reproduce the DeblurGAN report (WGAN-GP, perceptual 100, batch 1,
    256 crops, 200 epochs). Field names are the CLI's option names with ``-`` for ``_``."""

    data: tuple[str, ...]
    out: str
    # data
    blur: str = "linear"
    crop: int = 256
    crop_tries: int = 1
    resize: int = 0
    mix: tuple[float, ...] = ()
    sharp_share: float = 0.0
    scale_min: float = 1.0
    dihedral: bool = False
    steps_per_epoch: int = 0
    batch_size: int = 1
    workers: int = 2
    # optimisation and losses
    epochs: int = 200
    lr: float = 1e-4
    critic_steps: int = 5
    gan: str = "wgan-gp"
    gp_weight: float = 10.0
    clip_value: float = 0.01
    adv_weight: float = 1.0
    perceptual_weight: float = 100.0
    perceptual_layers: str = "block3_conv3"
    vgg_weights: str = "imagenet"
    pixel_loss: str = "none"
    pixel_weight: float = 0.0
    freq_weight: float = 0.0
    # model
    ngf: int = 64
    n_blocks: int = 9
    critic_ndf: int = 64
    critic_norm: str = "instance"
    init_weights: str = ""
    precision: str = "auto"
    device: str = "auto"
    seed: int = 0
    # evaluation
    eval_limit: int = 0
    eval_extra: tuple[str, ...] = ()
    sharp_check: int = 0
    sharp_floor: float = 40.0
    select: str = "test"
    # run
    log_every: int = 50
    checkpoint_every: int = 500
    stop_at_step: int = 0
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        data: object = self.data  # a plain string from older checkpoints or callers is one root
        self.data = (data,) if isinstance(data, str) else tuple(str(p) for p in self.data)
        self.eval_extra = tuple(str(p) for p in self.eval_extra)
        self.mix = tuple(float(w) for w in self.mix)
        if not self.data:
            raise DeblurError("give at least one training data root")
        positive = ("epochs", "batch_size", "crop_tries", "critic_steps", "ngf", "critic_ndf", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise DeblurError(f"{_flag(name)} must be at least 1, got {getattr(self, name)}")
        non_negative = (
            "steps_per_epoch", "workers", "n_blocks", "eval_limit", "checkpoint_every", "stop_at_step",
            "resize", "lr", "gp_weight", "clip_value", "adv_weight", "perceptual_weight", "pixel_weight",
            "freq_weight", "sharp_check",
        )  # fmt: skip
        for name in non_negative:
            if getattr(self, name) < 0:
                raise DeblurError(f"{_flag(name)} must be >= 0, got {getattr(self, name)}")
        choices = {
            "blur": tuple(BLUR_DIRS),
            "gan": GAN_MODES,
            "pixel_loss": PIXEL_LOSSES,
            "critic_norm": NORMS,
            "precision": PRECISIONS,
            "select": SELECT_MODES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise DeblurError(
                    f"{_flag(name)} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
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
    def from_dict(cls, d: dict[str, object]) -> TrainConfig:
        """The inverse of ``to_dict``; unknown keys are ignored and a pre-mix ``data`` string is accepted,
        so checkpoints of older runs still resume."""
        names = {f.name for f in fields(cls)}
        kw = {
            k: (tuple(v) if k in _TUPLES and isinstance(v, list) else v) for k, v in d.items() if k in names
        }
        return cls(**kw)  # type: ignore[arg-type]


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
