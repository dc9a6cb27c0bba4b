"""PSNR and SSIM over blur/sharp pairs: the one scoring loop behind ``deblurtool bench --metrics`` and the
trainer's evaluation.

A model is scored through deblurtool's own ``Deblurrer`` (what users run is what is scored: the same
inference fusion, tiling, precision and 8-bit rounding), on uint8 images, with ``deblurtool.metrics``.
The protocol is part of the number: ``resize`` None (or 0) scores full-resolution frames; ``resize=S``
scores frames resized to SxS with INTER_AREA, blur and sharp alike, and runs the model on the resized blur
(the DeblurGAN report's protocol: resizing removes most of the blur, so it scores higher).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from deblurtool.config import RuntimeConfig, TileConfig
from deblurtool.metrics import psnr, ssim
from deblurtool.pairs import Pair, read_pair

Restore = Callable[[np.ndarray], np.ndarray]  # HxWx3 uint8 RGB -> the same


@dataclass(frozen=True)
class Scores:
    """Means over ``count`` images of per-image PSNR (dB) and SSIM."""

    psnr: float
    ssim: float
    count: int


@dataclass(frozen=True)
class PairScore:
    """One pair scored: the images compared (HxWx3 uint8 RGB, after any resize), the restored one's PSNR and
    SSIM against the sharp image, and the seconds ``restore`` took."""

    pair: Pair
    blur_rgb_u8: np.ndarray
    sharp_rgb_u8: np.ndarray
    out_rgb_u8: np.ndarray
    psnr: float
    ssim: float
    seconds: float


def spread_subset(pairs: Sequence[Pair], limit: int) -> list[Pair]:
    """``limit`` pairs spread evenly over the sorted list (all if ``limit`` <= 0 or >= len). GoPro's test
    split is sorted by sequence, so the first N would all come from one or two scenes."""
    if limit <= 0 or limit >= len(pairs):
        return list(pairs)
    picks = np.unique(np.linspace(0, len(pairs) - 1, limit).round().astype(int))
    return [pairs[i] for i in picks]


def load_pair(pair: Pair, resize: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(blur_rgb_u8, sharp_rgb_u8)`` of ``pair`` under the protocol (``resize`` SxS, or full frames)."""
    blur_rgb_u8, sharp_rgb_u8 = read_pair(pair)
    if resize:
        blur_rgb_u8 = cv2.resize(blur_rgb_u8, (resize, resize), interpolation=cv2.INTER_AREA)
        sharp_rgb_u8 = cv2.resize(sharp_rgb_u8, (resize, resize), interpolation=cv2.INTER_AREA)
    return blur_rgb_u8, sharp_rgb_u8


def score_each(
    pairs: Sequence[Pair], restore: Restore | None, *, resize: int | None = None
) -> Iterator[PairScore]:
    """Score ``restore(blur)`` against the sharp image, pair by pair. ``restore`` None scores the blurry input
    itself (the do-nothing reference a model must beat)."""
    for pair in pairs:
        blur_rgb_u8, sharp_rgb_u8 = load_pair(pair, resize)
        started = time.perf_counter()
        out_rgb_u8 = blur_rgb_u8 if restore is None else restore(blur_rgb_u8)
        seconds = time.perf_counter() - started
        yield PairScore(
            pair,
            blur_rgb_u8,
            sharp_rgb_u8,
            out_rgb_u8,
            psnr(out_rgb_u8, sharp_rgb_u8),
            ssim(out_rgb_u8, sharp_rgb_u8),
            seconds,
        )


def score_pairs(pairs: Sequence[Pair], restore: Restore | None, *, resize: int | None = None) -> Scores:
    """Mean PSNR/SSIM of :func:`score_each` (plain means of the per-image scores)."""
    if not pairs:
        raise ValueError("no pairs to score")
    p_sum, s_sum = 0.0, 0.0
    for scored in score_each(pairs, restore, resize=resize):  # one pair's images in memory at a time
        p_sum += scored.psnr
        s_sum += scored.ssim
    return Scores(p_sum / len(pairs), s_sum / len(pairs), len(pairs))


def evaluate_generator(
    model: torch.nn.Module,
    pairs: Sequence[Pair],
    *,
    tile: TileConfig | None = None,
    runtime: RuntimeConfig | None = None,
    resize: int | None = None,
) -> Scores:
    """Scores of ``model`` (a generator of a registered architecture; left untouched: the Deblurrer runs its
    inference-fused copy).

    ``tile`` None uses the device's default tiling, as ``deblurtool folder`` does.
    """
    from deblurtool.inference import Deblurrer

    return score_pairs(pairs, Deblurrer.from_model(model, tile, runtime).deblur_array, resize=resize)


def sharp_input_psnr(pairs: Sequence[Pair], restore: Restore, *, resize: int | None = None) -> list[float]:
    """PSNR (dB) of ``restore(sharp)`` against ``sharp`` for each pair's sharp image: how much a model changes
    input that needs no deblurring (40 dB and above: no visible change). Identical output scores +inf."""
    out = []
    for pair in pairs:
        _, sharp_rgb_u8 = load_pair(pair, resize)
        out.append(psnr(restore(sharp_rgb_u8), sharp_rgb_u8))
    return out
