#!/usr/bin/env python3
"""Put real and synthetic blur/sharp pairs side by side: the statistics of ``trainers/synth/calibrate.py``.

    python scripts/calibrate_synth.py real=data/gopro_real/train gamma=data/gopro_gamma/train \\
        before=data/synth_before/train after=data/synth_gopro/train --pairs 40 --json calib.json

Each ``NAME=ROOT`` is a pairs folder in any layout ``deblurtool train`` reads (``--blur-dir`` picks the blurry
folder name, ``blur`` by default). At most ``--pairs`` pairs of each set are measured, spread over the set,
6 textured patches each; the same seed gives the same patches. Prints a Markdown table (one column per set).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from deblurtool.errors import DeblurError
from deblurtool.evaluate import spread_subset
from deblurtool.pairs import find_pairs, read_pair
from trainers.synth.calibrate import LEVEL_BANDS, pair_stats, summarize

ROWS = [
    ("pairs", "pairs measured", "{:.0f}"),
    ("patches", "textured patches", "{:.0f}"),
    ("blur_p10", "blur length p10 (px, straight-blur fit)", "{:.1f}"),
    ("blur_p25", "blur length p25", "{:.1f}"),
    ("blur_p50", "blur length median", "{:.1f}"),
    ("blur_p75", "blur length p75", "{:.1f}"),
    ("blur_p90", "blur length p90", "{:.1f}"),
    ("share_under_4px", "patches nearly sharp (< 4 px)", "{:.2f}"),
    ("explained_median", "variance a straight blur explains (median)", "{:.2f}"),
    ("linear_light_share", "patches better explained by linear-light averaging", "{:.2f}"),
    *[
        (f"noise_{k}_{lo}_{hi}", f"noise sigma, {k}, levels {lo}-{hi - 1}", "{:.2f}")
        for k in ("blur", "sharp")
        for lo, hi in LEVEL_BANDS
    ],
    ("clipped_sharp", "share of clipped pixels (>= 250), sharp", "{:.3f}"),
    ("clipped_blur", "share of clipped pixels (>= 250), blurry", "{:.3f}"),
    ("blockiness_sharp", "8x8 blockiness of the sharp frames (1 = none)", "{:.3f}"),
    ("sharpness_sharp", "mean gradient of the sharp frames (levels/px)", "{:.2f}"),
    ("mean_shift", "mean(blurry) - mean(sharp) (levels)", "{:+.2f}"),
]


def measure(root: Path, *, blur_dir: str, limit: int, seed: int) -> dict[str, float]:
    pairs = spread_subset(find_pairs(root, blur_dir=blur_dir, split="train"), limit)
    rng = np.random.default_rng(seed)
    return summarize([pair_stats(*read_pair(p), rng) for p in pairs])


def table(results: dict[str, dict[str, float]]) -> str:
    names = list(results)
    lines = ["| statistic | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key, label, fmt in ROWS:
        cells = [fmt.format(results[n][key]) if key in results[n] else "" for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", metavar="NAME=ROOT", help="a named pairs folder")
    parser.add_argument("--pairs", type=int, default=40, help="pairs measured per set (default 40)")
    parser.add_argument("--blur-dir", default="blur", help="name of the blurry folder (default blur)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    try:
        for spec in args.sets:
            name, sep, root = spec.partition("=")
            if not sep:
                print(f"error: expected NAME=ROOT, got {spec!r}", file=sys.stderr)
                return 2
            results[name] = measure(Path(root), blur_dir=args.blur_dir, limit=args.pairs, seed=args.seed)
    except DeblurError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
