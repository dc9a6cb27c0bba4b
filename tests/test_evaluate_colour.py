"""The one PSNR/SSIM loop over pairs (deblurtool.evaluate) and the one colour conversion of video frames
(deblurtool.media.colour)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from conftest import identity_generator, make_video, smooth_rgb

from deblurtool.config import RuntimeConfig, TileConfig
from deblurtool.evaluate import evaluate_generator, score_each, score_pairs, spread_subset
from deblurtool.media.colour import to_rgb_u8
from deblurtool.metrics import psnr, ssim
from deblurtool.pairs import Pair, find_pairs, read_pair

CROPS = Path(__file__).resolve().parent / "data" / "crops"


def test_score_pairs_is_the_mean_of_each_pair() -> None:
    pairs = find_pairs(CROPS)
    each = list(score_each(pairs, lambda rgb: rgb[:, ::-1].copy()))
    for scored, pair in zip(each, pairs, strict=True):
        blur, sharp = read_pair(pair)
        assert scored.pair == pair and np.array_equal(scored.blur_rgb_u8, blur)
        assert scored.psnr == psnr(blur[:, ::-1], sharp) and scored.ssim == ssim(blur[:, ::-1], sharp)
    mean = score_pairs(pairs, lambda rgb: rgb[:, ::-1].copy())
    assert mean.count == 2 and mean.psnr == pytest.approx(np.mean([s.psnr for s in each]))
    # The blurry input itself (restore None) is what the identity generator gives, through the Deblurrer.
    baseline = score_pairs(pairs, None, resize=32)
    ours = evaluate_generator(
        identity_generator(), pairs, tile=TileConfig(0, 0, 1), runtime=RuntimeConfig("cpu", "fp32"), resize=32
    )
    assert ours == baseline and baseline.count == 2


def test_spread_subset() -> None:
    pairs = [Pair(str(i), Path(f"{i}b"), Path(f"{i}s")) for i in range(10)]
    assert [p.name for p in spread_subset(pairs, 3)] == ["0", "4", "9"]  # spread over scenes, not the first 3
    assert spread_subset(pairs, 0) == pairs and spread_subset(pairs, 20) == pairs


def test_decoded_frames_are_not_darkened(tmp_path: Path) -> None:
    """4:2:0 -> RGB through colour.to_rgb_u8 keeps the brightness; swscale's direct path loses ~1 level."""
    src = make_video(tmp_path / "a.mkv", frames=1, audio=False, codec="ffv1", width=64, height=48).path
    truth = smooth_rgb(0).astype(np.float64)
    with av.open(str(src)) as container:
        frame = next(container.decode(video=0))
        ours = to_rgb_u8(frame).astype(np.float64)
        direct = frame.to_ndarray(format="rgb24").astype(np.float64)
    assert abs((ours - truth).mean()) < 0.25
    assert (direct - truth).mean() < (ours - truth).mean() - 0.5  # the drift media/colour exists to avoid
