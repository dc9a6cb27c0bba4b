"""A generator's residual on OpenVINO (CPU): converted from the PyTorch module, quantised to int8 by NNCF on
the shipped calibration crops where asked, compiled per input shape, everything cached (see :mod:`.cache`).

What is converted is the architecture's inference-fused residual module in fp32
(``engines.select.residual_module``; never another source of truth: the same tensors the PyTorch path runs,
loaded from the safetensors file). Adding the residual to the input and clamping stay in PyTorch fp32
(``inference.Deblurrer``), so the input image is never rounded. Two cache levels:

- ``model``: the converted (and for int8, quantised) OpenVINO model with a dynamic input shape, as IR (xml +
  weights); per weights, precision and OpenVINO version. Quantising is slow: done once. An int8 entry also
  holds its measured quality (:func:`int8_check`), so the check that decides whether precision ``auto`` may
  use it is paid once too.
- ``compiled``: the model reshaped to one static input shape (static shapes compile to the fastest kernels)
  and compiled for this CPU, exported; per shape, precision, thread count and CPU. Loading one is much
  faster than compiling it again. The newest ``MAX_COMPILED`` entries are kept (each holds the weights), so a
  folder of many image sizes cannot fill the disk.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.resources
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from deblurtool.devices import cpu_identity
from deblurtool.engines.cache import Warn, entry_path, prune, read_entry, write_entry

log = logging.getLogger(__name__)

MAX_COMPILED = 12
CALIBRATION_PACKAGE = "deblurtool.engines"
CALIBRATION_FOLDER = "calibration"


def calibration_files() -> list[Path]:
    """The shipped int8 calibration crops (real blurry GoPro frames, 256x256 PNG), in name order."""
    folder = importlib.resources.files(CALIBRATION_PACKAGE).joinpath(CALIBRATION_FOLDER)
    return sorted(Path(str(folder)).glob("*.png"))


@functools.cache
def calibration_digest() -> str:
    """sha256 over the calibration crops (names and bytes): another set makes another int8 model."""
    h = hashlib.sha256()
    for path in calibration_files():
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def calibration_batches() -> list[np.ndarray]:
    """Each crop as a ``1 x 3 x 256 x 256`` float32 array in [-1, 1], the body's input."""
    out = []
    for path in calibration_files():
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RuntimeError(f"calibration crop {path} is unreadable")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
        out.append(np.ascontiguousarray((rgb / 127.5 - 1.0).transpose(2, 0, 1)[None]))
    if not out:
        raise RuntimeError("no int8 calibration crops are installed (deblurtool/engines/calibration)")
    return out


