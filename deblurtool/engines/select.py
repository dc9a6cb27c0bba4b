"""Which engine runs the generator and in which precision: decided here, once per model, as a runner.

A runner computes a generator's residual (the correction it adds to its input): ``N x 3 x h x w`` float32
``x_pm1`` in [-1, 1] on the runner's device, ``h`` and ``w`` multiples of ``runner.multiple``, in; the
residual, same shape, float32, same device, out. The input itself is never rounded to the run precision:
the :class:`~deblurtool.inference.Deblurrer` adds the residual to the float32 input and clamps (bf16 keeps
8 mantissa bits, half an 8-bit level near 1.0 and useless for 16-bit images; only the small correction is
rounded). Two runners ship: :class:`TorchRunner` (eager PyTorch, any device, fp32/bf16/fp16) and
``openvino_runner.OpenVinoRunner`` (CPU, fp32/bf16/int8). Both run the architecture's inference-fused copy
(``models.registry``), so every registered architecture runs on every engine.

The decision (:func:`select_runner`), from the device, the user's :class:`~deblurtool.config.RuntimeConfig`,
the model and what imports and passes its check:

- Engine ``auto``: PyTorch on CUDA (the GPU path is PyTorch fp16); on a CPU OpenVINO where it is installed,
  else PyTorch with a note. fp16 on a CPU stays with PyTorch (it is slow there, and a note says so).
- Every OpenVINO model is checked before use: its output on a real crop must be within
  ``ENGINE_CHECK_MIN_PSNR`` of PyTorch fp32's. With engine ``auto`` an OpenVINO that fails to load or to pass
  runs PyTorch instead, with a note; asked for by name, it is a one-line error.
- Precision ``auto`` on OpenVINO is int8 (NNCF) where NNCF imports, kept only if the quantised model deblurs
  the shipped calibration crops within ``INT8_MIN_PSNR`` of the fp32 model and keeps its correction within
  ``INT8_MIN_CORRECTION_DB`` (both measured once, cached), else
  OpenVINO's float model runs, with a note. int8 asked for by name runs regardless, with a warning below the
  bar. On PyTorch, precision ``auto`` follows ``devices.resolve_precision``.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

from deblurtool.config import RuntimeConfig
from deblurtool.devices import (
    INSTALL_NNCF,
    INSTALL_OPENVINO,
    module_available,
    precision_name,
    precision_notes,
    resolve_device,
    resolve_precision,
)
from deblurtool.errors import DeblurError, one_line
from deblurtool.models import registry

if TYPE_CHECKING:
    from deblurtool.engines.openvino_runner import OpenVinoRunner

# An engine's output on a real 64x64 crop must be at least this close to PyTorch fp32's (PSNR in dB on the
# [-1, 1] scale): a faithful conversion in any precision stays far above it, a broken one (wrong layout,
# padding, upsampling) falls far below.
ENGINE_CHECK_MIN_PSNR = 35.0
# int8 chosen by precision ``auto`` is kept only if the calibration crops it deblurs stay at least this close
# to the fp32 model's (PSNR on [-1, 1], ``openvino_runner.int8_psnr``): 45 dB is about one 8-bit level of
# noise, invisible. Below it, auto runs OpenVINO's float model.
INT8_MIN_PSNR = 45.0
# ... and only if it keeps the fp32 model's correction (its output minus its input): the correction's energy
# at least this many dB above int8's departure from the float output (``openvino_runner.int8_check``). A
# model whose correction is subtle can pass the PSNR bar and still lose a fifth of its gain to int8 noise;
# 15 dB lets int8 move at most about 3% of the correction's energy.
INT8_MIN_CORRECTION_DB = 15.0


class Runner(Protocol):
    """What the Deblurrer runs (module docstring): ``runner(x_pm1) -> residual``. ``engine`` and
    ``precision`` name it (the CLI's spellings), ``device`` is where its inputs and outputs live, ``multiple``
    the input sides it needs multiples of."""

    engine: str
    precision: str
    device: torch.device
    multiple: int

    def __call__(self, x_pm1: torch.Tensor, /) -> torch.Tensor: ...


class ResidualModule(nn.Module):
    """``forward(x_pm1) = net.residual(x_pm1)``: the part of a generator that engines convert and run."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x_pm1: torch.Tensor) -> torch.Tensor:
        residual: Callable[[torch.Tensor], torch.Tensor] = self.net.residual  # type: ignore[assignment]
        return residual(x_pm1)


def residual_module(model: nn.Module) -> ResidualModule:
    """``model``'s inference-fused copy (its architecture's fusion, eval mode, float32, CPU, no gradients)
    as a module computing the residual: the source of every engine and the fp32 reference of every check."""
    net = registry.fuse_for_inference(model).float().cpu()
    net.requires_grad_(False)
    return ResidualModule(net).eval()


class TorchRunner:
    """Eager PyTorch: the residual module on ``device`` in ``dtype``, channels_last, fed and returning
    float32 (the input is cast to ``dtype`` only for the network)."""

    engine = "torch"

    def __init__(self, module: nn.Module, *, device: torch.device, dtype: torch.dtype, multiple: int) -> None:
        self.module = module.to(device=device, dtype=dtype).to(memory_format=torch.channels_last)
        self.device, self.dtype, self.multiple = device, dtype, multiple
        self.precision = precision_name(dtype)

    def __call__(self, x_pm1: torch.Tensor) -> torch.Tensor:
        return self.module(x_pm1.to(self.dtype, memory_format=torch.channels_last)).float()


class WeightsDigest:
    """Names the weights a runner runs: the sha256 (hex) of the file ``path``, or for a model built in memory
    of its tensors, prefixed ``mem:``; computed once, when first asked (hashing takes a moment)."""

    def __init__(self, path: Path | None, model: nn.Module) -> None:
        self.path = path
        self._model = model

    @functools.cached_property
    def hex(self) -> str:
        if self.path is not None:
            from deblurtool.models.weights import file_sha256

            return file_sha256(self.path)
        h = hashlib.sha256()
        for name, t in sorted(self._model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return "mem:" + h.hexdigest()


@dataclass(frozen=True)
class EngineChoice:
    """What is to run before any model is built: ``engine`` torch|openvino, ``precision`` fp32|bf16|fp16|int8,
    ``dtype`` PyTorch's dtype (float32 under OpenVINO: the source of its conversion and its check), ``notes``
    saying why ``auto`` chose as it did, ``int8_by_auto``: int8 picked by precision auto (kept only if it
    passes its quality check)."""

    engine: str
    precision: str
    dtype: torch.dtype
    notes: tuple[str, ...] = ()
    int8_by_auto: bool = False


def choose_engine(engine: str, precision: str, device: torch.device) -> EngineChoice:
    """``engine`` auto|torch|openvino and ``precision`` (RuntimeConfig's spellings) -> what is to run on
    ``device``, from what is installed (module docstring). Errors are one line saying what to install or
    change."""
    if device.type != "cpu" or engine == "torch":
        if precision == "int8":
            raise DeblurError(
                "--precision int8 runs on OpenVINO on a CPU: use --device cpu and --engine auto"
            )
        if engine == "openvino":
            raise DeblurError("--engine openvino runs on the CPU; the GPU path is PyTorch: use --device cpu")
        dtype = resolve_precision(precision, device)
        return EngineChoice("torch", precision_name(dtype), dtype)
    has_ov = module_available("openvino")
    if engine == "auto" and precision == "fp16":
        return EngineChoice("torch", "fp16", torch.float16, ("engine auto chose torch: fp16 is PyTorch's",))
    if not has_ov:
        if engine == "openvino" or precision == "int8":
            asked = "--engine openvino" if engine == "openvino" else "--precision int8"
            raise DeblurError(f"{asked} needs OpenVINO, which is not installed: {INSTALL_OPENVINO}")
        dtype = resolve_precision(precision, device)
        note = f"OpenVINO is not installed: running PyTorch (engine torch); {INSTALL_OPENVINO}"
        return EngineChoice("torch", precision_name(dtype), dtype, (note,))
    if precision == "fp16":
        raise DeblurError("--precision fp16 is not an OpenVINO CPU precision: use auto, fp32, bf16 or int8")
    if precision == "int8":
        if not module_available("nncf"):
            raise DeblurError(f"--precision int8 needs NNCF, which is not installed: {INSTALL_NNCF}")
        return EngineChoice("openvino", "int8", torch.float32)
    float_name = precision_name(resolve_precision(precision, device))
    if precision == "auto":
        if module_available("nncf"):
            return EngineChoice("openvino", "int8", torch.float32, int8_by_auto=True)
        note = (
            f"NNCF is not installed, so precision auto runs OpenVINO {float_name} instead of int8; "
            f"{INSTALL_NNCF}"
        )
        return EngineChoice("openvino", float_name, torch.float32, (note,))
    return EngineChoice("openvino", float_name, torch.float32)


@dataclass
class Selection:
    """The runner chosen and the one-line notes on why (and warnings), for the CLI to show. ``notes`` is the
    list the runner's own later warnings (a corrupt cache entry) are appended to."""

    runner: Runner
    notes: list[str] = field(default_factory=list)


def changes_nothing(module: nn.Module, multiple: int) -> bool:
    """Whether the residual is exactly zero on a textured probe: all-zero (or untrained, zero-headed) weights,
    whose every output is its input."""
    side = max(32, multiple)
    gen = torch.Generator().manual_seed(0)
    probe = torch.rand(1, 3, side, side, generator=gen) * 2 - 1
    with torch.inference_mode():
        return not bool(module(probe).any())


def select_runner(model: nn.Module, runtime: RuntimeConfig, *, weights: WeightsDigest) -> Selection:
    """The runner for ``model`` (a registered architecture; left untouched) under ``runtime``, and notes."""
    device = resolve_device(runtime.device)
    choice = choose_engine(runtime.engine, runtime.precision, device)
    notes: list[str] = list(choice.notes)
    try:
        multiple = registry.input_multiple(model)
    except ValueError as e:
        raise DeblurError(f"cannot run this model: {e}") from None
    module = residual_module(model)
    if changes_nothing(module, multiple):
        notes.append(
            "this generator changes nothing: its correction is zero everywhere (all-zero or untrained "
            "weights), so every output equals its input"
        )
    if choice.engine == "openvino":
        runner = _openvino(module, choice, runtime, multiple, weights, notes)
        if runner is not None:
            return Selection(runner, notes)
        choice = choose_engine("torch", runtime.precision, device)
    notes += precision_notes(choice.dtype, device, runtime.precision)
    return Selection(TorchRunner(module, device=device, dtype=choice.dtype, multiple=multiple), notes)


def _openvino(
    module: ResidualModule,
    choice: EngineChoice,
    runtime: RuntimeConfig,
    multiple: int,
    weights: WeightsDigest,
    notes: list[str],
) -> OpenVinoRunner | None:
    """An OpenVINO runner that passed its checks, or None where engine ``auto`` should run PyTorch instead
    (``notes`` say why). int8 picked by precision auto that fails to build or stays below ``INT8_MIN_PSNR``
    gives way to OpenVINO's float model; int8 or OpenVINO asked for by name that fails is a one-line error."""
    cpu = torch.device("cpu")
    precision = choice.precision
    if choice.int8_by_auto:
        try:
            runner = build_openvino(module, "int8", multiple=multiple, weights=weights, notes=notes)
            quality, kept = runner.quality_db, runner.correction_db
            if (
                quality is not None
                and quality >= INT8_MIN_PSNR
                and kept is not None
                and (kept >= INT8_MIN_CORRECTION_DB)
            ):
                notes.append(
                    f"precision auto chose int8 (OpenVINO): {quality:.1f} dB from fp32 on the "
                    f"calibration crops, correction kept to {kept:.1f} dB; --precision fp32 runs the "
                    "float model"
                )
                return runner
            if quality is None or quality < INT8_MIN_PSNR:
                why = (
                    f"{quality:.1f} dB from fp32 on the calibration crops, below the "
                    f"{INT8_MIN_PSNR:.0f} dB required"
                )
            else:
                why = (
                    f"it keeps the fp32 model's correction to {kept:.1f} dB on the calibration crops, below "
                    f"the {INT8_MIN_CORRECTION_DB:.0f} dB required"
                )
        except Exception as e:
            why = one_line(e)
        precision = precision_name(resolve_precision("auto", cpu))
        notes.append(f"int8 not used ({why}); running OpenVINO {precision}")
    try:
        runner = build_openvino(module, precision, multiple=multiple, weights=weights, notes=notes)
    except Exception as e:
        if runtime.engine != "auto" or precision == "int8":
            raise DeblurError(f"--engine openvino, precision {precision}: {one_line(e)}") from e
        notes.append(f"OpenVINO could not be used ({one_line(e)}); running PyTorch (engine torch)")
        return None
    quality = runner.quality_db
    if quality is not None and quality < INT8_MIN_PSNR:
        _note(
            notes,
            f"warning: int8 deblurs the calibration crops {quality:.1f} dB from the fp32 model, below "
            f"the {INT8_MIN_PSNR:.0f} dB under which precision auto would not use it; check the output "
            "or use --precision fp32",
        )
    return runner


def _note(notes: list[str], text: str) -> None:
    import logging

    logging.getLogger(__name__).warning(text)
    if text not in notes:
        notes.append(text)


def build_openvino(
    module: ResidualModule, precision: str, *, multiple: int, weights: WeightsDigest, notes: list[str]
) -> OpenVinoRunner:
    """An OpenVINO runner of ``module`` in ``precision``, checked against PyTorch fp32 (:func:`check_engine`;
    int8 also measured, see ``OpenVinoRunner.quality_db``); a note says so when the model was built, not read
    from the cache. Its cache warnings go to ``notes``. Raises if it cannot be built or fails the check."""
    from deblurtool.engines.cache import cache_dir
    from deblurtool.engines.openvino_runner import OpenVinoRunner

    runner = OpenVinoRunner(
        module,
        precision=precision,
        compute_bf16=resolve_precision("auto", torch.device("cpu")) == torch.bfloat16,
        identity={"weights": weights.hex, "fused": "True"},
        threads=torch.get_num_threads(),
        warn=lambda text: _note(notes, text),
        multiple=multiple,
    )
    started = time.perf_counter()
    check_engine(runner, module)
    runner.quality_db  # noqa: B018 (int8: built and measured now, inside the timing)
    if runner.conversions:
        took = time.perf_counter() - started
        notes.append(
            f"OpenVINO {precision} model built from the weights in {took:.0f} s and cached in "
            f"{cache_dir()} (once per weights file and precision; each new frame or tile size "
            "compiles once)"
        )
    return runner


def check_engine(runner: Runner, module: nn.Module) -> None:
    """``runner``'s output on a real crop must match PyTorch fp32's (``module``: the fp32 residual module),
    input + residual clamped, within ``ENGINE_CHECK_MIN_PSNR``; DeblurError otherwise."""
    from deblurtool.engines.openvino_runner import calibration_batches
    from deblurtool.metrics import psnr

    x = torch.from_numpy(calibration_batches()[0][:, :, 96:160, 96:160].copy())
    with torch.inference_mode():
        want = torch.clamp(x + module(x).float(), -1.0, 1.0)
        got = torch.clamp(x + runner(x.to(runner.device)).float().cpu(), -1.0, 1.0)
    score = psnr(got, want, data_range=2.0)
    if not score >= ENGINE_CHECK_MIN_PSNR:
        raise DeblurError(
            f"its output is {score:.1f} dB from PyTorch fp32's on a real crop, "
            f"below the {ENGINE_CHECK_MIN_PSNR:.0f} dB required"
        )
