"""Typed results of a bench run: what each measurement returns, what the tables print, what the JSON holds.

Every section is a dataclass; the JSON report is written from them (:func:`as_json`: field names are the
JSON keys, fields left None are omitted unless marked ``KEEP``) and never read back to decide anything.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

KEEP = {"keep_none": True}  # field metadata: write None as null instead of leaving the key out


def as_json(obj: Any) -> Any:
    """Dataclasses -> dicts (None fields left out unless marked ``KEEP``), tuples -> lists, non-finite floats
    (the PSNR of identical images) -> None: JSON has no inf or nan."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None and not f.metadata.get("keep_none"):
                continue
            out[f.name] = as_json(value)
        return out
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: as_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [as_json(v) for v in obj]
    return obj


@dataclass(frozen=True)
class SystemInfo:
    """Where and when it was measured, and the command line."""

    device: str
    device_name: str
    cpu_model: str
    torch: str
    threads: int
    python: str
    platform: str
    date: str
    command: str


@dataclass(frozen=True)
class WeightsInfo:
    """The model measured: its file (None: a freshly initialised generator, ``note`` says so)."""

    path: str | None = field(metadata=KEEP)
    trained: bool
    arch: str
    parameters: int
    sha256: str | None = None
    config: dict[str, Any] | None = None
    note: str | None = None


# -- speed: the PyTorch variants -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeedRow:
    """One variant timed (``bench.speed.Variant``) and what it computed."""

    name: str
    precision: str
    tile_size: int
    tile_overlap: int
    batch_size: int
    fused: bool
    is_default: bool
    channels_last: bool
    ms_per_frame: float
    ms_runs: list[float]
    fps: float
    tiles_per_frame: int
    tiles_per_s: float
    macs_per_frame: int
    tflops: float
    peak_tflops: float
    fraction_of_peak: float
    peak_mem_mib: float
    peak_mem_kind: str
    speedup_vs_baseline: float = 1.0


@dataclass(frozen=True)
class SpeedDefault:
    device: str
    precision: str
    tile_size: int
    tile_overlap: int
    batch_size: int


@dataclass(frozen=True)
class SpeedReport:
    fps: float
    ms_per_frame: float
    resolution: tuple[int, int]
    runs: int
    default: SpeedDefault
    matmul_peak_tflops: dict[str, float]
    variants: list[SpeedRow]
    notes: list[str]


# -- engines side by side ------------------------------------------------------------------------------------


@dataclass
class EngineRow:
    """One engine at one precision: timed whole and tiled (``speed``), scored on pairs (``pairs``)."""

    name: str
    engine: str
    precision: str
    whole_first_s: float | None = None
    whole_ms: float | None = None
    tiled_first_s: float | None = None
    tiled_ms: float | None = None
    speedup_vs_torch_bf16: float | None = None
    psnr_vs_fp32: float | None = None
    psnr_vs_sharp: float | None = None
    delta_vs_fp32_db: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class EnginesReport:
    resolution: tuple[int, int]
    runs: int
    threads: int
    pairs: int
    rows: list[EngineRow]
    notes: list[str]

    @property
    def timed(self) -> bool:
        return any(r.whole_ms is not None for r in self.rows)


# -- models side by side -------------------------------------------------------------------------------------


@dataclass
class ModelRow:
    """One weights file run end to end as ``video`` runs it (its default engine and precision, or those
    asked for): ``load_s`` includes any conversion or quantisation not yet cached. Timed on a synthetic
    frame (``first_s``, ``ms_per_frame`` median of the runs) and, with a video, over all its frames
    (``video_frames``, ``video_s``: decode, deblur, encode)."""

    name: str
    weights: WeightsInfo
    engine: str
    precision: str
    load_s: float
    first_s: float | None = None
    ms_per_frame: float | None = None
    video_frames: int | None = None
    video_s: float | None = None
    speedup_vs_first: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def video_fps(self) -> float | None:
        if self.video_frames is None or not self.video_s:
            return None
        return self.video_frames / self.video_s


@dataclass(frozen=True)
class ModelsReport:
    resolution: tuple[int, int]
    runs: int
    threads: int
    video: str | None
    rows: list[ModelRow]


# -- quality -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    psnr: float
    ssim: float


@dataclass(frozen=True)
class QualityRow:
    name: str
    blur: str
    sharp: str
    width: int
    height: int
    model_psnr: float
    model_ssim: float
    input_psnr: float
    input_ssim: float
    seconds: float


@dataclass(frozen=True)
class Fp32Row:
    name: str
    psnr_vs_fp32: float
    fp32_psnr: float
    model_psnr: float


@dataclass(frozen=True)
class Fp32Comparison:
    """One engine/precision's outputs against PyTorch fp32's on the quality pairs."""

    name: str
    rows: list[Fp32Row]
    mean_psnr_vs_fp32: float
    min_psnr_vs_fp32: float
    mean_fp32_psnr: float
    mean_delta_db: float
    max_abs_delta_db: float


@dataclass(frozen=True)
class QualitySettings:
    """What ran, after any fall-back; the tiling of the last frame (the device default picks per size)."""

    device: str
    engine: str
    precision: str
    tile_given: bool
    tile_size: int
    tile_overlap: int
    batch_size: int


@dataclass
class QualityReport:
    protocol: str
    count: int
    model: Scores
    input: Scores
    rows: list[QualityRow]
    data: str = ""
    vs_fp32: Fp32Comparison | None = None
    settings: QualitySettings | None = None


# -- temporal consistency ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemporalRow:
    """Warping error (RMS 8-bit levels) of the input, the model's output and, with ground truth, the sharp
    frames; ``valid``: share of pixels whose flow passed its check; ``name``: the sequence or "mean"."""

    name: str
    pairs: int
    valid: float
    input: float
    output: float
    sharp: float | None = None


@dataclass(frozen=True)
class TemporalMean:
    """Means over sequences, weighted by frame pairs."""

    input: float
    output: float
    valid: float
    sharp: float | None = None


@dataclass
class TemporalReport:
    metric: str
    pairs: int
    mean: TemporalMean
    rows: list[TemporalRow]
    data: str = ""


# -- the whole report ----------------------------------------------------------------------------------------


@dataclass
class BenchReport:
    system: SystemInfo
    weights: WeightsInfo | None = None
    speed: SpeedReport | None = None
    engines: EnginesReport | None = None
    models: ModelsReport | None = None
    quality: QualityReport | None = None
    temporal: TemporalReport | None = None
