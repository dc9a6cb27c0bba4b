"""What the device has and the number format the model runs in there: facts and the precision they imply.

Precision ``auto``: fp16 on CUDA (tensor cores on every CUDA GPU); on a CPU, bf16 where the CPU has native
bf16 instructions (AVX512_BF16 / AMX on x86, the BF16 extension on Arm) AND a one-off probe confirms that
bf16 convolutions actually beat fp32 here, else fp32. The probe exists because "native" is not "fast": on
some CPUs with AVX512_BF16 but no AMX, bf16 convolutions run slower than fp32. fp16 on a CPU is allowed when
asked for, with a warning: it is emulated there and slow.

Which engine runs (PyTorch or OpenVINO, int8 included) is decided in ``engines.select``, from these facts.
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
import platform
import sys
import time
from pathlib import Path

import torch

from deblurtool.config import PRECISIONS, TileConfig
from deblurtool.errors import DeblurError

_CPUINFO = Path("/proc/cpuinfo")
_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})

# Whole frames up to this many pixels on the CPU (4K UHD): one big tile redoes no overlap, where tiles
# recompute theirs and gain no speed per pixel on a CPU. Beyond it, or beyond half the RAM, tiles keep
# activations bounded: ``CPU_BYTES_PER_PIXEL`` is a whole fp32 frame's peak memory per pixel, with a margin.
CPU_WHOLE_FRAME_MAX_PIXELS = 3840 * 2160
CPU_BYTES_PER_PIXEL = 640
CPU_TILES = TileConfig(tile_size=256, tile_overlap=32, batch_size=1)
CPU_WHOLE_FRAME = TileConfig(tile_size=0, tile_overlap=0, batch_size=1)
# CUDA: memory-safe for any GPU worth using (a batch of 8 tiles of 256 in fp16); the out-of-memory
# back-off in inference.Deblurrer handles smaller cards.
CUDA_TILES = TileConfig(tile_size=256, tile_overlap=32, batch_size=8)

# The one mapping between precision names (``config.PRECISIONS`` less ``auto``) and torch dtypes.
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bf16"`` (the CLI's spelling); another dtype by its torch name."""
    names = {dt: name for name, dt in DTYPES.items()}
    return names.get(dtype, str(dtype).removeprefix("torch."))


