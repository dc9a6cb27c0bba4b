"""``deblurtool synth --fps``: blur/sharp pairs from high-frame-rate clips, written as a dataset folder.

Every clip (a video or a folder of numbered frames, see ``hfr.find_clips``) is streamed once; consecutive
windows of N frames (N drawn from the exposure range at the clip's capture rate) become one pair each:
``OUT/<clip>/{blur,sharp}/<t0>_avg<N>.png`` (``blur_gamma`` instead of ``blur`` with ``linear``), the
sequence layout that ``deblurtool train`` and ``trainers.data`` read, plus ``OUT/manifest.json`` (settings,
one record per pair, the clips skipped and why). A clip that cannot be read is skipped with a note and the
others are written; the dataset appears in ``OUT`` only when complete (``trainers.synth.staging``).
Same clips and seed give byte-identical files.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deblurtool.errors import DeblurError, InputError, OutputError, one_line
from deblurtool.fsutil import write_bytes
from trainers.synth.hfr import find_clips, iter_frames, stream_windows, window_range
from trainers.synth.staging import MANIFEST, staged_dataset


@dataclass(frozen=True)
class HfrSettings:
    """How pairs are made from clips captured at ``fps`` frames a second."""

    fps: float
    exposure_s: tuple[float, float] | None = None  # None: GoPro's 7-13 frames at 240 fps
    scale: float = 1.0
    linear: bool = False
    step: int = 0  # frames between window starts; 0: the window's length (no frame used twice)
    per_clip: int = 0  # pairs per clip at most; 0: as many as the clip holds
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise DeblurError(f"--fps must be > 0, got {self.fps}")
        if not self.scale > 0:
            raise DeblurError(f"--scale must be > 0, got {self.scale}")
        if self.step < 0 or self.per_clip < 0:
            raise DeblurError("--step and --count must be >= 0")
        try:
            window_range(self.fps, self.exposure_s)
        except ValueError as e:
            raise DeblurError(f"--exposure: {e}") from None

    @property
    def n_range(self) -> tuple[int, int]:
        return window_range(self.fps, self.exposure_s)


@dataclass
class HfrResult:
    pairs: int
    clips: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)


def _safe_name(path: Path) -> str:
    stem = path.stem if path.is_file() else path.name
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem) or "clip"


def _png(rgb_u8: np.ndarray, path: Path) -> None:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb_u8[..., ::-1]))
    if not ok:
        raise OutputError("cannot encode PNG", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, buf.tobytes())


def _write_clip(
    src: Path, folder: Path, settings: HfrSettings, index: int, records: list[dict[str, Any]]
) -> int:
    rng = np.random.default_rng([settings.seed, index])
    blur_dir = "blur_gamma" if settings.linear else "blur"
    frames = iter_frames(src, scale=settings.scale)
    windows = stream_windows(
        frames, rng, settings.n_range, step=settings.step, linear=settings.linear, limit=settings.per_clip
    )
    written = 0
    for w in windows:
        _png(w.blur_u8, folder / blur_dir / f"{w.stem}.png")
        _png(w.sharp_u8, folder / "sharp" / f"{w.stem}.png")
        sharp = w.t0 + w.n // 2
        records.append({"clip": folder.name, "source": str(src), "t0": w.t0, "n": w.n, "sharp": sharp})
        written += 1
    return written


def make_hfr_dataset(
    src: Path,
    out: Path,
    settings: HfrSettings,
    *,
    overwrite: bool = False,
    warn: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
) -> HfrResult:
    """Write the pairs of every clip under ``src`` into ``out`` (see the module doc); ``warn`` gets one line
    per clip skipped, ``progress(clips_done, clips)`` one call per clip. InputError if no clip gave a pair."""
    src, out = Path(src).absolute(), Path(out).absolute()
    if out == src or src in out.parents:
        raise OutputError("output folder must not lie inside the source", out)
    clips = find_clips(src)
    lo, hi = settings.n_range
    result = HfrResult(0, [])
    records: list[dict[str, Any]] = []
    with staged_dataset(out, overwrite=overwrite) as tmp:
        used: set[str] = set()
        for i, clip in enumerate(clips):
            name = _safe_name(clip)
            while name in used or name == MANIFEST:
                name += "_"
            used.add(name)
            folder = tmp / name
            mark = len(records)
            try:
                n = _write_clip(clip, folder, settings, i, records)
                if n == 0:
                    raise InputError(f"too short for one window of {lo} frames", clip)
            except InputError as e:
                shutil.rmtree(folder, ignore_errors=True)
                del records[mark:]
                result.skipped.append((str(clip), one_line(e)))
                warn(f"skipped {clip}: {one_line(e)}")
            else:
                result.pairs += n
                result.clips.append(name)
            if progress is not None:
                progress(i + 1, len(clips))
        if not result.pairs:
            raise InputError("no pairs written: every clip was skipped (see the notes above)", src)
        manifest = {
            "mode": "hfr",
            "fps": settings.fps,
            "window_frames": [lo, hi],
            "exposure_s": list(settings.exposure_s) if settings.exposure_s else None,
            "scale": settings.scale,
            "linear": settings.linear,
            "step": settings.step,
            "seed": settings.seed,
            "entries": result.clips,
            "skipped": [{"source": s, "reason": r} for s, r in result.skipped],
            "samples": records,
        }
        write_bytes(tmp / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode("utf-8"))
    return result
