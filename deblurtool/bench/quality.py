"""Quality: PSNR/SSIM (:mod:`deblurtool.evaluate`) of the model AND of the blurry input itself (the do-nothing
baseline) on real blur/sharp pairs, at full resolution or under the report's resize-to-256 protocol, with
blur | ours | sharp example crops where the image has the most edges."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from deblurtool.bench.report import write_output
from deblurtool.bench.results import QualityReport, QualityRow, Scores
from deblurtool.errors import OutputError
from deblurtool.evaluate import PairScore, score_each
from deblurtool.metrics import psnr, ssim
from deblurtool.pairs import Pair


def highest_gradient_box(rgb_u8: np.ndarray, size: int = 256) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)`` of the ``size`` x ``size`` window (clipped to the image) with the most edge
    energy: where blur and its removal are most visible."""
    h, w = rgb_u8.shape[:2]
    ch, cw = min(size, h), min(size, w)
    gray = cv2.cvtColor(rgb_u8, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mag = np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    integral = cv2.integral(mag.astype(np.float64))  # (h+1)x(w+1): window sums in O(1) each
    sums = integral[ch:, cw:] - integral[:-ch, cw:] - integral[ch:, :-cw] + integral[:-ch, :-cw]
    y0, x0 = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y0), int(x0), int(y0) + ch, int(x0) + cw


def side_by_side(*images_rgb_u8: np.ndarray, gap: int = 4) -> np.ndarray:
    """HxWx3 uint8 images of one height joined left to right with white ``gap``-pixel separators."""
    h = images_rgb_u8[0].shape[0]
    sep = np.full((h, gap, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for img in images_rgb_u8:
        parts += [img, sep]
    return np.concatenate(parts[:-1], axis=1)


def example_path(folder: Path, pair: Pair, protocol: str) -> Path:
    return folder / f"{pair.name.replace('/', '__')}_{protocol}.png"


def run_quality(
    deblur: Callable[[np.ndarray], np.ndarray],
    pairs: list[Pair],
    *,
    resize: int = 0,
    examples_dir: Path | None = None,
    overwrite: bool = False,
    on_row: Callable[[QualityRow], None] | None = None,
    on_scored: Callable[[PairScore], None] | None = None,
) -> QualityReport:
    """Score ``deblur`` (HxWx3 uint8 -> same) and the blurry input on ``pairs``.

    ``resize`` 0 scores full frames; N resizes blur and sharp to NxN with INTER_AREA first and runs the model
    on the resized blur (the report's protocol for N=256). Means are plain means of the per-image scores.
    """
    protocol = f"resize{resize}" if resize else "full"
    if examples_dir is not None and not overwrite:
        for pair in pairs:  # fail before the long run, not after it
            if example_path(examples_dir, pair, protocol).exists():
                raise OutputError(
                    "already exists (pass --overwrite to replace it)",
                    example_path(examples_dir, pair, protocol),
                )
    rows: list[QualityRow] = []
    for scored in score_each(pairs, deblur, resize=resize or None):
        pair, blur, sharp, ours = scored.pair, scored.blur_rgb_u8, scored.sharp_rgb_u8, scored.out_rgb_u8
        row = QualityRow(
            name=pair.name,
            blur=str(pair.blur),
            sharp=str(pair.sharp),
            width=blur.shape[1],
            height=blur.shape[0],
            model_psnr=scored.psnr,
            model_ssim=scored.ssim,
            input_psnr=psnr(blur, sharp),
            input_ssim=ssim(blur, sharp),
            seconds=scored.seconds,
        )
        rows.append(row)
        if examples_dir is not None:
            y0, x0, y1, x1 = highest_gradient_box(sharp)
            strip = side_by_side(blur[y0:y1, x0:x1], ours[y0:y1, x0:x1], sharp[y0:y1, x0:x1])
            ok, png = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
            if not ok:
                raise OutputError(
                    "could not encode the example image", example_path(examples_dir, pair, protocol)
                )
            write_output(example_path(examples_dir, pair, protocol), png.tobytes(), overwrite=overwrite)
        if on_row:
            on_row(row)
        if on_scored:
            on_scored(scored)

    def mean(values: list[float]) -> float:
        return float(np.mean(values))

    return QualityReport(
        protocol=protocol,
        count=len(rows),
        model=Scores(mean([r.model_psnr for r in rows]), mean([r.model_ssim for r in rows])),
        input=Scores(mean([r.input_psnr for r in rows]), mean([r.input_ssim for r in rows])),
        rows=rows,
    )
