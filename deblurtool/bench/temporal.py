"""Temporal consistency in ``bench --metrics``: does the model add flicker?

Two sources of consecutive frames: the sequences of a pairs folder that hold two frames or more (scored with
the outputs ``quality`` already made, and with their sharp frames: what real detail moving really costs), or a
clip without ground truth (a video file, or a folder of frames in name order). Each is measured with
:func:`deblurtool.temporal.temporal_consistency`: RMS warping error in 8-bit levels, the flow taken from the
input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import av
import numpy as np

from deblurtool.bench.results import TemporalMean, TemporalReport, TemporalRow
from deblurtool.errors import InputError
from deblurtool.media.colour import to_rgb_u8
from deblurtool.media.image_io import IMAGE_SUFFIXES, read_rgb_u8
from deblurtool.temporal import temporal_consistency

Triple = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # (input, output, sharp or None), HxWx3 uint8 RGB


def is_clip(path: Path) -> bool:
    """A video file, or a folder of images with no blur/sharp layout (frames in name order)."""
    if path.is_file():
        return True
    if not path.is_dir() or (path / "blur").is_dir() or any((d / "blur").is_dir() for d in path.iterdir()):
        return False
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())


def read_clip(path: Path, *, limit: int = 0) -> list[np.ndarray]:
    """The frames of a video file (decoded as ``deblurtool video`` decodes them) or of a folder of images,
    HxWx3 uint8 RGB, at most ``limit`` (0: all)."""
    frames: list[np.ndarray] = []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        frames = [read_rgb_u8(p) for p in files[: limit or None]]
    else:
        try:
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    frames.append(to_rgb_u8(frame))
                    if limit and len(frames) >= limit:
                        break
        except (av.FFmpegError, IndexError) as e:
            raise InputError(f"cannot read this clip ({type(e).__name__})", path) from None
    if len(frames) < 2:
        raise InputError(
            f"a clip needs two frames or more for temporal consistency, found {len(frames)}", path
        )
    if any(f.shape != frames[0].shape for f in frames):
        raise InputError("frames of different sizes: not one clip", path)
    return frames


def _measure(name: str, triples: Sequence[Triple]) -> TemporalRow:
    inputs = [t[0] for t in triples]
    seqs: dict[str, list[np.ndarray]] = {"output": [t[1] for t in triples]}
    sharp = [t[2] for t in triples]
    if all(s is not None for s in sharp):
        seqs["sharp"] = [s for s in sharp if s is not None]
    result = temporal_consistency(inputs, **seqs)
    e = result.errors
    return TemporalRow(name, result.pairs, result.valid, e["input"], e["output"], e.get("sharp"))


def run_temporal_clip(
    deblur: Callable[[np.ndarray], np.ndarray], frames: Sequence[np.ndarray], *, name: str
) -> TemporalReport:
    """Deblur every frame of a clip and measure input and output."""
    triples: list[Triple] = [(f, deblur(f), None) for f in frames]
    return summarize([_measure(name, triples)])


def run_temporal_sequences(sequences: dict[str, list[Triple]]) -> TemporalReport | None:
    """Measure each sequence of two frames or more (outputs already made); None if there is none."""
    rows = [_measure(name, triples) for name, triples in sorted(sequences.items()) if len(triples) >= 2]
    return summarize(rows) if rows else None


def summarize(rows: list[TemporalRow]) -> TemporalReport:
    """Per-sequence rows and their mean weighted by frame pairs."""
    total = sum(r.pairs for r in rows)

    def mean(values: list[float]) -> float:
        return float(sum(v * r.pairs for v, r in zip(values, rows, strict=True)) / total)

    sharps = [r.sharp for r in rows]
    mean_row = TemporalMean(
        input=mean([r.input for r in rows]),
        output=mean([r.output for r in rows]),
        valid=mean([r.valid for r in rows]),
        sharp=mean([s for s in sharps if s is not None]) if all(s is not None for s in sharps) else None,
    )
    return TemporalReport(
        metric="warping error, RMS 8-bit levels (flow: DIS on the input)",
        pairs=total,
        mean=mean_row,
        rows=rows,
    )