@contextlib.contextmanager
def _quiet_conversion() -> Iterator[None]:
    """Hide what converting prints that users cannot act on: torch.jit.trace's warnings (OpenVINO's converter
    traces the module) and torch's C++-extension log lines probing for CUDA."""
    loggers = [logging.getLogger(name) for name in ("torch.utils.cpp_extension", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            # Shape-dependent branches (an architecture's own padding) are traced for aligned inputs, which
            # is all a runner is ever given (``multiple``): the tracer's warning about them does not apply.
            warnings.filterwarnings("ignore", message="Converting a tensor to a Python")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def convert(body: nn.Module) -> Any:
    """The fp32 torch ``body`` (input sides multiples of the architecture's, see ``OpenVinoRunner``) as an
    OpenVINO model with input ``N x 3 x H x W`` (all dynamic but channels).
    A module attribute so tests can count conversions."""
    import openvino as ov

    example = torch.zeros(1, 3, 64, 64)
    with torch.no_grad(), _quiet_conversion():
        return ov.convert_model(body, example_input=example, input=[ov.PartialShape([-1, 3, -1, -1])])


def quantize(model: Any, preset: str = "MIXED") -> Any:
    """Post-training int8 quantisation by NNCF, activations calibrated on the shipped crops. ``preset``: an
    ``nncf.QuantizationPreset`` name; MIXED (the default's): symmetric weights, asymmetric activations (the
    body's input and output are signed, its inner ones not). The engine stays quiet: NNCF's progress bars
    and messages are captured and logged at debug level (the caller says in one note that int8 was built)."""
    import nncf

    batches = calibration_batches()
    dataset = nncf.Dataset(batches)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            return nncf.quantize(
                model, dataset, preset=getattr(nncf.QuantizationPreset, preset), subset_size=len(batches)
            )
    finally:
        if captured.getvalue().strip():
            log.debug("NNCF: %s", captured.getvalue().strip())


def int8_psnr(body: nn.Module, run: Callable[[np.ndarray], np.ndarray]) -> float:
    """How close a quantised model stays to the float one: PSNR (dB, on the [-1, 1] scale, MSE pooled over
    every calibration crop) of the crops deblurred through ``run`` (the compiled int8 residual: array in,
    array out) against the same crops through the fp32 PyTorch residual module ``body``, both finished as the
    Deblurrer does (input + residual, clamped to [-1, 1]), so any architecture is measured alike."""
    return int8_check(body, run)[0]


def int8_check(body: nn.Module, run: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
    """``(psnr_db, correction_db)`` of the int8 ``run`` against the fp32 ``body`` on the calibration crops:
    :func:`int8_psnr`'s PSNR, and how much of the float model's correction (finished output minus input)
    int8 keeps: 10 log10 of the correction's energy over the energy of int8's departure from it. The PSNR
    bounds the visible noise; the second catches a model whose correction is small enough that noise well
    under one 8-bit level still undoes a large part of it (a subtle deblurrer loses its gain that way)."""
    from deblurtool.metrics import psnr

    wants, gots, inputs = [], [], []
    with torch.inference_mode():
        for batch in calibration_batches():
            x = torch.from_numpy(batch)
            want = body(x).float()
            got = torch.from_numpy(np.array(run(batch), dtype=np.float32, copy=True))
            want, got = torch.clamp(x + want, -1.0, 1.0), torch.clamp(x + got, -1.0, 1.0)
            wants.append(want)
            gots.append(got)
            inputs.append(x)
    want_t, got_t, x_t = torch.cat(wants), torch.cat(gots), torch.cat(inputs)
    quality = psnr(got_t, want_t, data_range=2.0)  # one MSE over all crops
    correction = float(((want_t - x_t).double() ** 2).sum())
    departure = float(((got_t - want_t).double() ** 2).sum())
    kept = float("inf") if departure == 0.0 else 10.0 * float(np.log10(max(correction, 1e-30) / departure))
    return quality, kept


def _ir_bytes(model: Any) -> dict[str, bytes]:
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="deblurtool-ir-") as tmp:
        xml = Path(tmp) / "model.xml"
        ov.save_model(model, str(xml), compress_to_fp16=False)
        return {"xml": xml.read_bytes(), "bin": xml.with_suffix(".bin").read_bytes()}


class OpenVinoRunner:
    """``runner(x_pm1) -> body(x_pm1)``: ``N x 3 x H x W`` float32 CPU tensors in and out, through OpenVINO
    (an ``engines.select.Runner``: ``body`` is a generator's residual module, ``H`` and ``W`` multiples of
    ``multiple``, which the traced model's shape arithmetic assumes).

    ``precision`` fp32|bf16|int8; ``compute_bf16`` whether the layers int8 leaves in floating point run in
    bf16 (as ``devices.resolve_precision('auto')`` would pick) or fp32. ``identity`` names the weights
    (``weights``: their sha256; ``fused``); ``threads`` the CPU threads, as torch's. ``warn`` hears cache
    problems (a corrupt entry rebuilt, an unwritable folder). ``conversions`` counts models built here.
    """

    engine = "openvino"
    device = torch.device("cpu")

    def __init__(
        self,
        body: nn.Module,
        *,
        precision: str,
        compute_bf16: bool,
        identity: Mapping[str, str],
        threads: int,
        warn: Warn,
        multiple: int = 1,
    ) -> None:
        import openvino as ov

        if precision not in ("fp32", "bf16", "int8"):
            raise ValueError(f"OpenVINO runs fp32, bf16 or int8, not {precision}")
        self._ov = ov
        self._core = ov.Core()
        self.body = body
        self.precision = precision
        self.threads = threads
        self.warn = warn
        bf16 = precision == "bf16" or (precision == "int8" and compute_bf16)
        self.config = {
            "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.model_key: dict[str, object] = {
            "kind": "model",
            **identity,
            "engine": "openvino",
            "openvino": ov.get_version(),
            "precision": precision,
        }
        if precision == "int8":
            self.model_key["calibration"] = calibration_digest()
            self.model_key["check"] = "int8_check-2"  # how the stored quality was measured
        self.multiple = multiple
        self._model: Any = None
        self._quality: float | None = None
        self._kept: float | None = None
        self._compiled: dict[tuple[int, ...], Any] = {}
        self.conversions = 0
        self.compilations = 0

    # -- level 1: the converted model ------------------------------------------------------------------------

    def _build_model(self) -> Any:
        self.conversions += 1
        model = convert(self.body)
        if self.precision == "int8":
            log.info("quantising the model to int8 (once per weights; cached)")
            model = quantize(model)
        return model

    def source_model(self) -> Any:
        """The converted model (dynamic shape), from the cache or built and cached."""
        if self._model is None:
            path = entry_path("model", self.model_key)
            parts = read_entry(path, self.model_key, self.warn)
            model = None
            if parts is not None:
                try:
                    weights = self._ov.Tensor(np.frombuffer(parts["bin"], np.uint8))
                    model = self._core.read_model(model=parts["xml"].decode(), weights=weights)
                    if self.precision == "int8":
                        self._quality, self._kept = (float(v) for v in parts["check"].decode().split())
                except (RuntimeError, KeyError, ValueError) as e:  # UnicodeDecodeError is a ValueError
                    self.warn(f"cache entry {path} could not be loaded ({e}); rebuilding it")
                    model = None
            if model is None:
                model = self._build_model()
                self._model = model
                entry = _ir_bytes(model)
                if self.precision == "int8":
                    self._quality, self._kept = self._measure_quality()
                    entry["check"] = f"{self._quality!r} {self._kept!r}".encode()
                write_entry(path, self.model_key, entry, self.warn)
            self._model = model
        return self._model

    def _measure_quality(self) -> tuple[float, float]:
        shape = (1, *calibration_batches()[0].shape[1:])
        compiled = self.compiled(shape)
        return int8_check(self.body, lambda batch: compiled(batch)[0])

    @property
    def quality_db(self) -> float | None:
        """int8: PSNR (dB) of its deblurred calibration crops against the fp32 PyTorch model's
        (:func:`int8_psnr`), measured once when quantised and kept in the cache; None for fp32/bf16."""
        if self.precision != "int8":
            return None
        self.source_model()
        return self._quality

    @property
    def correction_db(self) -> float | None:
        """int8: how much of the fp32 model's correction it keeps on the calibration crops (dB,
        :func:`int8_check`), measured and cached with ``quality_db``; None for fp32/bf16."""
        if self.precision != "int8":
            return None
        self.source_model()
        return self._kept

    # -- level 2: compiled per shape -------------------------------------------------------------------------

    def _compiled_key(self, shape: tuple[int, ...]) -> dict[str, object]:
        return {
            **self.model_key,
            "kind": "compiled",
            "shape": list(shape),
            "config": {k: str(v) for k, v in self.config.items()},
            "cpu": cpu_identity(),
        }

    def compiled(self, shape: tuple[int, ...]) -> Any:
        """The model compiled for input ``shape``: in memory, from the cache, or compiled and cached."""
        if shape in self._compiled:
            return self._compiled[shape]
        key = self._compiled_key(shape)
        path = entry_path("compiled", key)
        parts = read_entry(path, key, self.warn)
        compiled = None
        if parts is not None:
            try:
                compiled = self._core.import_model(parts["blob"], "CPU", self.config)
                os.utime(path)  # recently used: kept by the pruning
            except (RuntimeError, KeyError, OSError) as e:
                self.warn(f"cache entry {path} could not be loaded ({e}); rebuilding it")
                compiled = None
        if compiled is None:
            model = self.source_model().clone()
            model.reshape(list(shape))
            self.compilations += 1
            compiled = self._core.compile_model(model, "CPU", self.config)
            write_entry(path, key, {"blob": compiled.export_model().getvalue()}, self.warn)
            prune("compiled", MAX_COMPILED)
        self._compiled[shape] = compiled
        return compiled

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        compiled = self.compiled(tuple(x.shape))
        y = compiled(np.ascontiguousarray(x.detach().float().numpy()))[0]
        return torch.from_numpy(np.array(y, dtype=np.float32, copy=True))
