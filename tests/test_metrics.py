"""deblurtool.metrics against scikit-image on genuine blur/sharp pairs: our numbers are standard."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deblurtool.metrics import psnr, ssim
from deblurtool.pairs import find_pairs, read_pair

REPO = Path(__file__).resolve().parents[1]


def _real_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The two 125x50 crops (GoPro, RealBlur) and a 320x192 window of a full GoPro frame (small: fast)."""
    out = []
    for pair in find_pairs(REPO / "tests" / "data" / "crops"):
        blur, sharp = read_pair(pair)
        out.append((pair.name, blur, sharp))
    gopro = find_pairs(REPO / "samples" / "gopro")[0]
    blur, sharp = read_pair(gopro)
    out.append((gopro.name, blur[300:492, 500:820], sharp[300:492, 500:820]))
    return out


REAL = _real_pairs()


def _sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        structural_similarity(
            a,
            b,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )
    )


@pytest.mark.parametrize(("name", "blur", "sharp"), REAL, ids=[r[0] for r in REAL])
def test_psnr_matches_scikit_image(name: str, blur: np.ndarray, sharp: np.ndarray) -> None:
    ours = psnr(blur, sharp)
    ref = float(peak_signal_noise_ratio(sharp, blur, data_range=255))
    assert 10.0 < ours < 40.0  # a real blurry/sharp pair, not identical images
    assert ours == pytest.approx(ref, abs=0.01)


@pytest.mark.parametrize(("name", "blur", "sharp"), REAL, ids=[r[0] for r in REAL])
def test_ssim_matches_scikit_image(name: str, blur: np.ndarray, sharp: np.ndarray) -> None:
    ours = ssim(blur, sharp)
    ref = _sk_ssim(blur, sharp)
    assert 0.2 < ours < 0.99
    assert ours == pytest.approx(ref, abs=0.002)


def test_tensor_inputs_agree_with_numpy() -> None:
    """CxHxW and NxCxHxW tensors score the same as the HxWx3 arrays they came from."""
    _, blur, sharp = REAL[0]
    bt = torch.from_numpy(blur).permute(2, 0, 1)
    st = torch.from_numpy(sharp).permute(2, 0, 1)
    assert psnr(bt, st) == pytest.approx(psnr(blur, sharp), abs=1e-9)
    assert ssim(bt[None], st[None]) == pytest.approx(ssim(blur, sharp), abs=1e-9)


def test_identical_images_give_inf_psnr_and_ssim_one() -> None:
    _, _, sharp = REAL[0]
    assert math.isinf(psnr(sharp, sharp.copy()))
    assert ssim(sharp, sharp.copy()) == pytest.approx(1.0, abs=1e-12)


def test_scores_worsen_with_more_noise() -> None:
    """Monotone in the error: a sanity check that the sign conventions are right."""
    _, _, sharp = REAL[0]
    rng = np.random.default_rng(0)
    noise = rng.normal(size=sharp.shape)
    small = np.clip(sharp + 3 * noise, 0, 255).astype(np.uint8)
    large = np.clip(sharp + 20 * noise, 0, 255).astype(np.uint8)
    assert psnr(small, sharp) > psnr(large, sharp)
    assert ssim(small, sharp) > ssim(large, sharp)


def test_shape_mismatch_raises() -> None:
    _, blur, sharp = REAL[0]
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(blur[:-1], sharp)
    with pytest.raises(ValueError, match="shape mismatch"):
        ssim(blur, sharp[:, :-2])
