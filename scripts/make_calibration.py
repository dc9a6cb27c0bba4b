"""Write the int8 calibration crops shipped in deblurtool/engines/calibration/ (run once; for provenance).

8 crops of 256x256 from frames 5, 10, 15 and 19 of samples/GOPR0384_11_00_blur.mp4: real GoPro blur, never
frame 0 (the blurry half of a samples/gopro check pair) and never a sharp frame. In each frame: the crop with
the most texture (mean gradient) in the left and in the right half, so the activation ranges NNCF measures
come from detailed content, not flat sky.

    python scripts/make_calibration.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "samples" / "GOPR0384_11_00_blur.mp4"
OUT = ROOT / "deblurtool" / "engines" / "calibration"
FRAMES = (5, 10, 15, 19)
SIZE = 256


def busiest(rgb_u8: np.ndarray, x_lo: int, x_hi: int) -> tuple[int, int]:
    """Top-left of the SIZE crop with the highest mean gradient whose left edge lies in [x_lo, x_hi)."""
    gray = cv2.cvtColor(rgb_u8, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grad = np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    h, w = gray.shape
    best, where = -1.0, (0, x_lo)
    for y in range(0, h - SIZE + 1, 32):
        for x in range(x_lo, min(x_hi, w - SIZE + 1), 32):
            score = float(grad[y : y + SIZE, x : x + SIZE].mean())
            if score > best:
                best, where = score, (y, x)
    return where


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with av.open(str(CLIP)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    for index in FRAMES:
        rgb = frames[index]
        half = rgb.shape[1] // 2
        for side, (lo, hi) in (("l", (0, half - SIZE // 2)), ("r", (half, rgb.shape[1]))):
            y, x = busiest(rgb, lo, hi)
            crop = rgb[y : y + SIZE, x : x + SIZE]
            path = OUT / f"GOPR0384_11_00_f{index:02d}{side}.png"
            cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
            print(path.relative_to(ROOT), f"y={y} x={x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
