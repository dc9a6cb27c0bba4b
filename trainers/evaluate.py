"""The trainer's evaluation after each epoch: scores on the first data root's test split and the --eval-extra
pairs (through ``deblurtool.evaluate``, the loop ``bench`` uses), the sharp-input check, the best epoch."""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from deblurtool.config import RuntimeConfig
from deblurtool.evaluate import Scores, score_pairs, sharp_input_psnr, spread_subset
from deblurtool.pairs import Pair, find_pairs

if typing.TYPE_CHECKING:
    from trainers.config import TrainConfig


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
        from deblurtool.devices import precision_name, resolve_precision
        from deblurtool.inference import Deblurrer

        cfg = self.cfg
        resize = cfg.resize or None
        test_pairs = spread_subset(self.test.pairs, cfg.eval_limit)
        extra_pairs = spread_subset(self.extra_pairs, cfg.eval_limit)
        note = " (no split folders: these are the training pairs)" if self.test.shared else ""
        base = self._baseline("test", test_pairs, f"test pairs{note}")
        # The float model as users' float engines run it, never int8: precision auto would quantise (tens of
        # seconds) every epoch's new weights, and epochs are compared on what the network learned.
        precision = precision_name(resolve_precision("auto", device))
        runtime = RuntimeConfig(device=str(device), precision=precision)
        deblur = Deblurrer(generator, None, runtime).deblur_array
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
