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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from deblurtool.errors import InputError
from deblurtool.pairs import Pair, find_pairs, read_pair

BLUR_DIRS = {"linear": "blur", "gamma": "blur_gamma"}
PROTOCOLS = ("crop", "resize")
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
    ) -> None:
        if protocol not in PROTOCOLS:
            raise InputError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        if size < 16 or size % 4:
            raise InputError(f"the training size must be a multiple of 4 and at least 16, got {size}")
        if crop_tries < 1:
            raise InputError(f"crop tries must be at least 1, got {crop_tries}")
        self.crop_tries = crop_tries
        self.pairs = list(pairs)
        self.protocol, self.size, self.seed, self.augment = protocol, size, seed, augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.pairs[index]
        blur_u8, sharp_u8 = read_pair(pair)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        s = self.size
        if self.protocol == "resize":
            blur_u8 = cv2.resize(blur_u8, (s, s), interpolation=cv2.INTER_AREA)
            sharp_u8 = cv2.resize(sharp_u8, (s, s), interpolation=cv2.INTER_AREA)
        else:
            h, w = blur_u8.shape[:2]
            if min(h, w) < s:
                raise InputError(f"image is {w}x{h}, smaller than the {s}-pixel training crop", pair.blur)
            if self.augment:
                top, left = self._crop_position(sharp_u8, rng)
            else:
                top, left = (h - s) // 2, (w - s) // 2
            blur_u8 = blur_u8[top : top + s, left : left + s]
            sharp_u8 = sharp_u8[top : top + s, left : left + s]
        if self.augment:
            if rng.random() < 0.5:
                blur_u8, sharp_u8 = blur_u8[:, ::-1], sharp_u8[:, ::-1]
            if rng.random() < 0.5:
                blur_u8, sharp_u8 = blur_u8[::-1], sharp_u8[::-1]
        return u8_to_pm1(blur_u8), u8_to_pm1(sharp_u8)

    def _crop_position(self, sharp_u8: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
        """Top-left corner of a random crop: the most textured of ``crop_tries`` candidates."""
        h, w = sharp_u8.shape[:2]
        s = self.size
        tops = rng.integers(0, h - s + 1, size=self.crop_tries)
        lefts = rng.integers(0, w - s + 1, size=self.crop_tries)
        if self.crop_tries == 1:
            return int(tops[0]), int(lefts[0])
        # Scored on the candidate crops only, not the whole frame (a 720p frame per sample would cost more).
        scores = [_texture(sharp_u8[t : t + s, x : x + s]) for t, x in zip(tops, lefts, strict=True)]
        best = int(np.argmax(scores))
        return int(tops[best]), int(lefts[best])


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
