"""GoPro-like synthetic motion blur: camera trajectories averaged over 7-13 sub-frames.

GoPro_Large (Nah et al. 2017) made each blurry frame by averaging 7 to 13 consecutive 240 fps frames of a
hand-held camera; the sharp target is the middle frame. We imitate that on still images and video frames:

1. a random camera motion with inertia (a dominant pan with curvature, a smoothed random-walk shake, a small
   in-plane rotation about the frame centre and a small zoom), sampled at ``n`` equally spaced sub-frames and
   expressed relative to the middle sub-frame, so the target needs no warp at all (exact alignment);
2. one homography per sub-frame: rotation and zoom act about the *whole frame's* centre, which usually lies
   outside the crop, so the blur varies across the crop as it does in a real frame;
3. the sub-frames are averaged either in sRGB values (GoPro's ``blur`` folder) or in linear light (gamma 2.2
   undone, averaged, reapplied: GoPro's ``blur_gamma``), chosen at random with probability ``gamma``;
4. optional softening (Gaussian), sensor noise and JPEG of the sharp region before warping (each video
   frame went through a lens, a sensor, in-camera processing and compression; the blur averages such frames)
   and small read + shot noise on the blur.

Blur extent is drawn in pixels *at 720p content scale*: measured with Farneback flow between consecutive
GoPro blurry frames (GOPR0384_11_00, textured pixels) it has median ~10 px, 10th/90th percentiles ~3.5/20 px.
We draw a log-normal around that (plus a share of near-sharp samples) and rescale every source so that its
shorter side is about 720 px (see :func:`content_rescale`).

:func:`synthesize` is pure (numpy in, numpy out, all randomness from the given generator);
:func:`make_dataset` (behind ``deblurtool synth``) finds sources, plans every sample up front from the seed
and writes the GoPro layout ``OUT/{train,test}/SEQ/{blur,sharp}/NNNNNN.png``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

GAMMA_EXPONENT = 2.2


@dataclass(frozen=True)
class SynthParams:
    """Knobs of the blur model. Lengths are pixels at 720p content scale.

    ``blur_px`` fixes the extent of the motion at the crop centre (tests, sweeps); ``None`` draws it from
    the log-normal (``blur_median_px``, ``blur_sigma``) capped at ``blur_max_px``, or with probability
    ``sharp_share`` from [0, ``sharp_max_px``] so the model also sees nearly sharp input.
    """

    size: int = 512
    gamma: float = 0.5
    n_min: int = 7
    n_max: int = 13
    blur_px: float | None = None
    blur_median_px: float = 10.0
    blur_sigma: float = 0.7
    blur_max_px: float = 48.0
    sharp_share: float = 0.1
    sharp_max_px: float = 2.0
    curvature: float = 0.6
    shake: float = 0.35
    rotation: float = 0.5
    zoom: float = 0.25
    noise_max: float = 2.0 / 255.0
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (85, 98)
    soften_max: float = 0.0
    frame_noise: float = 0.0
    crop_xy: tuple[int, int] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"size must be >= 16, got {self.size}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma is a probability in [0, 1], got {self.gamma}")
        if not 1 <= self.n_min <= self.n_max:
            raise ValueError(f"need 1 <= n_min <= n_max, got {self.n_min}, {self.n_max}")
        if self.blur_px is not None and self.blur_px < 0:
            raise ValueError(f"blur_px must be >= 0, got {self.blur_px}")
        if self.soften_max < 0 or self.noise_max < 0:
            raise ValueError("soften_max and noise_max must be >= 0")


# ``v1``: the blur model as it was before it was measured against real GoPro pairs (the shipped model of
# issue 5 was trained on it, with blur_median_px 14 and blur_max_px 64). ``gopro``: calibrated on the genuine
# GoPro training pairs by scripts/calibrate_synth.py (the card's table): longer blur (a straight-blur fit
# gives median 16 px on GOPR0372_07_00 and 25 px on the other scenes, and no nearly sharp patch: sharp input
# is taught by the trainer's --sharp-share instead), sRGB averaging (GoPro's ``blur``: 1% of real patches
# are explained better by linear light), almost no added noise (GoPro's blurry frames are *less* noisy than
# its sharp ones: averaging removes noise), softer and block-compressed sharp frames (GoPro's are video
# frames: lower mean gradient, visible 8x8 steps).
PRESETS: dict[str, dict[str, object]] = {
    "v1": {},
    "gopro": {
        "blur_median_px": 14.0,
        "blur_sigma": 0.55,
        "blur_max_px": 64.0,
        "sharp_share": 0.0,
        "gamma": 0.05,
        "noise_max": 0.5 / 255.0,
        "jpeg_prob": 0.9,
        "jpeg_quality": (90, 97),
        "frame_noise": 0.35 / 255.0,
        "soften_max": 1.0,
    },
}


def preset(name: str, **overrides: object) -> SynthParams:
    """The named preset's parameters with ``overrides`` (None values ignored) on top."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    return SynthParams(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Motion:
    """Per-sub-frame camera motion relative to the middle sub-frame (index ``n // 2``, all zeros there).

    ``shift_px``: n x 2 translations (x, y); ``angle_rad``: n rotations; ``zoom``: n relative scale changes;
    ``centre_xy``: the rotation/zoom centre in source-image pixels.
    """

    shift_px: np.ndarray
    angle_rad: np.ndarray
    zoom: np.ndarray
    centre_xy: tuple[float, float]

    @property
    def n(self) -> int:
        return len(self.angle_rad)

    def matrices(self) -> list[np.ndarray]:
        """3x3 maps from middle-frame source coordinates to where sub-frame k samples the scene."""
        cx, cy = self.centre_xy
        to_c = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=np.float64)
        from_c = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]], dtype=np.float64)
        out = []
        for (tx, ty), a, z in zip(self.shift_px, self.angle_rad, self.zoom, strict=True):
            s = 1.0 + z
            rot = np.array(
                [[s * math.cos(a), -s * math.sin(a), 0], [s * math.sin(a), s * math.cos(a), 0], [0, 0, 1]]
            )
            shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64)
            out.append(from_c @ rot @ to_c @ shift)
        return out

    def extent_px(self, points_xy: np.ndarray) -> np.ndarray:
        """Largest distance between the positions of each point over the sub-frames (its blur extent)."""
        pts = np.concatenate([points_xy, np.ones((len(points_xy), 1))], axis=1).T  # 3 x P
        tracks = np.stack([(m @ pts)[:2] for m in self.matrices()])  # n x 2 x P
        diff = tracks[:, None] - tracks[None, :]
        return np.sqrt((diff**2).sum(axis=2)).max(axis=(0, 1))

    def scaled(self, k: float) -> Motion:
        return Motion(self.shift_px * k, self.angle_rad * k, self.zoom * k, self.centre_xy)


