"""Held-out real scenes for choosing a model: whole scenes that no training source shows.

Sets (gain = PSNR(model(blur), sharp) - PSNR(blur, sharp), dB, on uint8 images, mean over a set's pairs):

- ``gopro0374``: GoPro training scene GOPR0374_11_00 (``gopro_train_more``; its frame 000807 is left out:
  its pair is misaligned by 4 pixels, which would score alignment, not deblurring);
- ``x4k``: two X4K1000FPS clips (TEST03, TEST08), windows of 9 and 17 frames averaged (another camera,
  other content);
- ``samples``: the two GoPro test pairs of ``gopro_samples`` (``samples/gopro`` in the repository);
- ``tail0372``: frames 110-129 of the training scene GOPR0372_07_00, every fourth: a same-scene check,
  reported but not part of the selection score (training uses frames 47-109 of that scene).

The selection score is the mean of the per-set gains of ``gopro0374``, ``x4k`` and ``samples``; a model is
only eligible while every sharp frame given as input comes back at least a floor (40 dB) from itself.
Evaluation runs on centre crops (fast, for every few minutes of training) or on whole frames.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deblurtool.metrics import psnr
from deblurtool.pairs import find_pairs, read_pair
from trainers.synth.hfr import make_pair, read_clip

X4K_HELDOUT = ("TEST03_081_f4833_2k", "TEST08_079_f0321_2k")
X4K_EVAL_WINDOWS = (9, 17)
GOPRO0374_SKIP = ("000807_avg10",)  # misaligned pair (PROVENANCE.md)
TAIL0372 = tuple(f"{i:06d}" for i in range(110, 130, 4))
SELECT_SETS = ("gopro0374", "x4k", "samples")


@dataclass(frozen=True)
class EvalPair:
    set_name: str
    name: str
    blur_u8: np.ndarray
    sharp_u8: np.ndarray


@dataclass(frozen=True)
class HeldOut:
    pairs: list[EvalPair]
    select_sets: tuple[str, ...] = SELECT_SETS

    @property
    def sets(self) -> list[str]:
        return sorted({p.set_name for p in self.pairs})


def load_heldout(root: Path) -> HeldOut:
    """The held-out sets from the shared data folder ``root`` (layout of ``shared/data``)."""
    pairs: list[EvalPair] = []
    for p in find_pairs(root / "gopro_train_more" / "GOPR0374_11_00"):
        if p.name.split("/")[-1] in GOPRO0374_SKIP:
            continue
        pairs.append(EvalPair("gopro0374", p.name, *read_pair(p)))
    for name in X4K_HELDOUT:
        clip = read_clip(root / "x4k_1000fps" / f"{name}.mp4", fps=1000.0)
        for n in X4K_EVAL_WINDOWS:
            t0 = (len(clip.frames) - n) // 2
            blur, sharp = make_pair(clip, t0, n)
            pairs.append(EvalPair("x4k", f"{name}/avg{n}", blur, sharp))
    for p in find_pairs(root / "gopro_samples"):
        pairs.append(EvalPair("samples", p.name, *read_pair(p)))
    for p in find_pairs(root / "gopro_train" / "GOPR0372_07_00"):
        if p.name.split("/")[-1] in TAIL0372:
            pairs.append(EvalPair("tail0372", p.name, *read_pair(p)))
    return HeldOut(pairs)


def centre_crop(rgb_u8: np.ndarray, h: int = 384, w: int = 640) -> np.ndarray:
    H, W = rgb_u8.shape[:2]
    h, w = min(h, H), min(w, W)
    y, x = (H - h) // 2, (W - w) // 2
    return rgb_u8[y : y + h, x : x + w]


def restore_u8(
    model: nn.Module,
    rgb_u8: np.ndarray,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager[object]],
) -> np.ndarray:
    """One whole image through ``model`` (x_pm1 in and out), rounded back to uint8."""
    x = torch.from_numpy(np.ascontiguousarray(rgb_u8)).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
    with torch.inference_mode(), autocast():
        y = model(x.to(device))
    y = y.float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return y[0].permute(1, 2, 0).cpu().numpy()


def evaluate_heldout(
    model: nn.Module,
    heldout: HeldOut,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager[object]],
    *,
    full: bool = False,
) -> tuple[dict[str, float], float]:
    """(mean gain per set in dB, lowest PSNR of a sharp frame given as input)."""
    gains: dict[str, list[float]] = {}
    sharp_min = float("inf")
    for pair in heldout.pairs:
        blur, sharp = pair.blur_u8, pair.sharp_u8
        if not full:
            size = (512, 768) if blur.shape[1] > 1500 else (384, 640)
            blur, sharp = centre_crop(blur, *size), centre_crop(sharp, *size)
        out = restore_u8(model, blur, device, autocast)
        gains.setdefault(pair.set_name, []).append(psnr(out, sharp) - psnr(blur, sharp))
        same = restore_u8(model, sharp, device, autocast)
        sharp_min = min(sharp_min, psnr(same, sharp))
    return {k: float(np.mean(v)) for k, v in sorted(gains.items())}, sharp_min
