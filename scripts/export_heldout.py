"""Write the held-out scenes of ``trainers.holdout`` as pair folders (``OUT/<set>__<seq>/{blur,sharp}/*.png``)
and their sharp frames as ``OUT_sharp/`` pairs (sharp as both input and target), for ``deblurtool bench
--metrics --data OUT`` and ``deblurtool folder``: the product's own path (whole frames, default engine and
precision) on the scenes a model is chosen by.

    python scripts/export_heldout.py ../shared/data runs/heldout
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from trainers.holdout import load_heldout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_root", type=Path)
    p.add_argument("out", type=Path)
    a = p.parse_args()
    held = load_heldout(a.data_root)
    for pair in held.pairs:
        seq, _, stem = pair.name.rpartition("/")
        folder = a.out / pair.set_name / f"{pair.set_name}__{seq.replace('/', '_')}"
        sharp_folder = a.out.with_name(a.out.name + "_sharp") / f"{pair.set_name}__{seq.replace('/', '_')}"
        for sub, img in (("blur", pair.blur_u8), ("sharp", pair.sharp_u8)):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / sub / f"{stem}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        for sub in ("blur", "sharp"):
            (sharp_folder / sub).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(
                str(sharp_folder / sub / f"{stem}.png"), cv2.cvtColor(pair.sharp_u8, cv2.COLOR_RGB2BGR)
            )
    print(f"wrote {len(held.pairs)} pairs under {a.out} in sets {held.sets}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
