"""Frozen, validated settings shared by every layer (the same keyword names from CLI to kernels)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deblurtool.errors import DeblurError

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
# auto: OpenVINO on a CPU where it is installed and passes its check, else PyTorch; the GPU path is PyTorch.
ENGINES = ("auto", "torch", "openvino")


@dataclass(frozen=True)
class TileConfig:
    """How frames are cut for the model.

    ``tile_size`` 0 runs whole frames (padded to a multiple of 4). ``tile_overlap`` pixels are shared by
    neighbouring tiles and cross-faded so no seam shows. ``batch_size`` tiles go through the model at once.
    """

    tile_size: int = 256
    tile_overlap: int = 32
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.tile_size < 0 or (self.tile_size and self.tile_size % 4):
            raise DeblurError(
                f"--tile-size must be 0 (whole frames) or a positive multiple of 4, got {self.tile_size}"
            )
        if self.tile_size and self.tile_size < 16:
            raise DeblurError(f"--tile-size must be at least 16, got {self.tile_size}")
        if self.tile_overlap < 0 or (self.tile_size and self.tile_overlap * 2 >= self.tile_size):
            raise DeblurError(
                f"--tile-overlap must be >= 0 and less than half the tile size, got {self.tile_overlap}"
            )
        if self.batch_size < 1:
            raise DeblurError(f"--batch-size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class RuntimeConfig:
    """Where, in which number format and by which engine the model runs: ``device`` auto|cpu|cuda|cuda:N,
    ``precision`` auto|fp32|bf16|fp16|int8 (auto: fp16 on CUDA; on a CPU int8 through OpenVINO where it
    passes its quality check, else bf16 on CPUs with native bf16 measured faster, else fp32; int8 only on
    a CPU, through OpenVINO), ``engine`` auto|torch|openvino (auto: OpenVINO on a CPU where it
    is installed and passes its check, else PyTorch; always PyTorch on CUDA)."""

    device: str = "auto"
    precision: str = "auto"
    engine: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise DeblurError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.engine not in ENGINES:
            raise DeblurError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        d = self.device
        ok = d in ("auto", "cpu", "cuda") or (d.startswith("cuda:") and d[5:].isdigit())
        if not ok:
            raise DeblurError(f"--device must be auto, cpu, cuda or cuda:N, got {d!r}")
        if d.startswith("cuda") and (self.engine == "openvino" or self.precision == "int8"):
            raise DeblurError(
                "--engine openvino and --precision int8 run on the CPU; the GPU path is PyTorch (fp16): "
                "use --device cpu"
            )
        if self.engine == "torch" and self.precision == "int8":
            raise DeblurError("--precision int8 runs on OpenVINO: use --engine auto or --engine openvino")


@dataclass(frozen=True)
class EncodeConfig:
    """Video encoder settings.

    ``codec`` is an FFmpeg encoder name, None for the output container's usual one (libx264; VP9 for WebM);
    ``crf`` the quality (lower is better), None for the codec's default (18 for x264/x265, 24 for VP9/AV1);
    a value given for a codec without one is ignored with a note; ``pix_fmt`` None keeps a pixel format close
    to the input's."""

    codec: str | None = None
    crf: int | None = None
    pix_fmt: str | None = None

    def __post_init__(self) -> None:
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise DeblurError(f"--crf must be between 0 and 63, got {self.crf}")


@dataclass(frozen=True)
class ModelSpec:
    """Which model runs and how, decided once per command and passed whole to the local run, the Ray workers
    and bench: ``weights`` (a generator file; None: the shipped default), ``runtime`` (device, precision,
    engine), ``tile`` (None: the device's default tiling per frame size) and ``strength`` (blend of the
    model's output with its input per pixel, 1 = the model's output, 0 = the input unchanged)."""

    weights: Path | None = None
    runtime: RuntimeConfig = RuntimeConfig()
    tile: TileConfig | None = None
    strength: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise DeblurError(f"--strength must be between 0 and 1, got {self.strength}")
