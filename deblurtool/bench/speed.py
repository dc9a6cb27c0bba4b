"""Speed of the PyTorch variants: each is timed end to end as users run it (``Deblurrer.deblur_array``:
uint8 in, tiling, micro-batches in the run dtype, stitching, uint8 out), after one warm-up call, the device
synchronised, median of ``runs`` calls. The work is counted from the model itself: forward hooks on every
Conv2d/Linear during the warm-up sum ``Cout * Cin / groups * kh * kw * Hout * Wout`` over the tiles
actually run (overlaps and padding included), so TFLOP/s (2 FLOP per MAC) is comparable with a large
matmul measured in the same run and dtype.
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deblurtool import devices
from deblurtool.bench.profile import matmul_peak_tflops, time_variant
from deblurtool.bench.results import SpeedDefault, SpeedReport, SpeedRow
from deblurtool.config import RuntimeConfig, TileConfig
from deblurtool.errors import DeblurError
from deblurtool.inference import Deblurrer
from deblurtool.tiling import plan_tiles

TILINGS = ((0, 0), (256, 32), (512, 32))  # (tile_size, tile_overlap) compared at the default precision


def synthetic_frame(height: int, width: int) -> np.ndarray:
    """A deterministic HxWx3 uint8 RGB frame (smooth gradients plus texture; speed does not depend on it)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(0)
    base = np.stack([xx / max(width, 1), yy / max(height, 1), 0.5 + 0.5 * np.sin(xx / 17 + yy / 23)], axis=-1)
    noisy = 255 * base + rng.normal(0, 12, size=base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def plain_fp32_loop(model: nn.Module, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """The baseline people would write: unfused model, fp32, NCHW, whole frame padded to a multiple of 4
    (the model's own ``forward`` pads further where its architecture needs it)."""
    net = copy.deepcopy(model).float().eval().to(device)

    def run(rgb_u8: np.ndarray) -> np.ndarray:
        x_pm1 = torch.from_numpy(rgb_u8).to(device).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        h, w = x_pm1.shape[-2:]
        x_pm1 = F.pad(x_pm1, (0, -w % 4, 0, -h % 4), mode="replicate")
        with torch.inference_mode():
            y_pm1 = net(x_pm1)[0, :, :h, :w]
        return ((y_pm1 + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    return run


@dataclass(frozen=True)
class Variant:
    """One way of running the generator. ``fused`` False is the plain fp32 baseline loop (whole frame)."""

    precision: str
    tile_size: int
    tile_overlap: int
    batch_size: int
    fused: bool = True
    is_default: bool = False

    @property
    def name(self) -> str:
        """Short label: ``fp32 plain loop``, ``bf16 whole``, ``bf16 256/32 b4`` (tile/overlap, batch)."""
        if not self.fused:
            return "fp32 plain loop"
        tiling = (
            "whole" if self.tile_size == 0 else f"{self.tile_size}/{self.tile_overlap} b{self.batch_size}"
        )
        return f"{self.precision} {tiling}"

    @property
    def key(self) -> tuple[object, ...]:
        return (self.fused, self.precision, self.tile_size, self.tile_overlap, self.batch_size)


def available_precisions(device: torch.device) -> tuple[list[str], list[str]]:
    """``(precisions worth timing on device, notes on the ones skipped)``."""
    if device.type == "cuda":
        if devices.cuda_supports_bf16(device):
            return ["fp32", "fp16", "bf16"], []
        return ["fp32", "fp16"], ["bf16 skipped: this GPU has no native bf16"]
    notes = ["fp16 skipped on CPU: no fast fp16 kernels"]
    if devices.cpu_has_native_bf16():
        return ["fp32", "bf16"], notes
    return ["fp32"], [*notes, "bf16 skipped: this CPU has no native bf16 (it would be emulated, slowly)"]


def speed_variants(default: Variant, precisions: list[str], *, quick: bool) -> list[Variant]:
    """Baseline, the default, then (unless ``quick``) each precision at the default tiling and each tiling
    of ``TILINGS`` at the default precision and batch size; duplicates of the default are dropped."""
    baseline = Variant("fp32", 0, 0, 1, fused=False)
    out = [baseline, default]
    if not quick:
        tiled = (default.tile_size, default.tile_overlap, default.batch_size)
        out += [Variant(p, *tiled) for p in precisions]
        out += [Variant(default.precision, size, overlap, default.batch_size) for size, overlap in TILINGS]
    seen: set[tuple[object, ...]] = set()
    unique = []
    for v in out:
        if v.key not in seen:
            seen.add(v.key)
            unique.append(v)
    return unique


def run_speed(
    model: nn.Module,
    *,
    device: torch.device,
    default_tile: TileConfig,
    precision: str,
    resolution: tuple[int, int],
    runs: int,
    quick: bool = False,
    on_variant: Callable[[Variant], None] | None = None,
) -> SpeedReport:
    """Time the ``speed_variants`` on a ``resolution`` (width, height) frame."""
    width, height = resolution
    precisions, notes = available_precisions(device)
    if precision not in precisions:
        raise DeblurError(f"cannot bench precision {precision} on {device}: {'; '.join(notes)}")
    t = default_tile
    default = Variant(precision, t.tile_size, t.tile_overlap, t.batch_size, is_default=True)
    variants = speed_variants(default, precisions, quick=quick)
    peaks = {
        p: matmul_peak_tflops(device, devices.DTYPES[p]) for p in dict.fromkeys(v.precision for v in variants)
    }
    frame = synthetic_frame(height, width)
    rows: list[SpeedRow] = []
    for v in variants:
        if on_variant:
            on_variant(v)
        if v.fused:
            tile = TileConfig(v.tile_size, v.tile_overlap, v.batch_size)
            deblurrer = Deblurrer.from_model(model, tile, RuntimeConfig(str(device), v.precision, "torch"))
            fn: Callable[[np.ndarray], np.ndarray] = deblurrer.deblur_array
        else:
            fn = plain_fp32_loop(model, device)
        r = time_variant(fn, frame, device, runs, deblurrer.notes if v.fused else None)
        ran = deblurrer.tile if v.fused else TileConfig(0, 0, 1)  # after any out-of-memory back-off
        if v.fused:
            notes.extend(f"{v.name}: {n}" for n in deblurrer.notes)
            del deblurrer
        del fn
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        tiles = plan_tiles(height, width, ran.tile_size, ran.tile_overlap).n_tiles
        tflops = 2 * r["macs"] / r["median_s"] / 1e12
        rows.append(
            SpeedRow(
                name=v.name, precision=v.precision, tile_size=v.tile_size, tile_overlap=v.tile_overlap,
                batch_size=v.batch_size, fused=v.fused, is_default=v.is_default, channels_last=v.fused,
                ms_per_frame=1e3 * r["median_s"], ms_runs=[1e3 * s for s in r["seconds"]],
                fps=1.0 / r["median_s"], tiles_per_frame=tiles, tiles_per_s=tiles / r["median_s"],
                macs_per_frame=r["macs"], tflops=tflops, peak_tflops=peaks[v.precision],
                fraction_of_peak=tflops / peaks[v.precision], peak_mem_mib=r["mem"].mib,
                peak_mem_kind=r["mem"].kind,
            )
        )  # fmt: skip
    base_ms = rows[0].ms_per_frame
    rows = [replace(row, speedup_vs_baseline=base_ms / row.ms_per_frame) for row in rows]
    default_row = next(r for r in rows if r.is_default)
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        notes.append(
            "fp32 convolutions use TF32 tensor cores (cudnn.allow_tf32); the fp32 matmul peak does not"
        )
    return SpeedReport(
        fps=default_row.fps,
        ms_per_frame=default_row.ms_per_frame,
        resolution=(width, height),
        runs=runs,
        default=SpeedDefault(str(device), precision, t.tile_size, t.tile_overlap, t.batch_size),
        matmul_peak_tflops=peaks,
        variants=rows,
        notes=notes,
    )
