"""Speed and quality measurement behind ``deblurtool bench``, done so the numbers can be trusted.

Speed: every variant is timed end to end as users run it (``Deblurrer.deblur_array``: uint8 in, tiling, fused
micro-batches in the run dtype, stitching, uint8 out), after one warm-up call, the device synchronised, median
of ``runs`` calls. The work is counted from the model itself: forward hooks on every Conv2d/Linear during the
warm-up sum ``Cout * Cin / groups * kh * kw * Hout * Wout`` over the tiles actually run (overlaps and padding
included), so TFLOP/s (2 FLOP per MAC) is comparable with a large matmul measured in the same run and dtype.

Quality: PSNR/SSIM (``deblurtool.metrics``) of the model AND of the blurry input itself (the do-nothing
baseline) on real blur/sharp pairs, at full resolution or under the report's resize-to-256 protocol.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import math
import os
import platform
import re
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deblurtool.config import RuntimeConfig, TileConfig
from deblurtool.errors import DeblurError, OutputError, WeightsError
from deblurtool.fsutil import create_temp
from deblurtool.metrics import psnr, ssim
from deblurtool.models.generator import GeneratorConfig, ResnetGenerator
from deblurtool.pairs import Pair, read_pair

# The two genuine GoPro pairs shipped with the repository (the package is installed editable from it).
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples" / "gopro"

DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
NAME_DTYPES = {v: k for k, v in DTYPE_NAMES.items()}
TILINGS = ((0, 0), (256, 32), (512, 32))  # (tile_size, tile_overlap) compared at the default precision
# Published numbers shown beside ours (GoPro test set): (label, protocol, PSNR dB, SSIM or None if not given).
REFERENCES = (
    ("DeblurGAN report (resize256)", "resize256", 26.42, 0.87),
    ("DeblurGAN paper (full)", "full", 28.7, None),  # Kupyn et al. 2018 (PSNR only here)
)


# --- counting ---
def layer_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    """Multiply-accumulates of one Conv2d/ConvTranspose2d/Linear call (0 for any other module)."""
    if isinstance(module, nn.Conv2d):  # each output value: Cin/groups * kh * kw MACs
        n, cout, hout, wout = output.shape
        kh, kw = module.kernel_size
        return n * cout * (module.in_channels // module.groups) * kh * kw * hout * wout
    if isinstance(module, nn.ConvTranspose2d):
        # each input value is spread over Cout/groups * kh * kw outputs
        n, cin, hin, win = inputs[0].shape
        kh, kw = module.kernel_size
        return n * cin * (module.out_channels // module.groups) * kh * kw * hin * win
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


class MacCounter:
    """Sums ``layer_macs`` over every module call made inside the ``with`` block (a global forward hook, so it
    also sees models hidden inside other objects, such as the Deblurrer's fused copy)."""

    def __init__(self) -> None:
        self.macs = 0
        self._handle: Any = None

    def _hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        self.macs += layer_macs(module, inputs, output)

    def __enter__(self) -> MacCounter:
        self._handle = torch.nn.modules.module.register_module_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one ``model(x)`` call, counted by forward hooks (see ``MacCounter``)."""
    with MacCounter() as counter, torch.inference_mode():
        model(x)
    return counter.macs


# --- timing ---
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory over a ``with`` block: CUDA max allocated, or on CPU the process's peak RSS.

    On Linux the RSS high-water mark is reset on entry (``/proc/self/clear_refs``), so the figure belongs to
    the block (it still includes the process's baseline: Python, torch, the model). Elsewhere it is the peak
    since the process started, and ``kind`` says so.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = ""
        self.mib = 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda_max_allocated"
            return self
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets the peak RSS that getrusage reports
            self.kind = "rss_peak"
        except OSError:
            self.kind = "rss_peak_since_process_start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
            self.mib = rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def matmul_peak_tflops(
    device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 3
) -> float:
    """Best-of-``reps`` TFLOP/s of an ``n x n`` matmul: the hardware's practical peak in this dtype."""
    n = n or (8192 if device.type == "cuda" else 2048)
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        a @ b  # warm-up: kernel choice, caches
        synchronize(device)
        best = math.inf
        for _ in range(reps):
            t0 = time.perf_counter()
            a @ b
            synchronize(device)
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def synthetic_frame(height: int, width: int) -> np.ndarray:
    """A deterministic HxWx3 uint8 RGB frame (smooth gradients plus texture; speed does not depend on it)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(0)
    base = np.stack([xx / max(width, 1), yy / max(height, 1), 0.5 + 0.5 * np.sin(xx / 17 + yy / 23)], axis=-1)
    noisy = 255 * base + rng.normal(0, 12, size=base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def plain_fp32_loop(model: nn.Module, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """The baseline people would write: unfused model, fp32, NCHW, whole frame padded to a multiple of 4."""
    net = copy.deepcopy(model).float().eval().to(device)

    def run(rgb_u8: np.ndarray) -> np.ndarray:
        x_pm1 = torch.from_numpy(rgb_u8).to(device).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        h, w = x_pm1.shape[-2:]
        x_pm1 = F.pad(x_pm1, (0, -w % 4, 0, -h % 4), mode="replicate")
        with torch.inference_mode():
            y_pm1 = net(x_pm1)[0, :, :h, :w]
        return ((y_pm1 + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    return run


# --- speed ---
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
    from deblurtool import devices

    if device.type == "cuda":
        if devices.cuda_supports_bf16(device):
            return ["fp32", "fp16", "bf16"], []
        return ["fp32", "fp16"], ["bf16 skipped: this GPU has no native bf16"]
    notes = ["fp16 skipped on CPU: no fast fp16 kernels (about 0.3 GFLOP/s for a matmul, see NOTES.md)"]
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


def time_variant(
    fn: Callable[[np.ndarray], np.ndarray],
    rgb_u8: np.ndarray,
    device: torch.device,
    runs: int,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Warm up once (counting MACs), then time ``runs`` calls; median seconds, MACs, peak memory.

    ``notes`` is the Deblurrer's list: if it grew in the warm-up (an out-of-memory back-off, which retries
    inside the call), the count includes the failed attempt, so one more untimed call is counted.
    """
    notes = [] if notes is None else notes
    before = len(notes)
    with PeakMemory(device) as mem:
        with MacCounter() as counter:
            fn(rgb_u8)
            synchronize(device)
        if len(notes) != before:
            with MacCounter() as counter:
                fn(rgb_u8)
                synchronize(device)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn(rgb_u8)
            synchronize(device)
            times.append(time.perf_counter() - t0)
    return {"seconds": times, "median_s": statistics.median(times), "macs": counter.macs, "mem": mem}


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
) -> dict[str, Any]:
    """Time the ``speed_variants`` on a ``resolution`` (width, height) frame; returns the JSON ``speed``."""
    from deblurtool.inference import Deblurrer
    from deblurtool.tiling import plan_tiles

    width, height = resolution
    precisions, notes = available_precisions(device)
    if precision not in precisions:
        raise DeblurError(f"cannot bench precision {precision} on {device}: {'; '.join(notes)}")
    t = default_tile
    default = Variant(precision, t.tile_size, t.tile_overlap, t.batch_size, is_default=True)
    variants = speed_variants(default, precisions, quick=quick)
    peaks = {
        p: matmul_peak_tflops(device, NAME_DTYPES[p]) for p in dict.fromkeys(v.precision for v in variants)
    }
    frame = synthetic_frame(height, width)
    rows: list[dict[str, Any]] = []
    for v in variants:
        if on_variant:
            on_variant(v)
        if v.fused:
            tile = TileConfig(v.tile_size, v.tile_overlap, v.batch_size)
            deblurrer = Deblurrer(
                model, tile=tile, runtime=RuntimeConfig(device=str(device), precision=v.precision)
            )
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
            {
                "name": v.name,
                **asdict(v),
                "channels_last": v.fused,
                "ms_per_frame": 1e3 * r["median_s"],
                "ms_runs": [1e3 * s for s in r["seconds"]],
                "fps": 1.0 / r["median_s"],
                "tiles_per_frame": tiles,
                "tiles_per_s": tiles / r["median_s"],
                "macs_per_frame": r["macs"],
                "tflops": tflops,
                "peak_tflops": peaks[v.precision],
                "fraction_of_peak": tflops / peaks[v.precision],
                "peak_mem_mib": r["mem"].mib,
                "peak_mem_kind": r["mem"].kind,
            }
        )
    base_ms = rows[0]["ms_per_frame"]
    for row in rows:
        row["speedup_vs_baseline"] = base_ms / row["ms_per_frame"]
    default_row = next(r for r in rows if r["is_default"])
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        notes.append(
            "fp32 convolutions use TF32 tensor cores (cudnn.allow_tf32); the fp32 matmul peak does not"
        )
    return {
        "fps": default_row["fps"],
        "ms_per_frame": default_row["ms_per_frame"],
        "resolution": [width, height],
        "runs": runs,
        "default": {
            "device": str(device),
            "precision": precision,
            "tile_size": t.tile_size,
            "tile_overlap": t.tile_overlap,
            "batch_size": t.batch_size,
        },
        "matmul_peak_tflops": peaks,
        "variants": rows,
        "notes": notes,
    }


