"""Deblurrer: run a generator over frames of any size, fast and without seams.

Per frame: plan tiles -> cut -> micro-batches through the model (BN folded into the convs, run dtype,
channels_last, ``torch.inference_mode``) -> feathered stitch in float32. Out of GPU memory, it backs off
(halve the batch, then the tile) and retries the same frame: no frame is ever dropped.

For a ``ResnetGenerator`` the network body runs in the run dtype while the global residual (input + body)
and the clamp stay in float32: the input image is never rounded to bf16/fp16 (bf16 keeps 8 mantissa bits,
half an 8-bit level near 1.0 and useless for 16-bit images), only the small correction the body adds is.

Engines (``RuntimeConfig.engine``, resolved by ``devices.resolve_engine``): ``torch`` runs the body eagerly as
above; ``openvino`` (CPU) runs the same BN-folded body converted to OpenVINO (fp32, bf16 or int8), compiled
per input shape and cached (``deblurtool.engines``), with the residual and clamp still in torch fp32. Before
it is used, its output on a real crop is checked against PyTorch fp32 (``ENGINE_CHECK_MIN_PSNR``); with
engine ``auto`` an OpenVINO that fails to load or to pass falls back to PyTorch with a note. int8 chosen by
precision ``auto`` must also stay within ``INT8_MIN_PSNR`` of fp32 on the calibration crops, else OpenVINO's
float model runs, with a note; int8 asked for by name runs regardless, with a warning below the bar.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from deblurtool.config import ModelSpec, RuntimeConfig, TileConfig
from deblurtool.devices import (
    EngineChoice,
    default_tile_config,
    precision_name,
    precision_notes,
    resolve_device,
    resolve_engine,
    resolve_precision,
)
from deblurtool.errors import DeblurError, InputError, ModelOutputError, one_line
from deblurtool.models.fold import fold_batchnorm
from deblurtool.models.generator import ResnetGenerator
from deblurtool.tiling import TilePlan, cut_tiles, plan_tiles, stitch_tiles

if TYPE_CHECKING:
    from deblurtool.engines.openvino_runner import OpenVinoRunner

log = logging.getLogger(__name__)

MIN_TILE_SIZE = 64  # below this the generator sees too little context (receptive field ~ 100 px)
# An engine's output on a real 64x64 crop must be at least this close to PyTorch fp32's (PSNR in dB on the
# [-1, 1] scale): bf16 and int8 of the shipped model measured 50-60 dB, a broken conversion scores below 20.
ENGINE_CHECK_MIN_PSNR = 35.0
# int8 chosen by precision ``auto`` is kept only if the calibration crops it deblurs stay at least this close
# to the fp32 model's (PSNR on [-1, 1], ``openvino_runner.int8_psnr``): 45 dB is about one 8-bit level of
# noise, invisible. The shipped weights measure 54.3 dB (the previous ones 63.8); below the bar auto runs
# OpenVINO's float model.
INT8_MIN_PSNR = 45.0


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in text or "not enough memory" in text)


def _finite(y: torch.Tensor, precision: str) -> torch.Tensor:
    """``y`` itself, or :class:`ModelOutputError` if it holds NaN or infinity: clamped and cast to integers,
    such values become a black (or garbage) frame that nobody would notice until they watched it."""
    if not bool(torch.isfinite(y).all()):
        hint = "" if precision == "fp32" else " or overflow in this precision (try --precision fp32)"
        raise ModelOutputError(
            f"the model returned non-finite values (NaN or infinity): damaged weights{hint}"
        )
    return y


class Deblurrer:
    """Deblur frames with a generator. ``deblurrer(rgb_u8) -> rgb_u8`` (also uint16 and float32 [0, 1]).

    ``tile`` None picks ``devices.default_tile_config`` per frame size. ``runtime`` None: auto device and
    precision. ``fuse`` folds BN into the convs (exact up to float rounding, and faster). ``weights_path``
    names the file the model came from (set by :meth:`from_weights`; None for a model built in memory).
    Attributes: ``device``, ``dtype``, ``tile`` (the settings in force, after any out-of-memory back-off),
    ``auto_tile`` (the tiling is the device's default), ``weights_path``, ``notes`` (one-line warnings,
    e.g. about a slow precision, for the CLI to show) and :attr:`signature`.
    """

    def __init__(
        self,
        model: nn.Module,
        tile: TileConfig | None = None,
        runtime: RuntimeConfig | None = None,
        *,
        fuse: bool = True,
        weights_path: Path | None = None,
    ) -> None:
        runtime = runtime or RuntimeConfig()
        self.device = resolve_device(runtime.device)
        # auto picks OpenVINO only for the generator it was measured and checked on; any other module (a
        # user's own, a test's fake) runs where it was written, unless an engine is named.
        engine = (
            runtime.engine if isinstance(model, ResnetGenerator) else runtime.engine.replace("auto", "torch")
        )
        choice = resolve_engine(engine, runtime.precision, self.device)
        self.engine, self.precision, self.dtype = choice.engine, choice.precision, choice.dtype
        self.notes: list[str] = list(choice.notes)
        if self.engine == "torch":
            self.notes += precision_notes(self.dtype, self.device, runtime.precision)
        self.weights_path = weights_path
        self.fused = fuse
        self.auto_tile = tile is None
        self._asked_tile = tile
        self._backed_off = False  # after an out-of-memory back-off, self.tile stays as backed off
        self.tile: TileConfig = tile or default_tile_config(self.device, None)
        net = fold_batchnorm(model) if fuse else copy.deepcopy(model).eval()
        net.requires_grad_(False)
        self._set_model(net)
        self._runner: Callable[[torch.Tensor], torch.Tensor] | None = None
        if self.engine == "openvino":
            self._start_openvino(runtime, choice.int8_by_auto)

    def _set_model(self, net: nn.Module) -> None:
        net = net.to(device=self.device, dtype=self.dtype).to(memory_format=torch.channels_last)
        self.model = net
        # Generator: run only the body in the run dtype, keep input + residual in float32 (module docstring).
        self._body: nn.Module | None = net.model if isinstance(net, ResnetGenerator) else None

    def _warn(self, text: str) -> None:
        log.warning(text)
        if text not in self.notes:
            self.notes.append(text)

    def _start_openvino(self, runtime: RuntimeConfig, int8_by_auto: bool) -> None:
        """Build the OpenVINO runner and check it. int8 picked by precision auto that fails to build or stays
        below ``INT8_MIN_PSNR`` gives way to OpenVINO's float model; with engine ``auto`` an OpenVINO that
        fails falls back to PyTorch (int8 asked for has no PyTorch path: then, as with ``--engine
        openvino``, a one-line error)."""
        if int8_by_auto:
            try:
                quality = self._openvino_runner().quality_db
                if quality is not None and quality >= INT8_MIN_PSNR:
                    self.notes.append(
                        f"precision auto chose int8 (OpenVINO): {quality:.1f} dB from fp32 on the "
                        "calibration crops; --precision fp32 runs the float model"
                    )
                    return
                why = (
                    f"{quality:.1f} dB from fp32 on the calibration crops, below the "
                    f"{INT8_MIN_PSNR:.0f} dB required"
                )
            except Exception as e:
                why = one_line(e)
            self._runner = None
            self.precision = precision_name(resolve_precision("auto", self.device))
            self.notes.append(f"int8 not used ({why}); running OpenVINO {self.precision}")
        try:
            runner = self._openvino_runner()
        except Exception as e:
            self._runner = None
            if runtime.engine != "auto" or self.precision == "int8":
                raise DeblurError(f"--engine openvino, precision {self.precision}: {one_line(e)}") from e
            fallback = resolve_engine("torch", runtime.precision, self.device)
            self.notes.append(f"OpenVINO could not be used ({one_line(e)}); running PyTorch (engine torch)")
            self._fall_back(fallback, runtime)
            return
        quality = runner.quality_db
        if quality is not None and quality < INT8_MIN_PSNR:
            self._warn(
                f"warning: int8 deblurs the calibration crops {quality:.1f} dB from the fp32 model, below "
                f"the {INT8_MIN_PSNR:.0f} dB under which precision auto would not use it; check the output "
                "or use --precision fp32"
            )

    def _openvino_runner(self) -> OpenVinoRunner:
        """An OpenVINO runner for the body in ``self.precision``, installed as ``self._runner`` and checked
        against PyTorch fp32 (``_check_engine``); a note says so when the model was built, not cached."""
        from deblurtool.engines.cache import cache_dir
        from deblurtool.engines.openvino_runner import OpenVinoRunner

        runner = OpenVinoRunner(
            self.body,
            precision=self.precision,
            compute_bf16=resolve_precision("auto", self.device) == torch.bfloat16,
            identity={"weights": self.weights_digest, "fused": str(self.fused)},
            threads=torch.get_num_threads(),
            warn=self._warn,
            residual=self._body is not None,
        )
        self._runner = runner  # callers reset it if this raises
        started = time.perf_counter()
        self._check_engine()
        runner.quality_db  # noqa: B018 (int8: built and measured now, inside the timing)
        if runner.conversions:
            took = time.perf_counter() - started
            self.notes.append(
                f"OpenVINO {self.precision} model built from the weights in {took:.0f} s and cached in "
                f"{cache_dir()} (once per weights file and precision; each new frame or tile size "
                "compiles once, in about a second)"
            )
        return runner

    def _fall_back(self, choice: EngineChoice, runtime: RuntimeConfig) -> None:
        self.engine, self.precision, self.dtype = choice.engine, choice.precision, choice.dtype
        self.notes += precision_notes(self.dtype, self.device, runtime.precision)
        self._set_model(self.model)

    @property
    def body(self) -> nn.Module:
        """The PyTorch module the engine runs: the generator's body (residual branch), or a plain model."""
        return self._body if self._body is not None else self.model

    def use_body(self, run: Callable[[torch.Tensor], torch.Tensor], *, engine: str, precision: str) -> None:
        """Run the body through ``run`` (``N x 3 x h x w`` float32 CPU in, the body's output in float32 out)
        instead: for measuring other engines (``bench --engine all``) with everything else as users run it
        (tiling, stitching, the residual and clamp in fp32). ``engine``/``precision`` name it."""
        self._runner, self.engine, self.precision = run, engine, precision

    def _check_engine(self) -> None:
        """The engine's output on a real crop must match PyTorch fp32's (``ENGINE_CHECK_MIN_PSNR``)."""
        from deblurtool.engines.openvino_runner import calibration_batches
        from deblurtool.metrics import psnr

        x = torch.from_numpy(calibration_batches()[0][:, :, 96:160, 96:160].copy())
        with torch.inference_mode():  # the PyTorch model is held in fp32 under OpenVINO
            want = self._finish(x, self.body(x).float())
            got = self._finish(x, self._run_body(x))
        score = psnr(got, want, data_range=2.0)
        if not score >= ENGINE_CHECK_MIN_PSNR:
            raise DeblurError(
                f"its output is {score:.1f} dB from PyTorch fp32's on a real crop, "
                f"below the {ENGINE_CHECK_MIN_PSNR:.0f} dB required"
            )

    @classmethod
    def from_weights(
        cls,
        path: Path | None = None,
        tile: TileConfig | None = None,
        runtime: RuntimeConfig | None = None,
    ) -> Deblurrer:
        """Load a generator file (None: the shipped default, checksum-verified) and wrap it."""
        from deblurtool.models.weights import default_weights_path, load_generator

        model = load_generator(path)
        return cls(model, tile, runtime, weights_path=default_weights_path() if path is None else Path(path))

    # -- identity -------------------------------------------------------------------------------------------

    @functools.cached_property
    def weights_digest(self) -> str:
        """sha256 (hex) of the weights file, or of the tensors run (``mem:`` prefixed) for a model built in
        memory."""
        if self.weights_path is not None:
            from deblurtool.models.weights import file_sha256

            return file_sha256(self.weights_path)
        h = hashlib.sha256()
        for name, t in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return "mem:" + h.hexdigest()

    def signature_fields(self) -> dict[str, str]:
        """The settings that make the output what it is, by name: the weights' content, the precision, the
        tiling asked for (``auto``: the device's default per frame size), the device kind (CUDA and CPU
        kernels round differently) and the engine. Out-of-memory back-offs do not count: they keep the asked
        settings' results within rounding."""
        t = self._asked_tile
        return {
            "weights": self.weights_digest[:16]
            if self.weights_path is not None
            else self.weights_digest[:20],
            "precision": self.precision,
            "tile": "auto" if t is None else f"{t.tile_size}/{t.tile_overlap}",
            "device": self.device.type,
            "engine": self.engine,
        }

    @property
    def signature(self) -> str:
        """One string naming :meth:`signature_fields`: outputs recorded in a folder's manifest with the same
        signature (and input) are done and skipped on a re-run; any other is redone."""
        return ";".join(f"{k}={v}" for k, v in self.signature_fields().items())

    # -- per-frame core -------------------------------------------------------------------------------------

    def _run_body(self, x_pm1: torch.Tensor) -> torch.Tensor:
        """The body's output (the generator's residual; a plain model's whole output) in float32."""
        if self._runner is not None:
            return self._runner(x_pm1)
        x_run = x_pm1.to(self.dtype, memory_format=torch.channels_last)
        return self.body(x_run).float()

    def _finish(self, x_pm1: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Generator: input + residual, clamped, in float32; a plain model's output as it is."""
        y = _finite(y, self.precision)
        return torch.clamp(x_pm1 + y, -1.0, 1.0) if self._body is not None else y

    def _run_batch(self, x_pm1: torch.Tensor) -> torch.Tensor:
        """``N x 3 x h x w`` float32 on device -> same, through the model in the run dtype and engine."""
        return self._finish(x_pm1, self._run_body(x_pm1))

    def _tile_for(self, height: int, width: int) -> TileConfig:
        if self.auto_tile and not self._backed_off:
            self.tile = default_tile_config(self.device, (height, width))
        return self.tile

    def _deblur_once(self, x_pm1: torch.Tensor, plan: TilePlan, batch_size: int) -> torch.Tensor:
        tiles = cut_tiles(x_pm1.to(self.device, non_blocking=True), plan)
        with torch.inference_mode():  # results are written into ``tiles``, an ordinary tensor, in place
            for i in range(0, plan.n_tiles, batch_size):
                tiles[i : i + batch_size] = self._run_batch(tiles[i : i + batch_size])
        # Stitched outside inference mode, so callers may modify the result in place.
        return stitch_tiles(tiles, plan).cpu()

    def _back_off(self, tile: TileConfig, plan: TilePlan, reason: str) -> TileConfig:
        """Halve the batch (where that shrinks a model call), then the tile (to MIN_TILE_SIZE, overlap
        scaled alike); DeblurError at the floor."""
        if min(tile.batch_size, plan.n_tiles) > 1:
            new = replace(tile, batch_size=min(tile.batch_size, plan.n_tiles) // 2)
        else:
            edge = max(plan.tile_h, plan.tile_w)
            size = max(MIN_TILE_SIZE, (edge // 2) // 4 * 4)
            if size >= edge:
                raise DeblurError(
                    f"out of memory on {self.device} even with batch size 1 and {edge}-pixel tiles "
                    f"(precision {self.precision}; {reason}); "
                    "free GPU memory or use --device cpu"
                )
            overlap = tile.tile_overlap * size // edge if tile.tile_size else size // 8
            new = TileConfig(tile_size=size, tile_overlap=min(overlap, size // 2 - 1), batch_size=1)
        msg = (
            f"out of memory on {self.device}: retrying with tile_size {new.tile_size}, "
            f"tile_overlap {new.tile_overlap}, batch_size {new.batch_size}"
        )
        log.warning(msg)
        if msg not in self.notes:
            self.notes.append(msg)
        return new

    def deblur_tensor(self, x_pm1: torch.Tensor) -> torch.Tensor:
        """``3 x H x W`` float32 CPU in [-1, 1] -> ``3 x H x W`` float32 CPU in [-1, 1]."""
        if x_pm1.dim() != 3 or x_pm1.shape[0] != 3:
            raise InputError(f"expected a 3 x H x W tensor, got shape {tuple(x_pm1.shape)}")
        x_pm1 = x_pm1.float()
        _, h, w = x_pm1.shape
        tile = self._tile_for(h, w)
        while True:
            plan = plan_tiles(h, w, tile.tile_size, tile.tile_overlap)
            try:
                return self._deblur_once(x_pm1, plan, tile.batch_size)
            except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
                if not _is_oom(e):
                    raise
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            # Outside the except block the exception and its frames (holding device tensors) are released.
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            tile = self._back_off(tile, plan, reason)
            self.tile, self._backed_off = tile, True

    def deblur_array(self, img: np.ndarray) -> np.ndarray:
        """``H x W x 3`` RGB uint8 / uint16 (full 0..65535 range) / float32 in [0, 1] -> same shape and dtype.

        Integers are rounded and clipped; floats clipped to [0, 1].
        """
        if img.ndim != 3 or img.shape[2] != 3:
            raise InputError(f"expected an H x W x 3 RGB image, got shape {img.shape}")
        if img.dtype == np.uint8:
            peak = 255.0
        elif img.dtype == np.uint16:
            peak = 65535.0
        elif img.dtype == np.float32:
            peak = 1.0
        else:
            raise InputError(f"expected a uint8, uint16 or float32 image, got {img.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
        if peak == 1.0:
            x = x.clamp(0.0, 1.0)
        y = self.deblur_tensor(x * (2.0 / peak) - 1.0)
        y = ((y + 1.0) * (peak / 2.0)).clamp(0.0, peak)
        if peak != 1.0:
            y = y.round()
        return y.permute(1, 2, 0).numpy().astype(img.dtype)

    __call__ = deblur_array


def load_deblurrer(spec: ModelSpec) -> Deblurrer:
    """The Deblurrer a :class:`ModelSpec` describes (the one entry point for commands, Ray workers, bench)."""
    return Deblurrer.from_weights(spec.weights, tile=spec.tile, runtime=spec.runtime)
