"""Deblurrer: run a generator over frames of any size, fast and without seams.

Per frame: plan tiles -> cut -> micro-batches through the runner -> feathered stitch in float32. The runner
(``engines.select``: eager PyTorch or OpenVINO, in the precision chosen there, once) computes only the
generator's residual; here, in one place and in float32, each tile becomes ``clamp(input + residual)``, so
the input image is never rounded to the run precision, and with ``strength`` s below 1 the blend
``input + s * (that - input)``. Tiles are padded by mirroring to the sides the architecture needs
(``runner.multiple``) and cropped back. Out of GPU memory, it backs off (halve the batch, then the tile)
and retries the same frame: no frame is ever dropped.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deblurtool.config import ModelSpec, RuntimeConfig, TileConfig
from deblurtool.devices import default_tile_config
from deblurtool.engines.select import Runner, WeightsDigest, select_runner
from deblurtool.errors import DeblurError, InputError, ModelOutputError
from deblurtool.models import registry
from deblurtool.tiling import TilePlan, cut_tiles, plan_tiles, stitch_tiles

log = logging.getLogger(__name__)

MIN_TILE_SIZE = 64  # below this the generator sees too little context


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


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``N x C x h x w`` padded at the bottom/right to sides that are multiples of ``multiple``: mirrored
    (reflection) where the pad is smaller than the side, else replicated (tiny tiles)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class Deblurrer:
    """Deblur frames with a runner. ``deblurrer(rgb_u8) -> rgb_u8`` (also uint16 and float32 [0, 1]).

    Build one with :meth:`from_weights` (a weights file), :meth:`from_model` (a generator in memory) or
    :func:`load_deblurrer` (a :class:`~deblurtool.config.ModelSpec`); the constructor takes any
    ``engines.select.Runner``. ``tile`` None picks ``devices.default_tile_config`` per frame size.
    ``strength`` in [0, 1] blends the output with the input (1: the model's output; 0: the input, bit for
    bit, without running the model). ``notes`` (one-line notes and warnings for the CLI to show) is kept
    and added to. Attributes: ``runner``, ``device``, ``engine``, ``precision`` (the runner's), ``tile``
    (the settings in force, after any out-of-memory back-off), ``auto_tile`` (the tiling is the device's
    default), ``weights_path``, ``strength``, ``notes`` and :attr:`signature`.
    """

    def __init__(
        self,
        runner: Runner,
        tile: TileConfig | None = None,
        *,
        strength: float = 1.0,
        weights: WeightsDigest | None = None,
        notes: list[str] | None = None,
        max_tile: int | None = None,
    ) -> None:
        if not 0.0 <= strength <= 1.0:
            raise DeblurError(f"--strength must be between 0 and 1, got {strength}")
        self.runner = runner
        self.strength = float(strength)
        self.notes: list[str] = notes if notes is not None else []
        self._weights = weights
        self.auto_tile = tile is None
        self._asked_tile = tile
        self._backed_off = False  # after an out-of-memory back-off, self.tile stays as backed off
        self._max_tile = max_tile  # the architecture's largest tile when tiling is left to the tool
        self.tile: TileConfig = tile or self._auto_tile(None)

    def _auto_tile(self, frame_hw: tuple[int, int] | None) -> TileConfig:
        """The device's default tiling, capped at the architecture's ``max_tile`` for larger frames."""
        tile = default_tile_config(self.runner.device, frame_hw)
        cap = self._max_tile
        if cap is None or (frame_hw is not None and max(frame_hw) <= cap):
            return tile
        if tile.tile_size == 0 or tile.tile_size > cap:
            return TileConfig(
                tile_size=cap, tile_overlap=min(tile.tile_overlap or 32, cap // 4), batch_size=4
            )
        return tile

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        tile: TileConfig | None = None,
        runtime: RuntimeConfig | None = None,
        *,
        strength: float = 1.0,
        weights_path: Path | None = None,
    ) -> Deblurrer:
        """Wrap ``model`` (a generator of a registered architecture; left untouched) with the runner that
        ``engines.select`` picks for ``runtime`` (None: all auto). ``weights_path`` names the file it came
        from (the cache and the signature then use the file's sha256)."""
        weights = WeightsDigest(weights_path, model)
        selection = select_runner(model, runtime or RuntimeConfig(), weights=weights)
        return cls(
            selection.runner,
            tile,
            strength=strength,
            weights=weights,
            notes=selection.notes,
            max_tile=registry.max_tile(model),
        )

    @classmethod
    def from_weights(
        cls,
        path: Path | None = None,
        tile: TileConfig | None = None,
        runtime: RuntimeConfig | None = None,
        *,
        strength: float = 1.0,
    ) -> Deblurrer:
        """Load a generator file (None: the shipped default, checksum-verified) and wrap it."""
        from deblurtool.models.weights import default_weights_path, load_generator

        model = load_generator(path)
        path = default_weights_path() if path is None else Path(path)
        return cls.from_model(model, tile, runtime, strength=strength, weights_path=path)

    # -- what runs ------------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.runner.device

    @property
    def engine(self) -> str:
        return self.runner.engine

    @property
    def precision(self) -> str:
        return self.runner.precision

    @property
    def weights_path(self) -> Path | None:
        return self._weights.path if self._weights is not None else None

    @property
    def weights_digest(self) -> str:
        """sha256 (hex) of the weights file, or of the tensors (``mem:`` prefixed) for a model built in
        memory; the runner's class name for a Deblurrer built on a bare runner."""
        return self._weights.hex if self._weights is not None else f"runner:{type(self.runner).__name__}"

    def signature_fields(self) -> dict[str, str]:
        """The settings that make the output what it is, by name: the weights' content, the precision, the
        tiling asked for (``auto``: the device's default per frame size), the device kind (CUDA and CPU
        kernels round differently), the engine and, below 1, the strength. Out-of-memory back-offs do not
        count: they keep the asked settings' results within rounding."""
        t = self._asked_tile
        digest = self.weights_digest
        fields = {
            "weights": digest[:16] if self.weights_path is not None else digest[:20],
            "precision": self.precision,
            "tile": "auto" if t is None else f"{t.tile_size}/{t.tile_overlap}",
            "device": self.device.type,
            "engine": self.engine,
        }
        if self.strength != 1.0:  # strength 1 is the model's output, as before strength existed
            fields["strength"] = format(self.strength, ".6g")
        return fields

    @property
    def signature(self) -> str:
        """One string naming :meth:`signature_fields`: outputs recorded in a folder's manifest with the same
        signature (and input) are done and skipped on a re-run; any other is redone."""
        return ";".join(f"{k}={v}" for k, v in self.signature_fields().items())

    # -- per-frame core -------------------------------------------------------------------------------------

    def _run_batch(self, x_pm1: torch.Tensor) -> torch.Tensor:
        """``N x 3 x h x w`` float32 on the device -> the same, deblurred: the one place where the residual
        is added to the input, clamped and blended by strength, in float32."""
        h, w = x_pm1.shape[-2:]
        padded = pad_to_multiple(x_pm1, self.runner.multiple)
        residual = self.runner(padded)
        if residual.shape != padded.shape:
            raise ModelOutputError(
                f"the model returned shape {tuple(residual.shape)} for input {tuple(padded.shape)}"
            )
        residual = _finite(residual[..., :h, :w], self.precision)
        out = torch.clamp(x_pm1 + residual, -1.0, 1.0)
        if self.strength != 1.0:
            out = torch.lerp(x_pm1, out, self.strength)
        return out

    def _tile_for(self, height: int, width: int) -> TileConfig:
        if self.auto_tile and not self._backed_off:
            self.tile = self._auto_tile((height, width))
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
        if self.strength == 0.0:
            return x_pm1.cpu().clone()
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

        Integers are rounded and clipped; floats clipped to [0, 1]. Strength 0 returns a copy of ``img``.
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
        if self.strength == 0.0:
            return img.copy()
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
    return Deblurrer.from_weights(spec.weights, tile=spec.tile, runtime=spec.runtime, strength=spec.strength)
