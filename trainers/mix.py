"""Training sources mixed by weight: real blur/sharp pairs and high-frame-rate clips averaged on the fly.

A ``PairSource`` holds decoded real pairs and yields aligned random crops. A ``ClipSource`` holds sharp
high-frame-rate clips and makes each sample fresh: a random window of N frames (N drawn from the source's
range), a random scale (so blur lengths vary as they do between cameras and zooms), a random region; only
that region of the N frames is averaged, so a sample costs N crops, not N frames. Every sample gets random
flips and a random transpose. ``sharp_share`` of the samples feed the sharp crop as input too, which teaches
the generator to leave sharp content alone.

``MIXES`` names the mixes; ``default`` trains on everything in ``shared/data`` except the held-out scenes of
``trainers.holdout``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from deblurtool.pairs import find_pairs, read_pair
from trainers.holdout import GOPRO0374_SKIP, TAIL0372, X4K_HELDOUT, HeldOut, load_heldout
from trainers.synth.hfr import Clip, average_frames, read_clip


@dataclass
class PairSource:
    name: str
    pairs: list[tuple[np.ndarray, np.ndarray]]

    def sample(self, rng: np.random.Generator, crop: int) -> tuple[np.ndarray, np.ndarray]:
        blur, sharp = self.pairs[int(rng.integers(len(self.pairs)))]
        h, w = blur.shape[:2]
        y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        return blur[y : y + crop, x : x + crop], sharp[y : y + crop, x : x + crop]


@dataclass
class ClipSource:
    name: str
    clips: list[Clip]
    exposure_ms: tuple[float, float]  # window length range, as exposure time at the clip's capture rate
    scale: tuple[float, float] = (1.0, 1.0)
    linear_share: float = 0.3

    def sample(self, rng: np.random.Generator, crop: int) -> tuple[np.ndarray, np.ndarray]:
        clip = self.clips[int(rng.integers(len(self.clips)))]
        t = len(clip.frames)
        lo = max(2, round(self.exposure_ms[0] * clip.fps / 1000))
        hi = max(lo, min(t, round(self.exposure_ms[1] * clip.fps / 1000)))
        n = int(rng.integers(lo, hi + 1))
        t0 = int(rng.integers(0, t - n + 1))
        s = float(rng.uniform(*self.scale))
        h, w = clip.frames.shape[1:3]
        side = min(h, w, max(crop, round(crop / s)))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        window = clip.frames[t0 : t0 + n, y : y + side, x : x + side]
        blur = average_frames(window, linear=bool(rng.random() < self.linear_share))
        sharp = window[n // 2]
        if side != crop:
            blur = cv2.resize(blur, (crop, crop), interpolation=cv2.INTER_AREA)
            sharp = cv2.resize(sharp, (crop, crop), interpolation=cv2.INTER_AREA)
        return blur, sharp


Source = PairSource | ClipSource


def _augment(rng: np.random.Generator, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if rng.random() < 0.5:
        a, b = a[:, ::-1], b[:, ::-1]
    if rng.random() < 0.5:
        a, b = a[::-1], b[::-1]
    if rng.random() < 0.5:
        a, b = a.transpose(1, 0, 2), b.transpose(1, 0, 2)
    return a, b


def _to_pm1(batch: list[np.ndarray]) -> torch.Tensor:
    arr = np.stack([np.ascontiguousarray(x) for x in batch])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


@dataclass
class SourceMix:
    sources: list[Source]
    weights: list[float]
    heldout: HeldOut

    def batch(
        self, rng: np.random.Generator, batch_size: int, crop: int, sharp_share: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Nx3xSxS ``x_pm1`` tensors (blur, sharp)."""
        p = np.asarray(self.weights) / np.sum(self.weights)
        blurs, sharps = [], []
        for _ in range(batch_size):
            src = self.sources[int(rng.choice(len(self.sources), p=p))]
            blur, sharp = _augment(rng, *src.sample(rng, crop))
            if rng.random() < sharp_share:
                blur = sharp
            blurs.append(blur)
            sharps.append(sharp)
        return _to_pm1(blurs), _to_pm1(sharps)

    def describe(self) -> str:
        parts = []
        for s, w in zip(self.sources, self.weights, strict=True):
            n = len(s.pairs) if isinstance(s, PairSource) else sum(len(c.frames) for c in s.clips)
            unit = "pairs" if isinstance(s, PairSource) else "frames"
            parts.append(f"{s.name} ({n} {unit}, weight {w})")
        return ", ".join(parts)


def _real_pairs(root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for p in find_pairs(root / "gopro_train" / "GOPR0372_07_00"):
        stem = p.name.split("/")[-1]
        if int(stem) < 110:  # frames 110-129 are the same-scene check
            out.append(read_pair(p))
    for p in find_pairs(root / "gopro_train" / "GOPR_UNKNOWN_TRAIN", blur_dir="blur_gamma"):
        out.append(read_pair(p))
    for seq in ("GOPR0384_11_02", "GOPR0477_11_00"):
        out += [read_pair(p) for p in find_pairs(root / "gopro_train_more" / seq)]
    return out


def default_mix(root: Path, log: Callable[[str], None]) -> SourceMix:
    heldout = load_heldout(root)
    assert not set(TAIL0372) & {f"{i:06d}" for i in range(47, 110)} and GOPRO0374_SKIP
    real = PairSource("gopro_real", _real_pairs(root))
    gopro240 = ClipSource(
        "gopro_240fps",
        [read_clip(root / "gopro_240fps" / "GOPR0477_11_00_240fps.mkv", fps=240.0)],
        exposure_ms=(7 / 240 * 1000, 13 / 240 * 1000),
    )
    x4k_files = sorted((root / "x4k_1000fps").glob("*.mp4"))
    x4k = ClipSource(
        "x4k_1000fps",
        [read_clip(f, fps=1000.0) for f in x4k_files if f.stem not in X4K_HELDOUT],
        exposure_ms=(5.0, 33.0),
        scale=(0.4, 1.0),
    )
    mix = SourceMix([real, gopro240, x4k], [0.4, 0.3, 0.3], heldout)
    log(f"training sources: {mix.describe()}; held out: {len(heldout.pairs)} pairs in {heldout.sets}")
    return mix


MIXES: dict[str, Callable[[Path, Callable[[str], None]], SourceMix]] = {"default": default_mix}


def build_mix(root: Path, name: str, *, log: Callable[[str], None] = print) -> SourceMix:
    if name not in MIXES:
        raise ValueError(f"unknown source mix {name!r} (known: {', '.join(MIXES)})")
    return MIXES[name](root, log)
