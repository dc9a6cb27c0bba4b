"""Full-frame PSNR and SSIM of a generator through deblurtool's own ``Deblurrer`` (what users run is what is
scored: the same BN folding, tiling, precision and 8-bit rounding), compared on uint8 images.

Scores are means over images of per-image PSNR (dB) and Gaussian SSIM (``deblurtool.metrics``). The
protocol is part of the number: ``resize`` None scores full-resolution frames; ``resize=S`` scores frames
resized to SxS (the DeblurGAN report's protocol: resizing removes most of the blur, so it scores higher).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from deblurtool.config import RuntimeConfig, TileConfig
from deblurtool.metrics import psnr, ssim
from deblurtool.pairs import Pair, read_pair


@dataclass(frozen=True)
class Scores:
    psnr: float
    ssim: float
    count: int


def spread_subset(pairs: Sequence[Pair], limit: int) -> list[Pair]:
    """``limit`` pairs spread evenly over the sorted list (all if ``limit`` <= 0 or >= len). GoPro's test
    split is sorted by sequence, so the first N would all come from one or two scenes."""
    if limit <= 0 or limit >= len(pairs):
        return list(pairs)
    picks = np.unique(np.linspace(0, len(pairs) - 1, limit).round().astype(int))
    return [pairs[i] for i in picks]


def score_pairs(
    pairs: Sequence[Pair],
    restore: Callable[[np.ndarray], np.ndarray] | None,
    *,
    resize: int | None = None,
) -> Scores:
    """Mean PSNR/SSIM of ``restore(blur_rgb_u8)`` (HxWx3 uint8 -> same) against the sharp images.

    ``restore`` None scores the blurry input itself (the reference a model must beat).
    """
    if not pairs:
        raise ValueError("no pairs to score")
    p_sum, s_sum = 0.0, 0.0
    for pair in pairs:
        blur_u8, sharp_u8 = read_pair(pair)
        if resize:
            blur_u8 = cv2.resize(blur_u8, (resize, resize), interpolation=cv2.INTER_AREA)
            sharp_u8 = cv2.resize(sharp_u8, (resize, resize), interpolation=cv2.INTER_AREA)
        out_u8 = blur_u8 if restore is None else restore(blur_u8)
        p_sum += psnr(out_u8, sharp_u8)
        s_sum += ssim(out_u8, sharp_u8)
    return Scores(p_sum / len(pairs), s_sum / len(pairs), len(pairs))


def evaluate_generator(
    model: torch.nn.Module,
    pairs: Sequence[Pair],
    *,
    tile: TileConfig | None = None,
    runtime: RuntimeConfig | None = None,
    resize: int | None = None,
) -> Scores:
    """Scores of ``model`` (a ResnetGenerator; left untouched: the Deblurrer works on a BN-folded copy).

    ``tile`` None uses the device's default tiling, as ``deblurtool folder`` does.
    """
    from deblurtool.inference import Deblurrer

    deblurrer = Deblurrer(model, tile, runtime)  # type: ignore[arg-type]
    return score_pairs(pairs, deblurrer.deblur_array, resize=resize)
