"""The trainer's evaluation after each epoch: scores on the first data root's test split and the --eval-extra
pairs (through ``deblurtool.evaluate``, the loop ``bench`` uses), the sharp-input check, the best epoch."""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from deblurtool.config import RuntimeConfig
from deblurtool.evaluate import Scores, score_pairs, sharp_input_psnr, spread_subset
from deblurtool.pairs import Pair, find_pairs
from trainers.run_files import EpochScores

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

    def evaluate(self, generator: torch.nn.Module, device: torch.device) -> tuple[EpochScores, Scores]:
        """The epoch's scores of ``generator`` (test split, its input, extras, sharp check, the --select
        score), and the test split's own ``Scores``."""
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
        deblur = Deblurrer.from_model(generator, None, runtime).deblur_array
        scores = score_pairs(test_pairs, deblur, resize=resize)
        gains = [scores.psnr - base[0]]
        extra: dict[str, float] = {}
        if extra_pairs:
            ex_base = self._baseline("extra", extra_pairs, "extra pairs")
            ex = score_pairs(extra_pairs, deblur, resize=resize)
            gains.append(ex.psnr - ex_base[0])
            extra = {
                "extra_psnr": ex.psnr,
                "extra_ssim": ex.ssim,
                "extra_input_psnr": ex_base[0],
                "extra_input_ssim": ex_base[1],
            }
        sharp: dict[str, float] = {}
        if cfg.sharp_check:
            frames = spread_subset([*self.test.pairs, *self.extra_pairs], cfg.sharp_check)
            change = sharp_input_psnr(frames, deblur, resize=resize)
            sharp = {"sharp_min_psnr": min(change), "sharp_mean_psnr": float(np.mean(change))}
        score = scores.psnr if cfg.select == "test" else float(np.mean(gains))
        fields_ = EpochScores(scores.psnr, scores.ssim, base[0], base[1], score, **extra, **sharp)
        return fields_, scores

    def is_best(self, epoch: EpochScores, best: Mapping[str, float]) -> bool:
        """Better than ``best`` by the --select score (SSIM breaks ties) and, with --sharp-check, leaving
        every sharp frame at least --sharp-floor dB from itself: an epoch that harms sharp input is never
        exported as best, however well it deblurs."""
        if self.cfg.sharp_check and (
            epoch.sharp_min_psnr is None or epoch.sharp_min_psnr < self.cfg.sharp_floor
        ):
            return False
        return (epoch.select_score, epoch.ssim) > (float(best.get("score", best["psnr"])), best["ssim"])
