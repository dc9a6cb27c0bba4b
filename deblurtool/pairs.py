"""Find and read blur/sharp image pairs: the shared reader behind ``bench --metrics`` (and usable by others).

Three layouts are recognised, tried in this order:

- a GOPRO_Large root: ``ROOT/test/SEQ/{blur,sharp}/*.png`` (its ``test`` split is used; ``train`` is ignored);
- a split folder: ``ROOT/SEQ/{blur,sharp}/*``;
- a plain pair folder: ``ROOT/{blur,sharp}/*``.

Files pair up by name stem within a sequence (``blur/000001.png`` with ``sharp/000001.png``). A file without
its partner, two files with one stem, or a pair of different sizes is an ``InputError`` naming the file: a
silently skipped image would change every mean reported from the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deblurtool.errors import InputError
from deblurtool.media.image_io import IMAGE_SUFFIXES, read_rgb_u8

__all__ = ["Pair", "find_pairs", "read_pair", "read_rgb_u8"]  # read_rgb_u8: from media.image_io, its home


@dataclass(frozen=True)
class Pair:
    """One blurry image and its sharp ground truth; ``name`` is ``SEQ/stem`` (``stem`` in a plain folder)."""

    name: str
    blur: Path
    sharp: Path


def _images_by_stem(folder: Path) -> dict[str, Path]:
    by_stem: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
            continue
        if p.stem in by_stem:
            raise InputError(f"two images share the name {p.stem!r} ({by_stem[p.stem].name}, {p.name})", p)
        by_stem[p.stem] = p
    return by_stem


def _pairs_in(seq_dir: Path, prefix: str, blur_dir: str) -> list[Pair]:
    """Pairs of ``seq_dir/{blur_dir,sharp}``; every image must have its partner."""
    blur = _images_by_stem(seq_dir / blur_dir)
    sharp = _images_by_stem(seq_dir / "sharp")
    for stem, path in blur.items():
        if stem not in sharp:
            raise InputError(
                f"blurry image has no sharp partner (expected {seq_dir / 'sharp' / path.name})", path
            )
    for stem, path in sharp.items():
        if stem not in blur:
            raise InputError(
                f"sharp image has no blurry partner (expected {seq_dir / blur_dir / path.name})", path
            )
    return [Pair(f"{prefix}{stem}", blur[stem], sharp[stem]) for stem in sorted(blur)]


def _is_pair_dir(d: Path, blur_dir: str) -> bool:
    return (d / blur_dir).is_dir() and (d / "sharp").is_dir()


def find_pairs(root: Path, *, blur_dir: str = "blur", split: str = "test") -> list[Pair]:
    """All pairs under ``root`` in one of the layouts of the module docstring, sorted by name.

    ``blur_dir`` picks GoPro's ``blur`` (default: averaged sRGB frames, as the usual benchmarks) or
    ``blur_gamma``; ``split`` is the GOPRO_Large split folder used when ``root`` is a dataset root.
    Raises InputError (naming the path) if ``root`` is missing, holds no known layout, or pairs are broken.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("pairs folder not found", root)
    if _is_pair_dir(root, blur_dir):
        pairs = _pairs_in(root, "", blur_dir)
    else:
        split_dir = root / split
        # A GOPRO_Large root holds sequences under test/; a split folder may hold a sequence named "test".
        base = split_dir if split_dir.is_dir() and not _is_pair_dir(split_dir, blur_dir) else root
        seqs = [d for d in sorted(base.iterdir()) if d.is_dir() and _is_pair_dir(d, blur_dir)]
        if not seqs:
            raise InputError(
                f"no image pairs found: expected {blur_dir}/ and sharp/ folders in it, in its sequence "
                f"folders (SEQ/{blur_dir}, SEQ/sharp) or in {split}/SEQ/ (a GOPRO_Large root)",
                root,
            )
        pairs = [p for d in seqs for p in _pairs_in(d, f"{d.name}/", blur_dir)]
    if not pairs:
        raise InputError(f"no images found in {blur_dir}/ and sharp/", root)
    return pairs


def read_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """``(blur_rgb_u8, sharp_rgb_u8)``, both HxWx3 uint8; InputError (blurry file named) on a size clash."""
    blur_rgb_u8 = read_rgb_u8(pair.blur)
    sharp_rgb_u8 = read_rgb_u8(pair.sharp)
    if blur_rgb_u8.shape != sharp_rgb_u8.shape:
        bh, bw = blur_rgb_u8.shape[:2]
        sh, sw = sharp_rgb_u8.shape[:2]
        raise InputError(f"size {bw}x{bh} differs from its sharp partner {pair.sharp} ({sw}x{sh})", pair.blur)
    return blur_rgb_u8, sharp_rgb_u8
