"""Moved to :mod:`deblurtool.evaluate` (the one PSNR/SSIM loop over pairs, shared with ``bench``); this
re-export keeps the trainer's imports working until they point there."""

from deblurtool.evaluate import Scores, evaluate_generator, score_pairs, spread_subset

__all__ = ["Scores", "evaluate_generator", "score_pairs", "spread_subset"]
