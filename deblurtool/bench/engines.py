"""``bench --engine all``: every CPU engine installed here, side by side on the same inference-fused net.

Rows: PyTorch eager (fp32, and bf16 where the CPU has it natively), ``torch.compile`` (inductor) at the
precision PyTorch's auto picks, OpenVINO fp32/bf16/int8 (int8: NNCF, with nncf installed), ONNX Runtime
fp32/int8 (static QDQ quantisation on the same calibration crops; with onnxruntime installed). PyTorch and
OpenVINO runners come from ``engines.select`` exactly as ``video`` gets them (the same checks, and the same
cache entries when the weights come from a file); the two engines deblurtool does not ship are runners
built here on the same residual module. Each is timed as users run it (``Deblurrer.deblur_array``: uint8
in, tiling, residual and clamp in fp32, uint8 out) on a whole frame and in 256/32 tiles, after a warm-up
call that also pays any conversion or compilation (cached engines pay it once per shape, see ``deblurtool
cache``). Quality: PSNR of each engine's output against PyTorch fp32's (same tiling: whole frames) and
against the sharp frame, on real pairs.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deblurtool import devices
from deblurtool.bench.results import EngineRow, EnginesReport, Fp32Comparison, Fp32Row
from deblurtool.bench.speed import synthetic_frame
from deblurtool.config import RuntimeConfig, TileConfig
from deblurtool.engines.select import Runner, TorchRunner, WeightsDigest, residual_module, select_runner
from deblurtool.evaluate import PairScore, load_pair
from deblurtool.inference import Deblurrer
from deblurtool.metrics import psnr
from deblurtool.models import registry
from deblurtool.pairs import Pair

WHOLE = TileConfig(tile_size=0, tile_overlap=0, batch_size=1)
TILED = TileConfig(tile_size=256, tile_overlap=32, batch_size=1)
ArrayFn = Callable[[np.ndarray], np.ndarray]
BENCH_ENGINES = ("torch", "torch.compile", "openvino", "onnxruntime", "all")


@dataclass(frozen=True)
class EngineVariant:
    """One engine at one precision. ``engine``: torch | torch.compile | openvino | onnxruntime."""

    engine: str
    precision: str

    @property
    def name(self) -> str:
        return f"{self.engine} {self.precision}"


def engine_variants(engines: str = "all") -> tuple[list[EngineVariant], list[str]]:
    """The variants installed here (``engines``: all, or engine names joined by commas), and notes on those
    skipped."""
    bf16 = devices.cpu_has_native_bf16()
    want = list(BENCH_ENGINES[:-1]) if engines == "all" else engines.split(",")
    out: list[EngineVariant] = []
    notes: list[str] = []
    if "torch" in want:
        out += [EngineVariant("torch", "fp32"), *([EngineVariant("torch", "bf16")] if bf16 else [])]
    if "torch.compile" in want:  # at the precision auto picks for PyTorch here (bf16 only if faster)
        auto = devices.resolve_precision("auto", torch.device("cpu"))
        out.append(EngineVariant("torch.compile", devices.precision_name(auto)))
    if "openvino" in want:
        if devices.module_available("openvino"):
            out += [EngineVariant("openvino", p) for p in ("fp32", *(["bf16"] if bf16 else []))]
            if devices.module_available("nncf"):
                out.append(EngineVariant("openvino", "int8"))
            else:
                notes.append(f"openvino int8 skipped: NNCF is not installed ({devices.INSTALL_NNCF})")
        else:
            notes.append("openvino skipped: not installed")
    if "onnxruntime" in want:
        if devices.module_available("onnxruntime") and devices.module_available("onnx"):
            out += [EngineVariant("onnxruntime", "fp32"), EngineVariant("onnxruntime", "int8")]
        else:
            notes.append('onnxruntime skipped: not installed (pip install "deblurtool[bench-engines]")')
    return out, notes


# -- engines that deblurtool itself does not ship ------------------------------------------------------------


class _FnRunner:
    """A runner (``engines.select.Runner``) around a function: for engines deblurtool does not ship."""

    device = torch.device("cpu")

    def __init__(
        self, fn: Callable[[torch.Tensor], torch.Tensor], engine: str, precision: str, multiple: int
    ):
        self.fn, self.engine, self.precision, self.multiple = fn, engine, precision, multiple

    def __call__(self, x_pm1: torch.Tensor) -> torch.Tensor:
        return self.fn(x_pm1)


def _ort_runner(body: nn.Module, precision: str, threads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``body`` exported to ONNX (dynamic N, H, W) and run by ONNX Runtime's CPU provider; int8: static QDQ
    quantisation (uint8 activations, int8 weights) calibrated on the shipped crops."""
    import onnxruntime as ort
    from onnxruntime import quantization as q

    from deblurtool.engines.openvino_runner import calibration_batches

    with tempfile.TemporaryDirectory(prefix="deblurtool-onnx-") as tmp:
        path = Path(tmp) / "body.onnx"
        axes = {0: "n", 2: "h", 3: "w"}
        torch.onnx.export(
            body, (torch.zeros(1, 3, 64, 64),), str(path), input_names=["x"], output_names=["y"],
            dynamic_axes={"x": axes, "y": axes}, dynamo=False, opset_version=17,
        )  # fmt: skip
        if precision == "int8":

            class Crops(q.CalibrationDataReader):
                def __init__(self) -> None:
                    self.batches = iter(calibration_batches())

                def get_next(self) -> dict[str, np.ndarray] | None:
                    batch = next(self.batches, None)
                    return None if batch is None else {"x": batch}

            quantised = Path(tmp) / "body.int8.onnx"
            q.quantize_static(
                str(path), str(quantised), Crops(), quant_format=q.QuantFormat.QDQ,
                activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
            )  # fmt: skip
            path = quantised
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path.read_bytes(), options, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(
            session.run(None, {"x": np.ascontiguousarray(x.numpy())})[0].astype(np.float32)
        )

    return run


