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
4. optional mild JPEG of the sharp region before warping (each video frame was compressed; the blur averages
   compressed frames) and small read + shot noise on the blur.

Blur extent is drawn in pixels *at 720p content scale*: measured with Farneback flow between consecutive
GoPro blurry frames (GOPR0384_11_00, textured pixels) it has median ~10 px, 10th/90th percentiles ~3.5/20 px.
We draw a log-normal around that (plus a share of near-sharp samples) and rescale every source so that its
shorter side is about 720 px (see :func:`content_rescale`).

:func:`synthesize` is pure (numpy in, numpy out, all randomness from the given generator);
:func:`make_dataset` (behind ``deblurtool synth``) finds sources, plans every sample up front from the seed
and writes the GoPro layout ``OUT/{train,test}/SEQ/{blur,sharp}/NNNNNN.png``.
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing as mp
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from deblurtool.errors import InputError, OutputError

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
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


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
    margin = math.ceil(max(float(corner_px.max()), blur_px)) + 4
    region = _region(sharp_rgb_u8, x0 - margin, y0 - margin, cw + 2 * margin, ch + 2 * margin)

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
        "crop_xy": [x0, y0],
    }
    return blur_u8, sharp_out, info


# ---------------------------------------------------------------------------------------------------------
# Dataset: sources -> planned samples -> GoPro layout on disk
# ---------------------------------------------------------------------------------------------------------

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".ogv", ".mpg", ".mpeg", ".m4v"})


@dataclass(frozen=True)
class Item:
    """One sharp frame to sample from: a still image (``frame`` None) or one decoded frame of a video."""

    path: str
    seq: str
    frame: int | None = None


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to write one pair; ``key`` seeds its generator (order-independent)."""

    item: Item
    split: str
    name: str
    key: tuple[int, ...]


def _seq_name(rel: Path) -> str:
    stem = "__".join([*rel.parent.parts, rel.stem]) or rel.stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)


def count_video_frames(path: Path) -> int:
    """Frames in the first video stream, by demuxing packets (no decoding)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return sum(1 for p in container.demux(stream) if p.size)
    except (av.FFmpegError, IndexError) as e:
        raise InputError(f"cannot read video: {e}", path) from None