def resolve_device(spec: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a usable torch.device (CUDA ones with their index).

    Asking for CUDA where there is none is an error, never a silent fall-back to a 100x slower CPU run.
    """
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or (spec.startswith("cuda:") and spec[5:].isdigit()):
        if not torch.cuda.is_available():
            raise DeblurError(
                f"--device {spec} was asked for but CUDA is not available "
                "(no NVIDIA GPU/driver, or a CPU-only torch build); use --device cpu"
            )
        index = torch.cuda.current_device() if spec == "cuda" else int(spec[5:])
        count = torch.cuda.device_count()
        if index >= count:
            raise DeblurError(
                f"--device {spec}: only {count} CUDA device(s) present (cuda:0..cuda:{count - 1})"
            )
        return torch.device("cuda", index)
    raise DeblurError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}")


def _cpuinfo_flags() -> set[str] | None:
    """The first processor's flags from /proc/cpuinfo, or None where it cannot be read."""
    try:
        text = _CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def _onednn_bf16() -> bool:
    """oneDNN's own check; on Arm it tests the BF16 extension (Graviton3, Apple M2 and later)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (checked, not assumed).

    Linux x86: /proc/cpuinfo flags avx512_bf16 or amx_bf16. Elsewhere: torch's own CPU capability queries
    (x86: ``torch.cpu.get_capabilities()``; Arm: oneDNN's bf16 check, which tests the BF16 extension).
    oneDNN's check is not used on x86, where it also says yes for plain AVX-512 (bf16 emulated, slow).
    """
    machine = platform.machine().lower()
    is_x86 = machine in _X86
    if sys.platform.startswith("linux") and is_x86:
        flags = _cpuinfo_flags()
        if flags is not None:
            return bool(flags & _NATIVE_BF16_FLAGS)
    try:
        if is_x86:
            caps = torch.cpu.get_capabilities()
            return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
        if machine in ("arm64", "aarch64"):
            return _onednn_bf16()
    except (AttributeError, RuntimeError):  # older torch without these helpers
        return False
    return False


def cuda_supports_bf16(device: torch.device) -> bool:
    """Native bf16 arithmetic needs compute capability 8.0 (Ampere) or newer."""
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


@functools.cache
def cpu_bf16_is_faster() -> bool:
    """Whether a bf16 3x3 convolution (channels_last, the generator's main cost) beats fp32 on this CPU.

    Measured once per process (~0.1 s, one thread, CPU time so other processes' load does not skew it):
    best of 3 alternating runs each; bf16 must win by 10% to be chosen. Only asked when the CPU has native
    bf16, so emulated bf16 is never probed. The global RNG is left as it was: the probe's random conv and
    input would otherwise shift any seeded run (training's exact resume) that happens to call it first.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(memory_format=torch.channels_last)
            x = torch.randn(1, 128, 64, 64).contiguous(memory_format=torch.channels_last)
        cases = {dt: (copy.deepcopy(conv).to(dt), x.to(dt)) for dt in (torch.float32, torch.bfloat16)}
        best = dict.fromkeys(cases, float("inf"))
        with torch.inference_mode():
            for c, xi in cases.values():  # warm-up: oneDNN picks and compiles its kernels on first use
                c(xi)
            for _ in range(3):
                for dt, (c, xi) in cases.items():
                    t = time.process_time()
                    c(xi)
                    best[dt] = min(best[dt], time.process_time() - t)
        return best[torch.bfloat16] < 0.9 * best[torch.float32]
    finally:
        torch.set_num_threads(threads)


def resolve_precision(spec: str, device: torch.device) -> torch.dtype:
    """``auto`` | ``fp32`` | ``bf16`` | ``fp16`` -> the dtype the model runs in on ``device``.

    auto: fp16 on CUDA; on a CPU bf16 if it is native and measured faster (``cpu_bf16_is_faster``), else
    fp32. bf16 on a CUDA GPU older than Ampere is an error (emulated, slower than fp32). See
    ``precision_notes`` for the warnings a choice deserves.
    """
    if spec == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() and cpu_bf16_is_faster() else torch.float32
    if spec not in DTYPES:
        raise DeblurError(f"--precision must be one of {', '.join(PRECISIONS)}, got {spec!r}")
    if spec == "bf16" and device.type == "cuda" and not cuda_supports_bf16(device):
        name = torch.cuda.get_device_name(device)
        raise DeblurError(f"--precision bf16: {name} ({device}) has no native bf16; use fp16 or fp32")
    return DTYPES[spec]


def precision_notes(dtype: torch.dtype, device: torch.device, spec: str | None = None) -> list[str]:
    """One-line notes on ``dtype`` (resolved from the precision ``spec``, if given): warnings for choices that
    run badly on ``device``, and why ``auto`` passed over a native bf16. Empty if there is nothing to say."""
    notes: list[str] = []
    if spec == "auto" and device.type == "cpu" and dtype == torch.float32 and cpu_has_native_bf16():
        notes.append("precision auto chose fp32: bf16 convolutions measured slower than fp32 on this CPU")
    if device.type == "cpu" and dtype == torch.float16:
        notes.append(
            "warning: fp16 is slow on this CPU (emulated, no fast fp16 kernels); --precision auto runs bf16 "
            "or fp32 here"
        )
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bf16():
        notes.append("warning: this CPU has no native bf16, so bf16 is emulated and may be slower than fp32")
    return notes


def _physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not on every platform (Windows)
        return None


def cpu_whole_frame_max_pixels() -> int:
    """Largest frame run whole on the CPU: 4K UHD, less where half the RAM cannot hold its activations."""
    mem = _physical_memory_bytes()
    if mem is None:
        return CPU_WHOLE_FRAME_MAX_PIXELS
    return min(CPU_WHOLE_FRAME_MAX_PIXELS, mem // 2 // CPU_BYTES_PER_PIXEL)


def default_tile_config(device: torch.device, frame_hw: tuple[int, int] | None = None) -> TileConfig:
    """The fastest tiling at equal quality for ``device`` and a frame of ``frame_hw`` (height, width).

    CPU: whole frames up to ``cpu_whole_frame_max_pixels()`` (tiles recompute their overlaps and gain no
    speed per pixel on a CPU), 256-pixel tiles beyond. CUDA: 256-pixel tiles, batch 8. With no batch
    statistics at inference (BatchNorm folded, or LayerNorm) a tile's output does not depend on the batch, so
    whole frames and tiles give nearly the same pixels. ``frame_hw`` None: assume a frame that fits whole.
    """
    if device.type == "cuda":
        return CUDA_TILES
    if frame_hw is not None and frame_hw[0] * frame_hw[1] > cpu_whole_frame_max_pixels():
        return CPU_TILES
    return CPU_WHOLE_FRAME


# -- engines -------------------------------------------------------------------------------------------------

INSTALL_OPENVINO = 'pip install "openvino>=2025.1" (a dependency of deblurtool: reinstall it)'
INSTALL_NNCF = 'pip install "nncf>=2.16" (a dependency of deblurtool, used once per model to quantise it)'


def module_available(name: str) -> bool:
    """Whether ``name`` imports here (a real import: a broken install counts as missing)."""
    try:
        importlib.import_module(name)
    except (ImportError, OSError):
        return False
    return True


@functools.cache
def cpu_identity() -> str:
    """A short name for this CPU's kind (architecture, model name, flags): kernels compiled for one CPU are
    cached under it, so a cache folder shared between machines (a home on NFS) never runs another's."""
    import hashlib

    model = ""
    try:
        for line in _CPUINFO.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.partition(":")[0].strip() == "model name":
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    flags = " ".join(sorted(_cpuinfo_flags() or ()))
    text = f"{platform.machine()}|{model or platform.processor()}|{flags}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