def make_deblurrer(
    variant: EngineVariant, model: nn.Module, tile: TileConfig, weights_path: Path | None = None
) -> Deblurrer:
    """A Deblurrer running ``variant`` with ``tile``: PyTorch and OpenVINO as ``engines.select`` builds them
    for users (``weights_path``: the file ``model`` came from, so the same cache entries serve); the other
    engines as runners of the same residual module."""
    if variant.engine in ("torch", "openvino"):
        runtime = RuntimeConfig("cpu", variant.precision, variant.engine)
        return Deblurrer.from_model(model, tile, runtime, weights_path=weights_path)
    weights = WeightsDigest(weights_path, model)
    multiple = registry.input_multiple(model)
    runner: Runner
    if variant.engine == "torch.compile":
        selected = select_runner(model, RuntimeConfig("cpu", variant.precision, "torch"), weights=weights)
        assert isinstance(selected.runner, TorchRunner)
        eager = selected.runner
        compiled = torch.compile(eager.module, backend="inductor", dynamic=False)
        dtype = eager.dtype

        def run(x: torch.Tensor) -> torch.Tensor:
            return compiled(x.to(dtype, memory_format=torch.channels_last)).float()

        runner = _FnRunner(run, variant.engine, variant.precision, multiple)
    else:
        ort = _ort_runner(residual_module(model), variant.precision, torch.get_num_threads())
        runner = _FnRunner(ort, variant.engine, variant.precision, multiple)
    return Deblurrer(runner, tile, weights=weights)