# --- weights ---
def load_model(weights: Path | None, *, allow_untrained: bool) -> tuple[ResnetGenerator, dict[str, Any]]:
    """The generator to measure and a description of it for the report.

    ``weights`` None: the shipped default (or ``$DEBLURTOOL_WEIGHTS``). If none is shipped and
    ``allow_untrained`` (speed, which does not depend on weight values), a freshly initialised generator of
    the default config, and the report says so.
    Quality (``allow_untrained`` False) refuses missing defaults and identity (untrained) generators.
    """
    from deblurtool.models import weights as wmod

    if weights is None:
        try:
            path = wmod.default_weights_path()
        except WeightsError as e:
            # A $DEBLURTOOL_WEIGHTS naming a missing file is the user's mistake: never time something else.
            if not allow_untrained or os.environ.get(wmod.ENV_WEIGHTS, "").strip():
                raise WeightsError(f"quality is only measured on trained weights: {e}") from None
            note = (
                "no trained weights shipped: timing a freshly initialised generator of the default config "
                "(speed does not depend on weight values)"
            )
            return ResnetGenerator(GeneratorConfig()).eval(), {"path": None, "trained": False, "note": note}
        model = wmod.load_generator(None)
    else:
        path = Path(weights)
        model = wmod.load_generator(path)
    trained = bool(model.head.weight.detach().abs().max() > 0)  # the untrained generator's last conv is zero
    if not trained and not allow_untrained:
        raise WeightsError(
            "this is an untrained generator (its output conv is all zero: it returns its input); "
            "refusing to score it",
            path,
        )
    info = {
        "path": str(path),
        "trained": trained,
        "sha256": wmod.file_sha256(path),
        "config": model.config.to_dict(),
    }
    return model, info


