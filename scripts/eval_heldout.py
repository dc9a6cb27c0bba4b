"""Score generator files on the held-out scenes of ``trainers.holdout`` the way users run them: whole
frames at full resolution through ``load_deblurrer`` with the default engine and precision (what
``deblurtool folder`` does), PSNR and SSIM of ``deblurtool.metrics`` on uint8 frames; and the sharp-input
check (every sharp frame given as input, PSNR of the output against itself).

    python scripts/eval_heldout.py ../shared/data weights/deblurtool-resnet9.safetensors [more.safetensors]

Prints one Markdown table per file (per set: pairs, input PSNR/SSIM, output PSNR/SSIM, gain) and the
selection score (mean gain over the selection sets) with the lowest sharp-input PSNR.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from deblurtool.config import ModelSpec, RuntimeConfig, TileConfig
from deblurtool.inference import load_deblurrer
from deblurtool.metrics import psnr, ssim
from trainers.holdout import load_heldout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_root", type=Path)
    p.add_argument("weights", type=Path, nargs="+")
    p.add_argument("--per-frame", action="store_true", help="also print each sharp frame's PSNR from itself")
    p.add_argument("--engine", default="auto", help="auto|torch|openvino (default: what users get)")
    p.add_argument("--precision", default="auto", help="auto|fp32|bf16|int8 (default: what users get)")
    p.add_argument("--tile-size", type=int, default=None, help="default: the device's and model's tiling")
    p.add_argument("--tile-overlap", type=int, default=32)
    a = p.parse_args()
    held = load_heldout(a.data_root)
    runtime = RuntimeConfig(device="auto", precision=a.precision, engine=a.engine)
    tile = None if a.tile_size is None else TileConfig(tile_size=a.tile_size, tile_overlap=a.tile_overlap)
    for weights in a.weights:
        deblur = load_deblurrer(ModelSpec(weights=weights, runtime=runtime, tile=tile))
        rows: dict[str, list[tuple[float, float, float, float]]] = {}
        sharp_min = float("inf")
        for pair in held.pairs:
            out = deblur(pair.blur_u8)
            rows.setdefault(pair.set_name, []).append(
                (
                    psnr(pair.blur_u8, pair.sharp_u8),
                    ssim(pair.blur_u8, pair.sharp_u8),
                    psnr(out, pair.sharp_u8),
                    ssim(out, pair.sharp_u8),
                )
            )
            same = psnr(deblur(pair.sharp_u8), pair.sharp_u8)
            sharp_min = min(sharp_min, same)
            if a.per_frame:
                print(f"sharp input {pair.set_name} {pair.name}: {same:.2f} dB")
        tiling = "default tiling" if tile is None else f"tiles {tile.tile_size} overlap {tile.tile_overlap}"
        print(f"\n{weights} (engine {deblur.engine}, precision {deblur.precision}, {tiling})\n")
        print("| set | pairs | input PSNR | input SSIM | output PSNR | output SSIM | gain dB |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        gains = {}
        for name, r in sorted(rows.items()):
            m = np.mean(np.asarray(r), axis=0)
            gains[name] = m[2] - m[0]
            cells = f"{m[0]:.2f} | {m[1]:.3f} | {m[2]:.2f} | {m[3]:.3f} | {gains[name]:+.2f}"
            print(f"| {name} | {len(r)} | {cells} |")
        score = float(np.mean([gains[k] for k in held.select_sets]))
        print(
            f"\nscore (mean gain over {', '.join(held.select_sets)}): {score:+.3f} dB; "
            f"lowest sharp-input PSNR {sharp_min:.2f} dB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
