"""Statistics that tell real GoPro pairs from synthetic ones, measured the same way on both.

Each function takes HxWx3 uint8 RGB images (a blurry frame and its sharp partner) and returns plain numbers,
so ``scripts/calibrate_synth.py`` can put real and synthetic sets side by side:

- ``fit_linear_blur``: the straight motion blur (length in pixels, angle) that best maps a sharp patch onto
  its blurry partner. Real camera motion is not a straight line, but the fitted length is a fair, symmetric
  measure of blur extent: both sets go through the same estimator.
- ``averaging_domain``: with that kernel, does averaging in sRGB values (GoPro's ``blur``) or in linear light
  (GoPro's ``blur_gamma``) explain the blurry patch better?
- ``noise_sigma``: noise level (Immerkaer's Laplacian estimator on flat pixels), per brightness band.
- ``clipped_share``: share of pixels with a channel at 250 or above (saturated highlights).
- ``blockiness``: mean absolute step across 8-pixel block edges over the mean step elsewhere (1: none).
- ``sharpness``: mean absolute gradient of the sharp frame (how much fine detail the targets hold).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence

import cv2
import numpy as np

LENGTHS = (0, 2, 4, 6, 8, 10, 13, 16, 20, 25, 30, 36, 44)
ANGLES = tuple(range(0, 180, 15))
GAMMA = 2.2
LEVEL_BANDS = ((0, 64), (64, 128), (128, 192), (192, 256))


def gray(rgb_u8: np.ndarray) -> np.ndarray:
    return rgb_u8.astype(np.float32).mean(axis=2)


def line_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A normalised straight-motion kernel: ``length`` pixels long (0: the identity), centred."""
    if length <= 0:
        return np.ones((1, 1), np.float32)
    half = math.ceil(length / 2) + 1
    k = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    t = np.linspace(-length / 2, length / 2, int(4 * length) + 1)
    xs = half + t * math.cos(math.radians(angle_deg))
    ys = half - t * math.sin(math.radians(angle_deg))
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, w in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        np.add.at(k, (y0 + dy, x0 + dx), w)
    return k / k.sum()


def textured_patches(
    sharp_u8: np.ndarray, rng: np.random.Generator, *, count: int, size: int, margin: int, tries: int = 8
) -> list[tuple[int, int]]:
    """Top-left corners of ``count`` patches (``size`` + ``margin`` on each side inside the frame), each the
    most textured of ``tries`` random candidates: flat patches say nothing about blur."""
    g = gray(sharp_u8)
    h, w = g.shape
    grad = np.abs(np.diff(g, axis=1))[:-1] + np.abs(np.diff(g, axis=0))[:, :-1]
    out = []
    for _ in range(count):
        ys = rng.integers(margin, h - size - margin, tries)
        xs = rng.integers(margin, w - size - margin, tries)
        scores = [grad[y : y + size, x : x + size].mean() for y, x in zip(ys, xs, strict=True)]
        best = int(np.argmax(scores))
        out.append((int(ys[best]), int(xs[best])))
    return out


def _fit_errors(sharp_region: np.ndarray, blur_patch: np.ndarray, margin: int) -> np.ndarray:
    """MSE of every (length, angle) candidate: len(LENGTHS) x len(ANGLES)."""
    size = blur_patch.shape[0]
    errors = np.empty((len(LENGTHS), len(ANGLES)))
    for i, length in enumerate(LENGTHS):
        for j, angle in enumerate(ANGLES):
            if length == 0 and j:
                errors[i, j] = errors[i, 0]
                continue
            out = cv2.filter2D(sharp_region, -1, line_kernel(length, angle), borderType=cv2.BORDER_REFLECT)
            diff = out[margin : margin + size, margin : margin + size] - blur_patch
            errors[i, j] = float(np.mean(diff * diff))
    return errors


def fit_linear_blur(
    sharp_u8: np.ndarray, blur_u8: np.ndarray, top: int, left: int, *, size: int = 96, margin: int = 24
) -> tuple[float, float, float]:
    """``(length_px, angle_deg, explained)`` of the best straight blur for one patch, fitted in sRGB values.

    ``explained`` is 1 - MSE(best) / MSE(no blur): near 1 when a straight blur accounts for the difference,
    near 0 when nothing does (misalignment, moving objects, noise only)."""
    region = gray(sharp_u8[top - margin : top + size + margin, left - margin : left + size + margin])
    patch = gray(blur_u8[top : top + size, left : left + size])
    errors = _fit_errors(region, patch, margin)
    i, j = np.unravel_index(int(np.argmin(errors)), errors.shape)
    explained = 1.0 - errors[i, j] / max(errors[0, 0], 1e-9)
    return float(LENGTHS[i]), float(ANGLES[j]), float(explained)


def averaging_domain(
    sharp_u8: np.ndarray,
    blur_u8: np.ndarray,
    top: int,
    left: int,
    length: float,
    angle: float,
    *,
    size: int = 96,
    margin: int = 24,
) -> float:
    """MSE(sRGB averaging) - MSE(linear-light averaging) of one patch under its fitted kernel, in 8-bit
    levels squared: positive when linear light explains the blurry patch better."""
    region = sharp_u8[top - margin : top + size + margin, left - margin : left + size + margin].astype(
        np.float32
    )
    patch = blur_u8[top : top + size, left : left + size].astype(np.float32)
    kernel = line_kernel(length, angle)
    srgb = cv2.filter2D(region, -1, kernel, borderType=cv2.BORDER_REFLECT)
    lin = cv2.filter2D((region / 255.0) ** GAMMA, -1, kernel, borderType=cv2.BORDER_REFLECT)
    lin = 255.0 * np.clip(lin, 0, 1) ** (1 / GAMMA)
    crop = slice(margin, margin + size)
    return float(np.mean((srgb[crop, crop] - patch) ** 2) - np.mean((lin[crop, crop] - patch) ** 2))


