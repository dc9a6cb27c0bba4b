"""Lay out the genuine GoPro training pairs of ``shared/data/gopro_train`` as ``deblurtool train`` roots.

    python scripts/layout_gopro_train.py ../shared/data/gopro_train data

makes (symbolic links, nothing copied; the source is never modified):

    data/gopro_real/train/GOPR0372_07_00/{blur,sharp}/000047..000109.png   63 pairs for training
    data/gopro_real/test/GOPR0372_07_00/{blur,sharp}/000110..000129.png    the last 20: validation
    data/gopro_gamma/train/GOPR_UNKNOWN_TRAIN/{blur,sharp}/liucmu_*.png    5 blur_gamma pairs (see below)

The validation frames are the last ``--val-frames`` (20) of the consecutive sequence, so no training frame
lies between two validation frames. They come from the same scene as the training frames, so their scores
flatter the model: select on them *and* on the independent test pairs of ``samples/gopro`` (``--eval-extra``).

The 5 ``blur_gamma`` pairs (GoPro's blur averaged in linear light) are linked as ``blur/`` of their own root
so ``deblurtool train`` reads them beside the linear ones and ``--mix`` gives them a weight of their own.
Rerunning replaces the links it made; a target that is not a folder of links made by this script is refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SEQ = "GOPR0372_07_00"
GAMMA_SEQ = "GOPR_UNKNOWN_TRAIN"


def _link_pairs(src_blur: Path, src_sharp: Path, dst: Path, stems: list[str]) -> int:
    for kind, src in (("blur", src_blur), ("sharp", src_sharp)):
        folder = dst / kind
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if not old.is_symlink():
                raise SystemExit(f"error: {old}: not a link made by this script; refusing to touch it")
            old.unlink()
        for stem in stems:
            (folder / f"{stem}.png").symlink_to(os.path.abspath(src / f"{stem}.png"))
    return len(stems)


def layout(source: Path, out: Path, *, val_frames: int = 20) -> dict[str, int]:
    """Make the two roots under ``out``; returns the number of pairs in each part."""
    seq = source / SEQ
    stems = sorted(p.stem for p in (seq / "blur").glob("*.png"))
    if len(stems) <= val_frames:
        raise SystemExit(f"error: {seq}: {len(stems)} frames, need more than --val-frames {val_frames}")
    missing = [s for s in stems if not (seq / "sharp" / f"{s}.png").is_file()]
    if missing:
        raise SystemExit(f"error: {seq / 'sharp'}: no sharp partner for {missing[0]}.png")
    counts = {
        "train": _link_pairs(
            seq / "blur", seq / "sharp", out / "gopro_real/train" / SEQ, stems[: len(stems) - val_frames]
        ),
        "test": _link_pairs(seq / "blur", seq / "sharp", out / "gopro_real/test" / SEQ, stems[-val_frames:]),
    }
    gamma = source / GAMMA_SEQ
    if gamma.is_dir():
        gstems = sorted(p.stem for p in (gamma / "blur_gamma").glob("*.png"))
        counts["gamma"] = _link_pairs(
            gamma / "blur_gamma", gamma / "sharp", out / "gopro_gamma/train" / GAMMA_SEQ, gstems
        )
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the gopro_train folder (shared/data/gopro_train)")
    parser.add_argument("out", type=Path, help="folder to hold gopro_real/ and gopro_gamma/ (e.g. data)")
    parser.add_argument("--val-frames", type=int, default=20, help="last N frames held back (default 20)")
    args = parser.parse_args(argv)
    if not (args.source / SEQ / "blur").is_dir():
        print(
            f"error: {args.source}: no {SEQ}/blur folder (expected shared/data/gopro_train)", file=sys.stderr
        )
        return 2
    counts = layout(args.source, args.out, val_frames=args.val_frames)
    print(", ".join(f"{k}: {v} pairs" for k, v in counts.items()), f"under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
