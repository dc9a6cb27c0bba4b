#!/usr/bin/env python3
"""Time ``Trainer.train_step`` for a training recipe: the figures in the README's "Training" section.

Takes the options of ``deblurtool train`` (no DATA or --out: a temporary folder
of random 384x384 pairs stands in, loaded through the real PairDataset and DataLoader), builds the Trainer,
runs ``--warmup`` steps, then reports the median and the mean of ``--steps`` timed steps (data loading
excluded: batches are fetched before each timed step). With the perceptual loss on, the VGG16 trunk gets
random weights, written to the temporary folder: the time of a convolution does not depend on its weights, and
ImageNet's VGG16 cannot be downloaded everywhere. Examples::

    python scripts/time_train_step.py --crop 128 --batch-size 4 --pixel-loss l1 --pixel-weight 100 \\
        --adv-weight 0 --perceptual-weight 0 --workers 0           # L1 only (the card's stages B, C)
    python scripts/time_train_step.py --workers 0                  # the report's recipe (WGAN-GP, VGG16)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
import typer

from deblurtool.commands.train import parse_train_args
from deblurtool.errors import DeblurError
from trainers.train import Trainer


def write_random_pairs(root: Path, count: int, size: int = 384) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        for kind in ("blur", "sharp"):
            (root / kind).mkdir(parents=True, exist_ok=True)
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            cv2.imwrite(str(root / kind / f"{i:06d}.png"), img)


def main(argv: list[str] | None = None) -> int:
    own = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    own.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    own.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    args, rest = own.parse_known_args(argv)
    with tempfile.TemporaryDirectory(prefix="deblurtool-time-") as tmp:
        data, out = Path(tmp) / "pairs", Path(tmp) / "run"
        batches = args.warmup + args.steps
        try:
            cfg, _ = parse_train_args([str(data), "--out", str(out), *rest])
        except DeblurError as e:
            print(f"error: {e}", file=sys.stderr)
            return e.exit_code
        except typer.TyperException as e:  # a usage error: the message typer would print
            e.show()  # type: ignore[attr-defined]
            return int(getattr(e, "exit_code", 2))
        except typer.Exit as e:  # --help
            return e.exit_code
        write_random_pairs(data, max(8, cfg.batch_size * batches))
        if cfg.perceptual_weight > 0 and cfg.vgg_weights == "imagenet":
            import torchvision

            vgg = Path(tmp) / "vgg16-random.pth"
            trunk = torchvision.models.vgg16(weights=None).features.state_dict()  # the classifier is not used
            torch.save({f"features.{k}": v for k, v in trunk.items()}, vgg)
            cfg = replace(cfg, vgg_weights=str(vgg))
        trainer = Trainer(cfg)
        loader = iter(trainer._loader(0))
        times = []
        for i in range(batches):
            blur, sharp = next(loader)
            start = time.perf_counter()
            trainer.train_step(blur, sharp)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
    print(
        f"{trainer.device.type} {str(trainer.amp_dtype).removeprefix('torch.')}, {torch.get_num_threads()} "
        f"threads, batch {cfg.batch_size} of {cfg.size}x{cfg.size}: median {statistics.median(times):.3f} "
        f"s/step, mean {statistics.fmean(times):.3f} over {len(times)} steps after {args.warmup} warm-up"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