def find_items(src: Path, frames_per_video: int = 24, min_frame_gap: int = 8) -> list[list[Item]]:
    """Every source file under ``src`` (recursively, sorted) as a list of items; one list per source file.

    Consecutive video frames are near duplicates, so a video gives at most ``frames_per_video`` frames spread
    evenly through it, at least ``min_frame_gap`` frames apart.
    """
    if not src.is_dir():
        raise InputError("not a folder of images and videos", src)
    groups: list[list[Item]] = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        ext, seq = path.suffix.lower(), _seq_name(path.relative_to(src))
        if ext in IMAGE_EXTS:
            groups.append([Item(str(path), seq)])
        elif ext in VIDEO_EXTS:
            total = count_video_frames(path)
            k = max(1, min(frames_per_video, total // max(1, min_frame_gap)))
            idx = (
                sorted(set(np.rint(np.linspace(0, total - 1, k + 2)[1:-1]).astype(int).tolist()))
                if total
                else []
            )
            groups.append([Item(str(path), seq, i) for i in idx])
    return [g for g in groups if g]


def plan_tasks(
    groups: list[list[Item]], count: int, seed: int, test_fraction: float, test_count: int
) -> list[Task]:
    """Split source files into train/test (disjoint files) and spread ``count`` train pairs over their items.

    Held-out files are drawn from the still images first (video frames are the most GoPro-like content, so
    they are kept for training) unless there are too few. Every item gets ``count // items`` pairs, the
    remainder going to a seeded random subset, so the plan depends only on the sources and the seed.
    """
    rng = np.random.default_rng([seed, 1])
    order = list(rng.permutation(len(groups)))
    order.sort(key=lambda i: groups[i][0].frame is not None)  # stable: stills first, each kind shuffled
    n_test = (
        0
        if test_fraction <= 0 or len(groups) < 2
        else min(len(groups) - 1, max(1, round(test_fraction * len(groups))))
    )
    test_groups = [groups[i] for i in sorted(order[:n_test])]
    train_groups = [groups[i] for i in sorted(order[n_test:])]

    def spread(gs: list[list[Item]], total: int, split: str, split_id: int) -> list[Task]:
        items = [it for g in gs for it in g]
        if not items or total <= 0:
            return []
        per = np.full(len(items), total // len(items))
        per[rng.permutation(len(items))[: total % len(items)]] += 1
        tasks, next_name = [], {}
        for i, (it, k) in enumerate(zip(items, per, strict=True)):
            for j in range(int(k)):
                next_name[it.seq] = next_name.get(it.seq, 0) + 1
                tasks.append(Task(it, split, f"{next_name[it.seq]:06d}.png", (seed, split_id, i, j)))
        return tasks

    return spread(train_groups, count, "train", 0) + spread(
        test_groups, test_count if n_test else 0, "test", 1
    )


_image_cache: dict[str, np.ndarray] = {}
_video_cache: dict[str, dict[int, np.ndarray]] = {}


def read_image_rgb(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB (grey is replicated, alpha dropped); InputError naming the file if unreadable."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError("cannot read image", path)
    return np.ascontiguousarray(bgr[..., ::-1])


def read_video_frames(path: str | Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """The frames with the given 0-based decode indices, as HxWx3 uint8 RGB."""
    out: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    out[i] = frame.to_ndarray(format="rgb24")
                if len(out) == len(wanted):
                    break
    except (av.FFmpegError, IndexError) as e:
        raise InputError(f"cannot decode video: {e}", path) from None
    return out


def _load(item: Item, wanted_frames: set[int]) -> np.ndarray:
    if item.frame is None:
        if item.path not in _image_cache:
            _image_cache.clear()  # sources arrive grouped, so one cached image is enough
            # Reduce once to the largest content scale content_rescale can draw (720 x 1.1), not per pair.
            _image_cache[item.path] = content_rescale(read_image_rgb(item.path), short_side=792)
        return _image_cache[item.path]
    frames = _video_cache.setdefault(item.path, {})
    if item.frame not in frames:
        frames.update(read_video_frames(item.path, wanted_frames | {item.frame}))
    if item.frame not in frames:
        raise InputError(f"video has no frame {item.frame}", item.path)
    return frames[item.frame]


def _write_png(path: Path, rgb_u8: np.ndarray) -> None:
    """PNG written to a temporary name in the same folder, then renamed: no half-written final file."""
    ok, buf = cv2.imencode(".png", rgb_u8[..., ::-1])
    if not ok:
        raise OutputError("cannot encode PNG", path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write: {e.strerror}", path) from None


def run_tasks(
    tasks: list[Task], out: Path, params: SynthParams, wanted: dict[str, set[int]]
) -> list[dict[str, Any]]:
    """Synthesise and write the pairs of ``tasks`` (one worker's share); returns one record per pair."""
    records = []
    for t in tasks:
        rng = np.random.default_rng(list(t.key))
        frame = content_rescale(_load(t.item, wanted.get(t.item.path, set())), rng)
        if min(frame.shape[:2]) < 32:
            raise InputError(f"image too small ({frame.shape[1]}x{frame.shape[0]})", t.item.path)
        blur, sharp, info = synthesize(frame, rng, params)
        folder = out / t.split / t.item.seq
        for kind, img in (("blur", blur), ("sharp", sharp)):
            (folder / kind).mkdir(parents=True, exist_ok=True)
            _write_png(folder / kind / t.name, img)
        records.append(
            {
                "split": t.split,
                "seq": t.item.seq,
                "name": t.name,
                "source": t.item.path,
                "frame": t.item.frame,
                **info,
            }
        )
    return records


def _chunks(tasks: list[Task], size: int) -> list[list[Task]]:
    """Consecutive runs of tasks from the same source file, at most ``size`` long (keeps caches warm)."""
    chunks: list[list[Task]] = []
    for t in tasks:
        if chunks and len(chunks[-1]) < size and chunks[-1][-1].item.path == t.item.path:
            chunks[-1].append(t)
        else:
            chunks.append([t])
    return chunks


def make_dataset(
    src: Path,
    out: Path,
    count: int,
    params: SynthParams,
    seed: int = 0,
    test_fraction: float = 0.1,
    test_count: int = 12,
    frames_per_video: int = 24,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write ``count`` train pairs and ``test_count`` test pairs (from held-out source files) under ``out``.

    Layout ``out/{train,test}/SEQ/{blur,sharp}/NNNNNN.png`` (SEQ = one source file), plus
    ``out/manifest.json`` with the parameters and one record per pair. Same sources + seed + params =>
    byte-identical files, whatever ``workers`` is: every pair's generator is seeded from its own key.
    ``progress(done, total)`` is called after each chunk of pairs.
    """
    src, out = src.resolve(), out.resolve()
    if out == src or src in out.parents:
        raise OutputError("output folder must not lie inside the source folder", out)
    existing = [out / d for d in ("train", "test", "manifest.json") if (out / d).exists()]
    if existing and not overwrite:
        raise OutputError("already holds a dataset (use --overwrite to replace it)", out)
    groups = find_items(src, frames_per_video)
    if not groups:
        raise InputError("no images or videos found", src)
    tasks = plan_tasks(groups, count, seed, test_fraction, test_count)
    for p in existing:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    wanted: dict[str, set[int]] = {}
    for g in groups:
        for it in g:
            if it.frame is not None:
                wanted.setdefault(it.path, set()).add(it.frame)

    chunks = _chunks(tasks, 32)
    records: list[dict[str, Any]] = []
    done = 0
    job = functools.partial(run_tasks, out=out, params=params, wanted=wanted)
    if workers <= 1:
        results = map(job, chunks)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(workers)
        results = pool.imap(job, chunks)
    try:
        for recs in results:
            records.extend(recs)
            done += len(recs)
            if progress is not None:
                progress(done, len(tasks))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()

    manifest = {
        "seed": seed,
        "count": count,
        "test_count": sum(r["split"] == "test" for r in records),
        "params": asdict(params),
        "sources": sorted({it.path for g in groups for it in g}),
        "test_sources": sorted({r["source"] for r in records if r["split"] == "test"}),
        "samples": records,
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / "manifest.json")
    return manifest