def time_first_and_median(fn: ArrayFn, frame: np.ndarray, runs: int) -> tuple[float, float]:
    """``(first call s, median of runs s)``: the first call pays conversion/compilation and warms up."""
    t0 = time.perf_counter()
    fn(frame)
    first = time.perf_counter() - t0
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(frame)
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def run_engines(
    model: nn.Module,
    *,
    weights_path: Path | None = None,
    engines: str = "all",
    resolution: tuple[int, int] = (1280, 720),
    runs: int = 1,
    speed: bool = True,
    pairs: list[Pair] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> EnginesReport:
    """Time (``speed``) and score (``pairs``) each of :func:`engine_variants` of ``model`` (from the file
    ``weights_path``, if any)."""
    variants, notes = engine_variants(engines)
    width, height = resolution
    frame = synthetic_frame(height, width)
    loaded = [(p, *load_pair(p)) for p in pairs or []]
    refs: list[np.ndarray] = []
    if loaded:
        say("scoring the PyTorch fp32 reference ...")
        ref = Deblurrer.from_model(model, WHOLE, RuntimeConfig("cpu", "fp32", "torch"))
        refs = [ref(blur) for _, blur, _ in loaded]
        del ref
    rows: list[EngineRow] = []
    for v in variants:
        row = EngineRow(name=v.name, engine=v.engine, precision=v.precision)
        try:
            for label, tile in (("whole", WHOLE), ("tiled", TILED)) if speed else ():
                say(f"timing {v.name} {label} ...")
                d = make_deblurrer(v, model, tile, weights_path)
                first, median = time_first_and_median(d.deblur_array, frame, runs)
                if label == "whole":
                    row.whole_first_s, row.whole_ms = first, 1e3 * median
                else:
                    row.tiled_first_s, row.tiled_ms = first, 1e3 * median
                notes.extend(f"{v.name}: {n}" for n in d.notes if f"{v.name}: {n}" not in notes)
                del d
                gc.collect()
            if loaded:
                say(f"scoring {v.name} on {len(loaded)} pair(s) ...")
                d = make_deblurrer(v, model, WHOLE, weights_path)
                outs = [d(blur) for _, blur, _ in loaded]
                row.psnr_vs_fp32 = float(np.mean([psnr(o, r) for o, r in zip(outs, refs, strict=True)]))
                row.psnr_vs_sharp = float(
                    np.mean([psnr(o, s) for o, (_, _, s) in zip(outs, loaded, strict=True)])
                )
                ref_sharp = float(np.mean([psnr(r, s) for r, (_, _, s) in zip(refs, loaded, strict=True)]))
                row.delta_vs_fp32_db = row.psnr_vs_sharp - ref_sharp
                del d
        except Exception as e:  # an engine that fails here is reported, the others still measured
            row.error = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
            notes.append(f"{v.name} failed: {row.error}")
        rows.append(row)
    base = next((r.whole_ms for r in rows if r.name == "torch bf16" and r.whole_ms), None)
    for r in rows:
        if base and r.whole_ms:
            r.speedup_vs_torch_bf16 = base / r.whole_ms
    return EnginesReport(
        resolution=(width, height),
        runs=runs,
        threads=torch.get_num_threads(),
        pairs=len(loaded),
        rows=rows,
        notes=notes,
    )


class Fp32Reference:
    """Scores a model's outputs against PyTorch fp32's on the same pairs (``bench --metrics`` with any other
    engine or precision): PSNR between the two outputs, and the difference of their PSNRs to the sharp frame.
    Fed each :class:`~deblurtool.evaluate.PairScore` as it is scored."""

    def __init__(self, model: nn.Module, tile: TileConfig | None) -> None:
        self.ref = Deblurrer.from_model(model, tile, RuntimeConfig("cpu", "fp32", "torch"))
        self.rows: list[Fp32Row] = []

    def score(self, s: PairScore) -> None:
        ref = self.ref(s.blur_rgb_u8)
        self.rows.append(Fp32Row(s.pair.name, psnr(s.out_rgb_u8, ref), psnr(ref, s.sharp_rgb_u8), s.psnr))

    def summary(self, name: str) -> Fp32Comparison:
        finite = [r.psnr_vs_fp32 for r in self.rows if np.isfinite(r.psnr_vs_fp32)]
        deltas = [r.model_psnr - r.fp32_psnr for r in self.rows]
        return Fp32Comparison(
            name=name,
            rows=self.rows,
            mean_psnr_vs_fp32=float(np.mean(finite)) if finite else float("inf"),
            min_psnr_vs_fp32=float(min(finite)) if finite else float("inf"),
            mean_fp32_psnr=float(np.mean([r.fp32_psnr for r in self.rows])),
            mean_delta_db=float(np.mean(deltas)),
            max_abs_delta_db=float(max(abs(d) for d in deltas)),
        )
