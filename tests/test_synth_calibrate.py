"""The calibration statistics (trainers/synth/calibrate.py) measure what they say, and the calibrated preset
moves synthetic pairs towards them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_synth import texture

from trainers.synth.blur import PRESETS, SynthParams, draw_blur_px, preset, synthesize
from trainers.synth.calibrate import (
    averaging_domain,
    blockiness,
    fit_linear_blur,
    line_kernel,
    noise_sigma,
    pair_stats,
    summarize,
)


def test_line_kernel_is_normalised_and_has_its_length() -> None:
    k = line_kernel(10, 0)
    assert k.sum() == pytest.approx(1.0)
    cols = np.nonzero(k.sum(axis=0) > 1e-6)[0]
    assert 10 <= cols[-1] - cols[0] + 1 <= 12 and (k.sum(axis=1) > 1e-6).sum() <= 2
    assert np.array_equal(line_kernel(0, 45), np.ones((1, 1), np.float32))


@pytest.mark.parametrize(("length", "angle"), [(16, 0), (25, 90), (10, 45)])
def test_fit_recovers_a_straight_blur(length: int, angle: int) -> None:
    sharp = texture(240, 240, seed=1)
    blur = cv2.filter2D(sharp, -1, line_kernel(length, angle), borderType=cv2.BORDER_REFLECT)
    got_length, got_angle, explained = fit_linear_blur(sharp, blur, 60, 60)
    assert got_length == length and got_angle == angle and explained > 0.99


def test_averaging_domain_tells_srgb_from_linear_light() -> None:
    sharp = texture(240, 240, seed=2)
    k = line_kernel(16, 0)
    srgb = cv2.filter2D(sharp, -1, k, borderType=cv2.BORDER_REFLECT)
    lin = cv2.filter2D((sharp / 255.0) ** 2.2, -1, k, borderType=cv2.BORDER_REFLECT)
    lin_u8 = np.clip(np.rint(255 * lin ** (1 / 2.2)), 0, 255).astype(np.uint8)
    assert averaging_domain(sharp, srgb, 60, 60, 16, 0) < 0 < averaging_domain(sharp, lin_u8, 60, 60, 16, 0)


def test_noise_sigma_reads_added_noise() -> None:
    flat = np.full((200, 200, 3), 100, np.float32)
    rng = np.random.default_rng(0)
    noisy = np.clip(np.rint(flat + 3.0 * rng.standard_normal((200, 200, 1))), 0, 255).astype(np.uint8)
    sigma = noise_sigma(noisy.repeat(1, axis=2))
    assert np.isnan(sigma[0]) and sigma[1] == pytest.approx(3.0, rel=0.15)


def test_blockiness_sees_jpeg_blocks() -> None:
    img = texture(256, 256, seed=3)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 40])
    assert ok
    assert blockiness(img) == pytest.approx(1.0, abs=0.05)
    assert blockiness(cv2.imdecode(buf, cv2.IMREAD_COLOR)) > 1.2


def test_gopro_preset_matches_what_was_measured_on_real_pairs() -> None:
    """The calibrated preset draws longer blur, no nearly sharp samples, sRGB averaging in 95 % of pairs."""
    gopro = preset("gopro")
    assert gopro.blur_median_px > SynthParams().blur_median_px and gopro.sharp_share == 0
    rng = np.random.default_rng(0)
    draws = np.array([draw_blur_px(rng, gopro) for _ in range(4000)])
    assert 12 < np.median(draws) < 16 and np.mean(draws < 4) < 0.02
    assert preset("v1") == SynthParams()
    assert (
        preset("gopro", gamma=0.5).gamma == 0.5
        and preset("gopro", gamma=None).gamma == PRESETS["gopro"]["gamma"]
    )
    with pytest.raises(ValueError, match="preset must be one of"):
        preset("nope")


def test_calibrated_synthesis_is_deterministic_and_less_noisy_than_its_target() -> None:
    """Softening, frame noise and JPEG happen before the warps: the blurry image averages the target's noise
    away, as GoPro's blurry frames do (blur noise below sharp noise), and the seed fixes every byte."""
    img = texture(400, 400, seed=4)
    params = preset("gopro", size=192)
    a = synthesize(img, np.random.default_rng(9), params)
    b = synthesize(img, np.random.default_rng(9), params)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    stats = summarize(
        [
            pair_stats(*synthesize(img, np.random.default_rng(s), params)[:2], np.random.default_rng(s))
            for s in range(6)
        ]
    )
    noise_b = np.nanmean([stats[f"noise_blur_{lo}_{hi}"] for lo, hi in ((64, 128), (128, 192))])
    noise_s = np.nanmean([stats[f"noise_sharp_{lo}_{hi}"] for lo, hi in ((64, 128), (128, 192))])
    assert noise_b < noise_s
    assert stats["blur_p50"] >= 6


def test_calibrate_script_tables_named_sets(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from conftest import load_script
    from test_trainers_data import write_pair

    module = load_script("calibrate_synth")
    for name, length in (("a", 8), ("b", 20)):
        for i in range(2):
            sharp = texture(200, 220, seed=10 + i)
            blur = cv2.filter2D(sharp, -1, line_kernel(length, 0), borderType=cv2.BORDER_REFLECT)
            write_pair(tmp_path / name / "SEQ", f"{i:06d}", sharp[..., ::-1], blur[..., ::-1])
    args = [f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}", "--pairs", "2", "--json", str(tmp_path / "c.json")]
    assert module.main(args) == 0
    out = capsys.readouterr().out
    assert "| statistic | a | b |" in out
    assert "| blur length median | 8.0 | 20.0 |" in out
    assert module.main([f"x={tmp_path / 'missing'}"]) == 2