# --- quality ---
def highest_gradient_box(rgb_u8: np.ndarray, size: int = 256) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)`` of the ``size`` x ``size`` window (clipped to the image) with the most edge
    energy: where blur and its removal are most visible."""
    h, w = rgb_u8.shape[:2]
    ch, cw = min(size, h), min(size, w)
    gray = cv2.cvtColor(rgb_u8, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mag = np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    integral = cv2.integral(mag.astype(np.float64))  # (h+1)x(w+1): window sums in O(1) each
    sums = integral[ch:, cw:] - integral[:-ch, cw:] - integral[ch:, :-cw] + integral[:-ch, :-cw]
    y0, x0 = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y0), int(x0), int(y0) + ch, int(x0) + cw


def side_by_side(*images_rgb_u8: np.ndarray, gap: int = 4) -> np.ndarray:
    """HxWx3 uint8 images of one height joined left to right with white ``gap``-pixel separators."""
    h = images_rgb_u8[0].shape[0]
    sep = np.full((h, gap, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for img in images_rgb_u8:
        parts += [img, sep]
    return np.concatenate(parts[:-1], axis=1)


def _atomic_write(path: Path, data: bytes, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OutputError("already exists (pass --overwrite to replace it)", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def example_path(folder: Path, pair: Pair, protocol: str) -> Path:
    return folder / f"{pair.name.replace('/', '__')}_{protocol}.png"


def run_quality(
    deblur: Callable[[np.ndarray], np.ndarray],
    pairs: list[Pair],
    *,
    resize: int = 0,
    examples_dir: Path | None = None,
    overwrite: bool = False,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Score ``deblur`` (HxWx3 uint8 -> same) and the blurry input on ``pairs``; the JSON ``quality``.

    ``resize`` 0 scores full frames; N resizes blur and sharp to NxN with INTER_AREA first and runs the model
    on the resized blur (the report's protocol for N=256). Means are plain means of the per-image scores.
    """
    protocol = f"resize{resize}" if resize else "full"
    if examples_dir is not None and not overwrite:
        for pair in pairs:  # fail before the long run, not after it
            if example_path(examples_dir, pair, protocol).exists():
                raise OutputError(
                    "already exists (pass --overwrite to replace it)",
                    example_path(examples_dir, pair, protocol),
                )
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        blur, sharp = read_pair(pair)
        if resize:
            blur = cv2.resize(blur, (resize, resize), interpolation=cv2.INTER_AREA)
            sharp = cv2.resize(sharp, (resize, resize), interpolation=cv2.INTER_AREA)
        t0 = time.perf_counter()
        ours = deblur(blur)
        seconds = time.perf_counter() - t0
        row = {
            "name": pair.name,
            "blur": str(pair.blur),
            "sharp": str(pair.sharp),
            "width": blur.shape[1],
            "height": blur.shape[0],
            "model_psnr": psnr(ours, sharp),
            "model_ssim": ssim(ours, sharp),
            "input_psnr": psnr(blur, sharp),
            "input_ssim": ssim(blur, sharp),
            "seconds": seconds,
        }
        rows.append(row)
        if examples_dir is not None:
            y0, x0, y1, x1 = highest_gradient_box(sharp)
            strip = side_by_side(blur[y0:y1, x0:x1], ours[y0:y1, x0:x1], sharp[y0:y1, x0:x1])
            ok, png = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
            if not ok:
                raise OutputError(
                    "could not encode the example image", example_path(examples_dir, pair, protocol)
                )
            _atomic_write(example_path(examples_dir, pair, protocol), png.tobytes(), overwrite)
        if on_row:
            on_row(row)

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in rows]))

    return {
        "protocol": protocol,
        "count": len(rows),
        "model": {"psnr": mean("model_psnr"), "ssim": mean("model_ssim")},
        "input": {"psnr": mean("input_psnr"), "ssim": mean("input_ssim")},
        "rows": rows,
    }


# --- report ---
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        if m:
            return m.group(1).strip()
    return platform.processor() or platform.machine()


def system_info(device: torch.device) -> dict[str, Any]:
    """Where and when this was measured, and the command line, for the JSON report."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return {
        "device": str(device),
        "device_name": name,
        "cpu_model": cpu_model(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def _finite(obj: Any) -> Any:
    """JSON has no inf/nan: such floats (e.g. the PSNR of identical images) become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: Path, report: dict[str, Any], *, overwrite: bool) -> None:
    """Write ``report`` to ``path`` atomically (temp file in the same folder, then rename)."""
    import json

    text = json.dumps(_finite(report), indent=2, allow_nan=False) + "\n"
    _atomic_write(Path(path), text.encode("utf-8"), overwrite)


def check_writable(path: Path | None, *, overwrite: bool) -> None:
    """Refuse an existing output before spending minutes measuring."""
    if path is not None and Path(path).exists() and not overwrite:
        raise OutputError("already exists (pass --overwrite to replace it)", path)
