"""Plot held-out gain against training CPU minutes for several ``trainers.restore`` runs (their
``metrics.csv``), as one PNG, and print the table the model card shows.

    python scripts/plot_study.py docs/training/study.png NAME=runs/a/metrics.csv NAME2=runs/b/metrics.csv

Points below ``--floor`` dB (the start of a from-scratch U-Net is far below the input) are left out of the
plot so that the part where the curves part can be read; the table keeps every row.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2

from trainers.plots import line_plot


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("runs", nargs="+", metavar="NAME=METRICS_CSV")
    p.add_argument("--floor", type=float, default=-1.0)
    a = p.parse_args()
    series: dict[str, tuple[list[float], list[float]]] = {}
    print("| run | step | CPU min | score | gopro0374 | x4k | samples | tail0372 | sharp min |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for spec in a.runs:
        name, _, path = spec.partition("=")
        with Path(path).open() as f:
            rows = list(csv.DictReader(f))
        xs, ys = [], []
        for r in rows:
            score = float(r["score"])
            print(
                f"| {name} | {r['step']} | {float(r['cpu_min']):.1f} | {score:+.3f} | "
                f"{float(r['gain_gopro0374']):+.3f} | {float(r['gain_x4k']):+.3f} | "
                f"{float(r['gain_samples']):+.3f} | {float(r['gain_tail0372']):+.3f} | "
                f"{float(r['sharp_min']):.2f} |"
            )
            if score >= a.floor:
                xs.append(float(r["cpu_min"]))
                ys.append(score)
        series[name] = (xs, ys)
    img = line_plot(series, title="gain dB", xlabel="CPU minutes")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), img)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
