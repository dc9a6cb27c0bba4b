"""Training pairs: the GOPRO_Large layout and plain pair folders, crop or resize-256 protocol, flips.

Layouts (pairing by file stem is ``deblurtool.pairs``'s, so training and ``bench`` agree on what a pair is):

- GOPRO_Large: ``ROOT/{train,test}/SEQ/{blur,blur_gamma,sharp}/*.png``; ``--blur linear`` reads ``blur``
  (GoPro's frames averaged as stored, the usual benchmark input), ``--blur gamma`` reads ``blur_gamma``.
- Split pair folders: ``ROOT/{train,test}/{blur,sharp}/*``.
- Plain pairs for users' own data: ``ROOT/{blur,sharp}/*`` or ``ROOT/SEQ/{blur,sharp}/*``. Without split
  folders the same pairs serve training and evaluation (``split_pairs`` says so in ``DataSplit.shared``).

Protocols (samples are ``x_pm1`` tensors, 3xSxS float32 in [-1, 1]):

- ``crop`` (default, S=256): an aligned random SxS crop of the full-resolution pair; the blur is left at the
  scale the camera made it, so the model learns GoPro's real blur lengths.
- ``resize`` (the DeblurGAN report's protocol): whole frames resized to SxS (area filter). Resizing shrinks
  the blur too, so scores on this protocol are not comparable with full-resolution ones.

With ``crop_tries`` N > 1 a training crop is the most textured of N random candidates (highest mean absolute
gradient of the sharp crop). Photo collections hold far more flat sky and wall than GoPro's street scenes;
on the shipped model's synthetic data best-of-4 brings the crops' texture to GoPro's (measured in
weights/README.md), and the loss then spends its steps where blur is visible. N = 1 (the default) is the
plain uniform crop of the report.

Both apply random horizontal and vertical flips to training samples. Randomness is drawn from a generator
seeded by ``(seed, epoch, index)``, not from worker RNG state, so a sample is the same whatever the number of
DataLoader workers and a run resumed mid-epoch sees exactly the samples an uninterrupted run would.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from deblurtool.errors import InputError
from deblurtool.pairs import Pair, find_pairs, read_pair

if typing.TYPE_CHECKING:
    from trainers.config import TrainConfig

BLUR_DIRS = {"linear": "blur", "gamma": "blur_gamma"}
PROTOCOLS = ("crop", "resize")
CACHE_MAX_PAIRS = 256  # decoded pairs kept in memory per process when a set is this small (720p: ~1.4 GB)
SPLITS = ("train", "test")


@dataclass(frozen=True)
class DataSplit:
    """Pairs of one split. ``shared``: the data has no split folders, so train and test are the same pairs."""

    pairs: list[Pair]
    shared: bool
    description: str


def split_pairs(root: Path, split: str, *, blur: str = "linear") -> DataSplit:
    """The pairs of ``split`` (train|test) under ``root`` in one of the module's layouts.

    A root holding a ``train/`` or ``test/`` folder is a split root: the requested split must exist.
    Raises InputError naming the path for a missing root or split, no pairs, or unpaired files.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if blur not in BLUR_DIRS:
        raise InputError(f"--blur must be one of {', '.join(BLUR_DIRS)}, got {blur!r}")
    root = Path(root)
    if not root.is_dir():
        raise InputError("training data folder not found", root)
    blur_dir = BLUR_DIRS[blur]
    present = [s for s in SPLITS if (root / s).is_dir()]
    if present:
        split_dir = root / split
        if not split_dir.is_dir():
            raise InputError(
                f"no {split}/ split folder (this data root has only {', '.join(present)}/)", root
            )
        pairs = find_pairs(split_dir, blur_dir=blur_dir, split=split)
        return DataSplit(pairs, False, f"{root.name}/{split} ({blur_dir}, {len(pairs)} pairs)")
    pairs = find_pairs(root, blur_dir=blur_dir, split=split)
    return DataSplit(pairs, True, f"{root.name} ({blur_dir}, {len(pairs)} pairs, no split folders)")


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file header only (Pillow opens lazily): 2,000 pairs check fast."""
    from PIL import Image  # a torchvision dependency

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception as e:  # Pillow raises several types for unreadable files
        raise InputError(f"cannot read this image ({type(e).__name__})", path) from None


def check_pairs(pairs: Sequence[Pair], *, min_size: int = 0) -> None:
    """Fail before training starts (not hours in) on a pair of different sizes or one below ``min_size``."""
    for pair in pairs:
        bw, bh = image_size(pair.blur)
        sw, sh = image_size(pair.sharp)
        if (bw, bh) != (sw, sh):
            raise InputError(
                f"size {bw}x{bh} differs from its sharp partner {pair.sharp} ({sw}x{sh})", pair.blur
            )
        if min(bw, bh) < min_size:
            raise InputError(
                f"image is {bw}x{bh}, smaller than the {min_size}-pixel training crop", pair.blur
            )


def u8_to_pm1(rgb_u8: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float32 in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(rgb_u8)).permute(2, 0, 1).float()
    return t.div_(127.5).sub_(1.0)


class PairDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``(blur_pm1, sharp_pm1)``, each 3xSxS float32 in [-1, 1], under ``protocol`` crop|resize.

    ``augment`` turns on random crops positions and flips (training); without it crops are centred and nothing
    is flipped. Call ``set_epoch`` before each epoch so crops and flips differ between epochs.

    Training-only options (crop protocol): ``scale_min`` < 1 shrinks each sample by a random factor in
    [scale_min, 1] (area filter, crop of S/scale pixels resized to S): real blur shrunk is still real blur,
    only shorter, so a few real pairs teach a range of blur lengths. ``dihedral`` adds a random transpose to
    the flips (all 8 orientations: blur directions the footage did not have).
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        *,
        protocol: str = "crop",
        size: int = 256,
        seed: int = 0,
        augment: bool = True,
        crop_tries: int = 1,
        scale_min: float = 1.0,
        dihedral: bool = False,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise InputError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        if size < 16 or size % 4:
            raise InputError(f"the training size must be a multiple of 4 and at least 16, got {size}")
        if crop_tries < 1:
            raise InputError(f"crop tries must be at least 1, got {crop_tries}")
        if not 0.0 < scale_min <= 1.0:
            raise InputError(f"the smallest scale must be in (0, 1], got {scale_min}")
        self.crop_tries, self.scale_min, self.dihedral = crop_tries, scale_min, dihedral
        self.pairs = list(pairs)
        self.protocol, self.size, self.seed, self.augment = protocol, size, seed, augment
        self.epoch = 0
        # Small sets (a few real pairs sampled thousands of times) are decoded once per process: a 720p PNG
        # pair costs tens of milliseconds, a sizeable part of a CPU training step.
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = (
            {} if len(self.pairs) <= CACHE_MAX_PAIRS else None
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is None:
            return read_pair(self.pairs[index])
        if index not in self._cache:
            self._cache[index] = read_pair(self.pairs[index])
        return self._cache[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sample(index, np.random.default_rng((self.seed, self.epoch, index)))

    def sample(
        self, index: int, rng: np.random.Generator, *, identity: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair ``index`` with the random choices drawn from ``rng``; ``identity`` returns (sharp, sharp)
        (a sharp input the model must leave alone)."""
        pair = self.pairs[index]
        blur_u8, sharp_u8 = self._read(index)
        if identity:
            blur_u8 = sharp_u8
        s = self.size
        if self.protocol == "resize":
            blur_u8 = cv2.resize(blur_u8, (s, s), interpolation=cv2.INTER_AREA)
            sharp_u8 = cv2.resize(sharp_u8, (s, s), interpolation=cv2.INTER_AREA)
        else:
            h, w = blur_u8.shape[:2]
            if min(h, w) < s:
                raise InputError(f"image is {w}x{h}, smaller than the {s}-pixel training crop", pair.blur)
            scale = 1.0
            if self.augment and self.scale_min < 1.0:
                scale = max(float(rng.uniform(self.scale_min, 1.0)), s / min(h, w))
            src = s if scale == 1.0 else min(h, w, round(s / scale))
            if self.augment:
                top, left = self._crop_position(sharp_u8, rng, src)
            else:
                top, left = (h - src) // 2, (w - src) // 2
            blur_u8 = blur_u8[top : top + src, left : left + src]
            sharp_u8 = sharp_u8[top : top + src, left : left + src]
            if src != s:
                blur_u8 = cv2.resize(blur_u8, (s, s), interpolation=cv2.INTER_AREA)
                sharp_u8 = cv2.resize(sharp_u8, (s, s), interpolation=cv2.INTER_AREA)
        if self.augment:
            if rng.random() < 0.5:
                blur_u8, sharp_u8 = blur_u8[:, ::-1], sharp_u8[:, ::-1]
            if rng.random() < 0.5:
                blur_u8, sharp_u8 = blur_u8[::-1], sharp_u8[::-1]
            if self.dihedral and rng.random() < 0.5:
                blur_u8, sharp_u8 = blur_u8.transpose(1, 0, 2), sharp_u8.transpose(1, 0, 2)
        return u8_to_pm1(blur_u8), u8_to_pm1(sharp_u8)

    def _crop_position(self, sharp_u8: np.ndarray, rng: np.random.Generator, s: int) -> tuple[int, int]:
        """Top-left corner of a random sxs crop: the most textured of ``crop_tries`` candidates."""
        h, w = sharp_u8.shape[:2]
        tops = rng.integers(0, h - s + 1, size=self.crop_tries)
        lefts = rng.integers(0, w - s + 1, size=self.crop_tries)
        if self.crop_tries == 1:
            return int(tops[0]), int(lefts[0])
        # Scored on the candidate crops only, not the whole frame (a 720p frame per sample would cost more).
        scores = [_texture(sharp_u8[t : t + s, x : x + s]) for t, x in zip(tops, lefts, strict=True)]
        best = int(np.argmax(scores))
        return int(tops[best]), int(lefts[best])


class MixedDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A virtual epoch of ``length`` samples drawn with replacement from several pair sets.

    Sample ``i`` of an epoch draws, from a generator seeded by ``(seed, epoch, i)``: a source with probability
    proportional to ``weights``, a pair of it uniformly, and with probability ``sharp_share`` turns it into a
    (sharp, sharp) pair: the model sees sharp input and must return it unchanged. So a small real set and a
    large synthetic one feed every batch in the chosen proportion, an epoch can be longer than one pass over a
    small set, and (as for ``PairDataset``) a sample does not depend on loader workers or on resuming.
    """

    def __init__(
        self,
        sources: Sequence[PairDataset],
        weights: Sequence[float],
        *,
        length: int,
        sharp_share: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not sources or len(sources) != len(weights):
            raise InputError(f"{len(weights)} mix weight(s) for {len(sources)} data root(s)")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise InputError(f"mix weights must be >= 0 with a positive sum, got {list(weights)}")
        if not 0.0 <= sharp_share < 1.0:
            raise InputError(f"the sharp share must be in [0, 1), got {sharp_share}")
        if any(len(s) == 0 for s in sources):
            raise InputError("a data root of the mix holds no pairs")
        total = float(sum(weights))
        self.sources = list(sources)
        self.probs = np.array([w / total for w in weights], dtype=np.float64)
        self.length, self.sharp_share, self.seed = length, sharp_share, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for s in self.sources:
            s.set_epoch(epoch)

    def __len__(self) -> int:
        return self.length

    def pick(self, index: int) -> tuple[int, int, bool, np.random.Generator]:
        """``(source, pair, identity, rng)`` of sample ``index`` this epoch; the rng then drives the crop."""
        rng = np.random.default_rng((self.seed, self.epoch, index, 1))
        k = int(rng.choice(len(self.sources), p=self.probs))
        j = int(rng.integers(len(self.sources[k])))
        identity = bool(rng.random() < self.sharp_share)
        return k, j, identity, rng

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, j, identity, rng = self.pick(index)
        return self.sources[k].sample(j, rng, identity=identity)


@dataclass(frozen=True)
class TrainingSet:
    """What the trainer samples from: one ``PairDataset`` (one pass per epoch) or a ``MixedDataset``."""

    dataset: PairDataset | MixedDataset
    n_pairs: int
    description: str


def build_training_set(cfg: TrainConfig, *, world: int = 1) -> TrainingSet:
    """The training split of every root in ``cfg.data``, checked before training starts.

    One root without ``mix``, ``sharp_share`` or an epoch longer than one pass keeps the plain epoch (each
    pair once, in an order seeded per epoch); anything else samples with replacement through ``MixedDataset``,
    ``steps_per_epoch`` batches an epoch (0: as many as one pass over all pairs).
    """
    splits = [split_pairs(Path(d), "train", blur=cfg.blur) for d in cfg.data]
    datasets = []
    for split in splits:
        check_pairs(split.pairs, min_size=0 if cfg.resize else cfg.crop)
        datasets.append(
            PairDataset(
                split.pairs,
                protocol=cfg.protocol,
                size=cfg.size,
                seed=cfg.seed,
                crop_tries=cfg.crop_tries,
                scale_min=cfg.scale_min,
                dihedral=cfg.dihedral,
            )
        )
    n_pairs = sum(len(d) for d in datasets)
    one_pass = n_pairs // (cfg.batch_size * world)
    weights = cfg.mix or tuple(float(len(d)) for d in datasets)
    description = " + ".join(
        s.description + (f" x{w:g}" if cfg.mix else "") for s, w in zip(splits, weights, strict=True)
    )
    if cfg.sharp_share:
        description += f", {cfg.sharp_share:.0%} sharp->sharp"
    if len(datasets) == 1 and not cfg.sharp_share and cfg.steps_per_epoch <= one_pass:
        return TrainingSet(datasets[0], n_pairs, description)
    steps = cfg.steps_per_epoch or one_pass
    mixed = MixedDataset(
        datasets, weights, length=steps * cfg.batch_size * world, sharp_share=cfg.sharp_share, seed=cfg.seed
    )
    return TrainingSet(mixed, n_pairs, description)


def _texture(rgb_u8: np.ndarray) -> float:
    """Mean absolute horizontal plus vertical gradient of the channel sum: how much detail a crop holds."""
    gray = rgb_u8.astype(np.float32).sum(axis=2)
    return float(np.abs(np.diff(gray, axis=1)).mean() + np.abs(np.diff(gray, axis=0)).mean())


class ResumableSampler(DistributedSampler[int]):
    """torch's DistributedSampler (seeded by ``seed + epoch``, padded so every rank gets as many samples)
    that can start partway into an epoch: ``set_start(n)`` skips this rank's first ``n`` samples, which is how
    a run resumed from a mid-epoch checkpoint continues the same data order. One process: ``num_replicas=1``.
    """

    def __init__(
        self, dataset: Dataset[object], *, num_replicas: int, rank: int, seed: int, shuffle: bool = True
    ):
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        self.start = 0

    def set_start(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)
