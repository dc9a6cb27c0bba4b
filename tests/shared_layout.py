"""Tiny stand-ins for the training data: lossless clips of known motion and a miniature ``shared/data`` tree.

``moving_bar`` is the clip whose averages are known exactly: a bright vertical bar moving one pixel a frame.
``make_shared_data`` lays out every folder and file name that ``trainers.mix.default_mix`` and
``trainers.holdout.load_heldout`` read, at a few dozen pixels a side, so the real loaders run in a test.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

BAR_X0, BAR_W = 4, 3


def moving_bar(t: int, h: int = 24, w: int = 48, level: int = 255) -> np.ndarray:
    """TxHxWx3 uint8: black frames, a bar of ``level`` over columns ``BAR_X0 + k .. + BAR_W`` in frame k."""
    frames = np.zeros((t, h, w, 3), np.uint8)
    for k in range(t):
        frames[k, :, BAR_X0 + k : BAR_X0 + k + BAR_W] = level
    return frames


def bar_coverage(k0: int, n: int, w: int) -> np.ndarray:
    """For each column, how many of frames ``k0 .. k0+n-1`` of ``moving_bar`` cover it."""
    cover = np.zeros(w, int)
    for k in range(k0, k0 + n):
        cover[BAR_X0 + k : BAR_X0 + k + BAR_W] += 1
    return cover


def write_lossless_video(path: Path, frames_u8: np.ndarray, rate: int = 25) -> Path:
    """A lossless video (FFV1 in .mkv, PNG in .mp4 and others): decodes to exactly ``frames_u8`` (TxHxWx3
    RGB) through the tool's readers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    codec, pix_fmt = ("ffv1", "bgr0") if path.suffix == ".mkv" else ("png", "rgb24")
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames_u8.shape[2], frames_u8.shape[1], pix_fmt
        for f in frames_u8:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_png(path: Path, rgb_u8: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb_u8, cv2.COLOR_RGB2BGR))


def textured_clip(rng: np.random.Generator, t: int, h: int, w: int, speed: int = 1) -> np.ndarray:
    """A smooth random texture panning ``speed`` pixels a frame (TxHxWx3 uint8)."""
    big = cv2.resize(
        rng.integers(0, 256, ((h + 8) // 4, (w + speed * t + 8) // 4, 3)).astype(np.uint8),
        (w + speed * t + 8, h + 8),
        interpolation=cv2.INTER_CUBIC,
    )
    return np.stack([big[4 : 4 + h, speed * k : speed * k + w] for k in range(t)])


def _pair(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    clip = textured_clip(rng, 5, h, w, speed=2)
    return clip.mean(axis=0).round().astype(np.uint8), clip[2]


def make_shared_data(root: Path, *, size: tuple[int, int] = (48, 64), seed: int = 0) -> Path:
    """A miniature ``shared/data``: every set the default mix trains on and every held-out set, 1-3 pairs
    or 20-frame clips each, ``size`` = (h, w)."""
    rng = np.random.default_rng(seed)
    h, w = size

    def pairs(folder: Path, stems: list[str], blur_dir: str = "blur") -> None:
        for stem in stems:
            blur, sharp = _pair(rng, h, w)
            write_png(folder / blur_dir / f"{stem}.png", blur)
            write_png(folder / "sharp" / f"{stem}.png", sharp)

    pairs(root / "gopro_train" / "GOPR0372_07_00", ["000047", "000048", "000110", "000114"])
    pairs(root / "gopro_train" / "GOPR_UNKNOWN_TRAIN", ["liucmu_0"], blur_dir="blur_gamma")
    pairs(root / "gopro_train_more" / "GOPR0384_11_02", ["000100_avg8"])
    pairs(root / "gopro_train_more" / "GOPR0477_11_00", ["000664_avg8"])
    pairs(root / "gopro_train_more" / "GOPR0374_11_00", ["000619_avg8", "000807_avg10"])
    pairs(root / "gopro_samples" / "GOPR0384_11_00", ["000001"])
    write_lossless_video(root / "gopro_240fps" / "GOPR0477_11_00_240fps.mkv", textured_clip(rng, 20, h, w))
    for name in ("TEST01_003_f0433_2k", "TEST03_081_f4833_2k", "TEST08_079_f0321_2k"):
        write_lossless_video(root / "x4k_1000fps" / f"{name}.mp4", textured_clip(rng, 20, h, w))
    return root
