"""PSNR and SSIM in torch, shared by ``bench`` and ``trainers``.

Conventions (say which protocol a number is on): images are compared as 8-bit values, ``data_range`` 255.
SSIM is the Gaussian-window SSIM (11 taps, sigma 1.5, K1 0.01, K2 0.03, per RGB channel, averaged): the MATLAB
convention, equal to scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255)``. The tests check both against scikit-image on real pairs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _as_nchw(img: np.ndarray | torch.Tensor) -> torch.Tensor:
    """HxWxC (numpy or torch) or NxCxHxW/CxHxW tensor -> NxCxHxW float64 on the same scale."""
    t = torch.from_numpy(np.ascontiguousarray(img)) if isinstance(img, np.ndarray) else img
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t.permute(2, 0, 1)[None] if isinstance(img, np.ndarray) else t[None]
    return t.to(torch.float64)


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB of two images of equal shape on the scale ``data_range``.

    numpy arrays are HxW or HxWxC; tensors are CxHxW or NxCxHxW (one score over the whole batch)."""
    x, y = _as_nchw(a), _as_nchw(b)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(y.shape)}")
    mse = torch.mean((x - y) ** 2).item()
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, data_range: float = 255.0) -> float:
    """Gaussian-window SSIM (see module docstring), mean over channels and the valid window positions."""
    x, y = _as_nchw(a), _as_nchw(b)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(y.shape)}")
    c = x.shape[1]
    g = _gaussian_window()
    kh = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    kw = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable, 'valid' as scikit-image crops its borders
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean().item())