def draw_blur_px(rng: np.random.Generator, params: SynthParams) -> float:
    """Blur extent at the crop centre, in pixels at 720p content scale."""
    if params.blur_px is not None:
        return float(params.blur_px)
    if rng.random() < params.sharp_share:
        return float(rng.uniform(0.0, params.sharp_max_px))
    length = params.blur_median_px * math.exp(params.blur_sigma * rng.standard_normal())
    return float(min(length, params.blur_max_px))


def _smooth_walk(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random walk smoothed over ~a third of the exposure: hand shake within one exposure is low-pass."""
    steps = rng.standard_normal((n + 8, 2))
    walk = np.cumsum(steps, axis=0)
    kernel = np.hanning(7)
    kernel /= kernel.sum()
    smooth = np.stack([np.convolve(walk[:, i], kernel, mode="valid") for i in range(2)], axis=1)[:n]
    smooth -= np.linspace(smooth[0], smooth[-1], n)  # the dominant pan carries the drift; shake only wobbles
    return smooth / max(float(np.abs(smooth).max()), 1e-6)


def random_motion(
    rng: np.random.Generator,
    n: int,
    blur_px: float,
    frame_hw: tuple[int, int],
    crop_centre_xy: tuple[float, float],
    params: SynthParams,
) -> Motion:
    """A camera motion with blur extent ``blur_px`` at ``crop_centre_xy`` (rotation/zoom about frame centre).

    Shapes are drawn at unit scale (pan of length 1 px, rotation and zoom worth ``rotation``/``zoom`` px at
    500 px from the centre, about half a 720p frame), then scaled linearly to hit ``blur_px`` exactly at the
    crop centre: for the small motions of one exposure the extent is linear in the scale.
    """
    h, w = frame_hw
    centre = (w / 2 + rng.normal(0, 0.05 * w), h / 2 + rng.normal(0, 0.05 * h))
    if blur_px <= 0 or n == 1:
        zeros = np.zeros(n)
        return Motion(np.zeros((n, 2)), zeros, zeros.copy(), centre)
    s = np.linspace(0.0, 1.0, n)
    phi = rng.uniform(0, 2 * math.pi)
    pan = np.array([math.cos(phi), math.sin(phi)])
    accel = rng.normal(0, params.curvature, 2)
    shift = s[:, None] * pan + 0.5 * (s**2 - s)[:, None] * accel
    shift += rng.uniform(0, params.shake) * _smooth_walk(rng, n)
    angle = (s + rng.normal(0, 0.15, n) * params.shake) * rng.normal(0, params.rotation) / 500.0
    zoom = s * rng.normal(0, params.zoom) / 500.0
    mid = n // 2
    unit = Motion(shift - shift[mid], angle - angle[mid], zoom - zoom[mid], centre)
    e0 = float(unit.extent_px(np.array([crop_centre_xy]))[0])
    return unit.scaled(blur_px / max(e0, 1e-9))


def content_rescale(
    rgb_u8: np.ndarray, rng: np.random.Generator | None = None, short_side: int = 720, min_side: int = 256
) -> np.ndarray:
    """Area-downscale so the shorter side is about ``short_side`` (x0.8-1.1 jitter with ``rng``).

    GoPro frames are 1280x720: blur lengths in pixels only mean the same thing at the same content scale.
    Smaller sources are kept as they are, except that a shorter side below ``min_side`` is upsampled (cubic)
    to ``min_side`` so every pair holds a full training crop.
    """
    h, w = rgb_u8.shape[:2]
    target = short_side * (float(rng.uniform(0.8, 1.1)) if rng is not None else 1.0)
    scale = target / min(h, w)
    if scale >= 1.0:
        if min(h, w) >= min_side:
            return rgb_u8
        scale = min_side / min(h, w)
    size = (
        (max(min_side, round(w * scale)), max(min_side, round(h * scale)))
        if scale > 1
        else (max(1, round(w * scale)), max(1, round(h * scale)))
    )
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
    return cv2.resize(rgb_u8, size, interpolation=interp)


def _jpeg(rgb_u8: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", rgb_u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("JPEG decoding failed")
    return np.asarray(decoded)[..., ::-1]


def _region(rgb_u8: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """The h x w window at (x0, y0), reflect-padded where it leaves the image."""
    ih, iw = rgb_u8.shape[:2]
    pad = max(0, -x0, -y0, x0 + w - iw, y0 + h - ih)
    if pad:
        rgb_u8 = cv2.copyMakeBorder(rgb_u8, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    return rgb_u8[y0 + pad : y0 + pad + h, x0 + pad : x0 + pad + w]


def synthesize(
    sharp_rgb_u8: np.ndarray, rng: np.random.Generator, params: SynthParams
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Blur one crop of a whole sharp frame the way GoPro_Large did.

    ``sharp_rgb_u8``: HxWx3 uint8, a whole frame already at 720p content scale (rotation and zoom act about
    its centre). Returns ``(blur_rgb_u8, sharp_rgb_u8, info)``: two aligned crops of ``min(size, H)`` x
    ``min(size, W)`` (sharp = the middle sub-frame exactly, JPEG'd when JPEG was drawn) and a dict with the
    blur extent in pixels at the crop centre (``blur_px``) and corners (``corner_blur_px``), ``n``,
    ``linear_light``, ``noise_sigma``, ``jpeg_quality`` and the crop origin.
    """
    if sharp_rgb_u8.ndim != 3 or sharp_rgb_u8.shape[2] != 3 or sharp_rgb_u8.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8, got {sharp_rgb_u8.shape} {sharp_rgb_u8.dtype}")
    ih, iw = sharp_rgb_u8.shape[:2]
    ch, cw = min(params.size, ih), min(params.size, iw)
    n = int(rng.integers(params.n_min, params.n_max + 1))
    blur_px = draw_blur_px(rng, params)

    # Keep the crop far enough from the border that the warps read real pixels, not reflections.
    want = int(2 * blur_px + 8)
    if params.crop_xy is not None:
        x0, y0 = params.crop_xy
    else:
        mx, my = min(want, (iw - cw) // 2), min(want, (ih - ch) // 2)
        x0 = int(rng.integers(mx, iw - cw - mx + 1))
        y0 = int(rng.integers(my, ih - ch - my + 1))
    motion = random_motion(rng, n, blur_px, (ih, iw), (x0 + cw / 2, y0 + ch / 2), params)
    corners = np.array([[x0, y0], [x0 + cw, y0], [x0, y0 + ch], [x0 + cw, y0 + ch]], dtype=np.float64)
    corner_px = motion.extent_px(corners)
    # A multiple of 8, so JPEG's 8x8 grid falls on the crop's as a video codec's falls on its frame's.
    margin = 8 * math.ceil((max(float(corner_px.max()), blur_px) + 4) / 8)
    region = _region(sharp_rgb_u8, x0 - margin, y0 - margin, cw + 2 * margin, ch + 2 * margin)

    soften = 0.0
    if params.soften_max > 0:  # optics and in-camera processing: video frames are softer than photographs
        soften = float(rng.uniform(0.0, params.soften_max))
        if soften > 0.05:
            region = cv2.GaussianBlur(region, (0, 0), soften, borderType=cv2.BORDER_REFLECT_101)
    if params.frame_noise > 0:  # sensor noise of the frame itself: the target keeps it, the average thins it
        noisy = region.astype(np.float32) + params.frame_noise * 255.0 * rng.standard_normal(region.shape)
        region = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    jpeg_q = 0
    if rng.random() < params.jpeg_prob:
        jpeg_q = int(rng.integers(params.jpeg_quality[0], params.jpeg_quality[1] + 1))
        region = _jpeg(np.ascontiguousarray(region), jpeg_q)
    sharp_out = np.ascontiguousarray(region[margin : margin + ch, margin : margin + cw])

    linear = bool(rng.random() < params.gamma)
    src = region.astype(np.float32) / 255.0
    if linear:
        src = np.power(src, GAMMA_EXPONENT)
    # Output pixel u (crop coordinates) sits at u + (x0, y0) in the frame; sub-frame k samples M_k there.
    to_frame = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
    to_region = np.array([[1, 0, margin - x0], [0, 1, margin - y0], [0, 0, 1]], dtype=np.float64)
    acc = np.zeros((ch, cw, 3), dtype=np.float64)
    for k, m in enumerate(motion.matrices()):
        if k == n // 2:
            acc += src[margin : margin + ch, margin : margin + cw]
            continue
        warp = to_region @ m @ to_frame
        acc += cv2.warpPerspective(
            src,
            warp,
            (cw, ch),
            flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT_101,
        )
    blur = np.clip(acc / n, 0.0, 1.0)
    if linear:
        blur = np.power(blur, 1.0 / GAMMA_EXPONENT)

    # Total noise at mid-grey ~ U(0, noise_max), split at random between read (flat) and shot (~signal).
    sigma = float(rng.uniform(0.0, params.noise_max))
    share = float(rng.uniform(0.0, 1.0))
    sigma_read, shot = sigma * math.sqrt(1.0 - share), 2.0 * share * sigma**2
    if sigma > 0:
        std = np.sqrt(sigma_read**2 + shot * blur)
        blur = blur + std * rng.standard_normal(blur.shape)
    blur_u8 = np.clip(np.rint(blur * 255.0), 0, 255).astype(np.uint8)

    info: dict[str, Any] = {
        "blur_px": round(float(motion.extent_px(np.array([[x0 + cw / 2, y0 + ch / 2]]))[0]), 3),
        "corner_blur_px": [round(float(v), 3) for v in corner_px],
        "n": n,
        "linear_light": linear,
        "noise_sigma": round(sigma, 6),
        "jpeg_quality": jpeg_q,
        "soften_sigma": round(soften, 4),
        "crop_xy": [x0, y0],
    }
    return blur_u8, sharp_out, info
