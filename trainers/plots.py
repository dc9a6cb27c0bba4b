"""Small line plots drawn with OpenCV (matplotlib is not a dependency): one PNG per curve family per run.

Enough to see a trend at a glance: axes with min/max labels, one coloured polyline per series, a legend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from deblurtool.fsutil import write_bytes

_COLOURS_BGR = [(180, 90, 30), (40, 130, 230), (60, 160, 60), (50, 50, 200), (150, 80, 150)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def line_plot(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    size: tuple[int, int] = (640, 400),
) -> np.ndarray:
    """An HxWx3 uint8 BGR image with one polyline per ``name: (xs, ys)``; non-finite points are skipped."""
    w, h = size
    left, right, top, bottom = 70, 20, 40, 45
    img = np.full((h, w, 3), 255, np.uint8)
    pts = [(float(x), float(y)) for xs, ys in series.values() for x, y in zip(xs, ys, strict=True)]
    pts = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
    cv2.putText(img, title, (left, 25), _FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    x0, y0, x1, y1 = left, top, w - right, h - bottom
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    cv2.putText(img, xlabel, ((x0 + x1) // 2 - 20, h - 10), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if not pts:
        return img
    xmin, xmax = min(p[0] for p in pts), max(p[0] for p in pts)
    ymin, ymax = min(p[1] for p in pts), max(p[1] for p in pts)
    xmax, ymax = (xmax if xmax > xmin else xmin + 1), (ymax if ymax > ymin else ymin + 1e-6)
    pad = 0.05 * (ymax - ymin)
    ymin, ymax = ymin - pad, ymax + pad

    def to_px(x: float, y: float) -> tuple[int, int]:
        px = x0 + (x - xmin) / (xmax - xmin) * (x1 - x0)
        py = y1 - (y - ymin) / (ymax - ymin) * (y1 - y0)
        return round(px), round(py)

    for label, (x, y) in ((_fmt(ymax), (2, y0 + 10)), (_fmt(ymin), (2, y1))):
        cv2.putText(img, label, (x, y), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, _fmt(xmin), (x0, y1 + 16), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, _fmt(xmax), (x1 - 30, y1 + 16), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (xs, ys) in enumerate(series.values()):
        colour = _COLOURS_BGR[i % len(_COLOURS_BGR)]
        line = [to_px(float(x), float(y)) for x, y in zip(xs, ys, strict=True) if math.isfinite(float(y))]
        if len(line) > 1:
            cv2.polylines(img, [np.array(line, np.int32)], False, colour, 2, cv2.LINE_AA)
        for p in line:
            cv2.circle(img, p, 3, colour, -1, cv2.LINE_AA)
    # Legend on the title row, right-aligned, so it never hides a curve.
    x = x1
    for i, name in reversed(list(enumerate(series))):
        x -= cv2.getTextSize(name, _FONT, 0.45, 1)[0][0] + 14
        cv2.putText(img, name, (x, 25), _FONT, 0.45, _COLOURS_BGR[i % len(_COLOURS_BGR)], 1, cv2.LINE_AA)
    return img


def save_line_plot(
    path: Path, series: Mapping[str, tuple[Sequence[float], Sequence[float]]], **kwargs: object
) -> None:
    """``line_plot`` written to ``path`` as PNG atomically (temp file in the same folder, then rename)."""
    ok, buf = cv2.imencode(".png", line_plot(series, **kwargs))  # type: ignore[arg-type]
    if not ok:
        raise RuntimeError(f"PNG encoding failed for {path}")
    write_bytes(path, buf.tobytes())