def noise_sigma(rgb_u8: np.ndarray, bands: Sequence[tuple[int, int]] = LEVEL_BANDS) -> list[float]:
    """Noise standard deviation (8-bit levels) per brightness band, from the Laplacian-difference mask on the
    flattest third of the pixels (edges would read as noise); NaN for a band with too few such pixels."""
    g = gray(rgb_u8)
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    resp = np.abs(cv2.filter2D(g, -1, mask, borderType=cv2.BORDER_REFLECT))[1:-1, 1:-1]
    sobel2 = cv2.Sobel(g, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(g, cv2.CV_32F, 0, 1) ** 2
    grad = np.asarray(cv2.GaussianBlur(sobel2, (0, 0), 2.0))[1:-1, 1:-1]
    level = cv2.blur(g, (5, 5))[1:-1, 1:-1]
    out = []
    for lo, hi in bands:
        sel = (level >= lo) & (level < hi)
        if sel.sum() < 500:
            out.append(float("nan"))
            continue
        flat = grad[sel] <= np.quantile(grad[sel], 1 / 3)
        # For white noise of std s, E|mask * noise| = s * sqrt(36) * sqrt(2/pi) (the mask's L2 norm is 6).
        out.append(float(resp[sel][flat].mean() * math.sqrt(math.pi / 2) / 6.0))
    return out


def clipped_share(rgb_u8: np.ndarray, level: int = 250) -> float:
    return float((rgb_u8.max(axis=2) >= level).mean())


def blockiness(rgb_u8: np.ndarray, block: int = 8) -> float:
    """Mean |horizontal + vertical step| across block edges over the mean elsewhere (1.0: no blocking)."""
    g = gray(rgb_u8)
    dx = np.abs(np.diff(g, axis=1))
    dy = np.abs(np.diff(g, axis=0))
    edge_x = (np.arange(dx.shape[1]) % block) == block - 1
    edge_y = (np.arange(dy.shape[0]) % block) == block - 1
    at = dx[:, edge_x].mean() + dy[edge_y].mean()
    off = dx[:, ~edge_x].mean() + dy[~edge_y].mean()
    return float(at / max(off, 1e-9))


def sharpness(rgb_u8: np.ndarray) -> float:
    g = gray(rgb_u8)
    return float(np.abs(np.diff(g, axis=1)).mean() + np.abs(np.diff(g, axis=0)).mean())


def pair_stats(
    blur_u8: np.ndarray, sharp_u8: np.ndarray, rng: np.random.Generator, *, patches: int = 6
) -> dict[str, object]:
    """Every statistic of one pair; blur lengths and domains per textured patch."""
    size, margin = 96, 24
    h, w = sharp_u8.shape[:2]
    fits, domains = [], []
    if min(h, w) >= size + 2 * margin + 2:
        for top, left in textured_patches(sharp_u8, rng, count=patches, size=size, margin=margin):
            length, angle, explained = fit_linear_blur(sharp_u8, blur_u8, top, left, size=size, margin=margin)
            fits.append((length, angle, explained))
            if length >= 6:  # too little blur to tell one averaging from the other
                domains.append(averaging_domain(sharp_u8, blur_u8, top, left, length, angle, size=size))
    return {
        "fits": fits,
        "domains": domains,
        "noise_blur": noise_sigma(blur_u8),
        "noise_sharp": noise_sigma(sharp_u8),
        "clipped_blur": clipped_share(blur_u8),
        "clipped_sharp": clipped_share(sharp_u8),
        "blockiness_sharp": blockiness(sharp_u8),
        "sharpness_sharp": sharpness(sharp_u8),
        "mean_shift": float(blur_u8.astype(np.float32).mean() - sharp_u8.astype(np.float32).mean()),
    }


def summarize(stats: Sequence[dict[str, object]]) -> dict[str, float]:
    """The figures of a set: blur-length percentiles, share of linear-light patches, noise per band, ..."""
    fits = [f for s in stats for f in typing.cast(list[tuple[float, float, float]], s["fits"])]
    lengths = np.array([f[0] for f in fits], dtype=np.float64)
    explained = np.array([f[2] for f in fits], dtype=np.float64)
    domains = np.array([d for s in stats for d in typing.cast(list[float], s["domains"])], dtype=np.float64)
    out: dict[str, float] = {"pairs": float(len(stats)), "patches": float(len(lengths))}
    if len(lengths):
        for q in (10, 25, 50, 75, 90):
            out[f"blur_p{q}"] = float(np.percentile(lengths, q))
        out["share_under_4px"] = float(np.mean(lengths < 4))
        out["explained_median"] = float(np.median(explained))
    out["linear_light_share"] = float(np.mean(domains > 0)) if len(domains) else float("nan")
    for kind in ("blur", "sharp"):
        bands = np.array([s[f"noise_{kind}"] for s in stats], dtype=float)
        for b, (lo, hi) in enumerate(LEVEL_BANDS):
            out[f"noise_{kind}_{lo}_{hi}"] = (
                float(np.nanmedian(bands[:, b])) if np.isfinite(bands[:, b]).any() else float("nan")
            )
    for key in ("clipped_blur", "clipped_sharp", "blockiness_sharp", "sharpness_sharp", "mean_shift"):
        out[key] = float(np.mean([float(s[key]) for s in stats]))  # type: ignore[arg-type]
    return out
