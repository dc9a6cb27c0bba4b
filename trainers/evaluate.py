"""Full-frame PSNR and SSIM of a generator through deblurtool's own ``Deblurrer`` (what users run is what is
scored: the same BN folding, tiling, precision and 8-bit rounding), compared on uint8 images.

Scores are means over images of per-image PSNR (dB) and Gaussian SSIM (``deblurtool.metrics``). The
protocol is part of the number: ``resize`` None scores full-resolution frames; ``resize=S`` scores frames
resized to SxS (the DeblurGAN report's protocol: resizing removes most of the blur, so it scores higher).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from deblurtool.config import RuntimeConfig, TileConfig
from deblurtool.metrics import psnr, ssim
from deblurtool.pairs import Pair, find_pairs, read_pair

if typing.TYPE_CHECKING:
    from trainers.config import TrainConfig


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


def sharp_input_psnr(
    pairs: Sequence[Pair],
    restore: Callable[[np.ndarray], np.ndarray],
    *,
    resize: int | None = None,
) -> list[float]:
    """PSNR (dB) of ``restore(sharp)`` against ``sharp`` for each pair's sharp image: how much a model changes
    input that needs no deblurring (40 dB and above: no visible change). Identical output scores +inf."""
    out = []
    for pair in pairs:
        _, sharp_u8 = read_pair(pair)
        if resize:
            sharp_u8 = cv2.resize(sharp_u8, (resize, resize), interpolation=cv2.INTER_AREA)
        out.append(psnr(restore(sharp_u8), sharp_u8))
    return out


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


class EpochEvaluator:
    """The trainer's scoring after each epoch: the first data root's test split, the --eval-extra pairs, the
    sharp-input check, and the --select score that picks the best epoch.

    ``baselines`` (the blurry input's own scores, computed once per run) travel in the checkpoint.
    """

    def __init__(self, cfg: TrainConfig, *, log: Callable[[str], None]) -> None:
        from trainers.data import BLUR_DIRS, split_pairs

        self.cfg, self.log = cfg, log
        self.test = split_pairs(Path(cfg.data[0]), "test", blur=cfg.blur)
        blur_dir = BLUR_DIRS[cfg.blur]
        self.extra_pairs = [p for d in cfg.eval_extra for p in find_pairs(Path(d), blur_dir=blur_dir)]
        self.baselines: dict[str, list[float]] = {}

    def _baseline(self, key: str, pairs: Sequence[Pair], what: str) -> list[float]:
        if key not in self.baselines:
            base = score_pairs(pairs, None, resize=self.cfg.resize or None)
            self.baselines[key] = [base.psnr, base.ssim]
            self.log(
                f"input (blurry) on {base.count} {what}: PSNR {base.psnr:.3f} dB, SSIM {base.ssim:.4f} "
                f"({self.cfg.protocol} protocol)"
            )
        return self.baselines[key]

    def evaluate(self, generator: torch.nn.Module, device: torch.device) -> tuple[dict[str, object], Scores]:
        """Scores of ``generator`` and the metrics-row fields they fill (psnr, ssim, input_*, extra_*,
        sharp_*, select_score)."""
        from deblurtool.inference import Deblurrer

        cfg = self.cfg
        resize = cfg.resize or None
        test_pairs = spread_subset(self.test.pairs, cfg.eval_limit)
        extra_pairs = spread_subset(self.extra_pairs, cfg.eval_limit)
        note = " (no split folders: these are the training pairs)" if self.test.shared else ""
        base = self._baseline("test", test_pairs, f"test pairs{note}")
        deblur = Deblurrer(generator, None, RuntimeConfig(device=str(device), precision="auto")).deblur_array
        scores = score_pairs(test_pairs, deblur, resize=resize)
        row: dict[str, object] = {
            "psnr": f"{scores.psnr:.4f}",
            "ssim": f"{scores.ssim:.5f}",
            "input_psnr": f"{base[0]:.4f}",
            "input_ssim": f"{base[1]:.5f}",
        }
        gains = [scores.psnr - base[0]]
        if extra_pairs:
            ex_base = self._baseline("extra", extra_pairs, "extra pairs")
            ex = score_pairs(extra_pairs, deblur, resize=resize)
            gains.append(ex.psnr - ex_base[0])
            row |= {
                "extra_psnr": f"{ex.psnr:.4f}",
                "extra_ssim": f"{ex.ssim:.5f}",
                "extra_input_psnr": f"{ex_base[0]:.4f}",
                "extra_input_ssim": f"{ex_base[1]:.5f}",
            }
        if cfg.sharp_check:
            sharp = spread_subset([*self.test.pairs, *self.extra_pairs], cfg.sharp_check)
            change = sharp_input_psnr(sharp, deblur, resize=resize)
            row |= {"sharp_min_psnr": f"{min(change):.3f}", "sharp_mean_psnr": f"{np.mean(change):.3f}"}
        score = scores.psnr if cfg.select == "test" else float(np.mean(gains))
        row["select_score"] = f"{score:.4f}"
        return row, scores

    def is_best(self, row: dict[str, object], scores: Scores, best: dict[str, float]) -> bool:
        """Better than ``best`` by the --select score (SSIM breaks ties) and, with --sharp-check, leaving
        every sharp frame at least --sharp-floor dB from itself: an epoch that harms sharp input is never
        exported as best, however well it deblurs."""
        if self.cfg.sharp_check and float(str(row["sharp_min_psnr"])) < self.cfg.sharp_floor:
            return False
        score = float(str(row["select_score"]))
        return (score, scores.ssim) > (float(best.get("score", best["psnr"])), best["ssim"])
