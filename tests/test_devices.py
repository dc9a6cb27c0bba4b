"""Device and precision resolution, with the machine's capabilities faked (no GPU needed)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest
import torch

from deblurtool import devices as D
from deblurtool.config import PRECISIONS, TileConfig
from deblurtool.errors import DeblurError

CPU = torch.device("cpu")
CUDA0 = torch.device("cuda", 0)


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Fake GPU")


def _fake_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: str, machine: str = "x86_64") -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Fake\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    monkeypatch.setattr(D, "_CPUINFO", cpuinfo)
    monkeypatch.setattr(D.sys, "platform", "linux")
    monkeypatch.setattr(D.platform, "machine", lambda: machine)


def test_resolve_device_without_cuda(no_cuda: None) -> None:
    assert D.resolve_device("auto") == CPU
    assert D.resolve_device("cpu") == CPU
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(DeblurError, match="CUDA is not available"):
            D.resolve_device(spec)
    with pytest.raises(DeblurError, match="--device"):
        D.resolve_device("mps")


def test_resolve_device_with_cuda(two_gpus: None) -> None:
    assert D.resolve_device("auto") == CUDA0
    assert D.resolve_device("cuda") == CUDA0
    assert D.resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeblurError, match="only 2 CUDA"):
        D.resolve_device("cuda:2")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("fpu sse avx2 avx512f avx512bw", False),  # AVX-512 alone: bf16 only emulated
        ("fpu avx2 avx512f avx512_bf16 avx512_fp16", True),
        ("fpu avx2 amx_bf16 amx_tile", True),
        ("fpu sse sse2", False),
    ],
)
def test_native_bf16_from_cpuinfo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: str, expected: bool
) -> None:
    _fake_cpu(monkeypatch, tmp_path, flags)
    assert D.cpu_has_native_bf16() is expected


def test_native_bf16_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D.sys, "platform", "darwin")
    monkeypatch.setattr(D.platform, "machine", lambda: "arm64")
    monkeypatch.setattr(D, "_onednn_bf16", lambda: True)
    assert D.cpu_has_native_bf16() is True
    monkeypatch.setattr(D, "_onednn_bf16", lambda: False)
    assert D.cpu_has_native_bf16() is False
    monkeypatch.setattr(D.platform, "machine", lambda: "AMD64")  # Windows x86: torch's capability table
    monkeypatch.setattr(D.sys, "platform", "win32")
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})
    assert D.cpu_has_native_bf16() is True
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": False, "avx2": True})
    assert D.cpu_has_native_bf16() is False
    monkeypatch.setattr(D.platform, "machine", lambda: "riscv64")
    assert D.cpu_has_native_bf16() is False


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")),
    reason="reads /proc/cpuinfo of a Linux x86 CPU",
)
def test_native_bf16_on_this_machine_matches_its_cpuinfo() -> None:
    """On this very machine, against the kernel's own flag list (read here independently of the code)."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    flags = next(line for line in cpuinfo.splitlines() if line.startswith("flags")).split(":", 1)[1].split()
    assert D.cpu_has_native_bf16() is bool({"avx512_bf16", "amx_bf16"} & set(flags))


@pytest.mark.parametrize(
    ("native", "faster", "expected"),
    [(True, True, torch.bfloat16), (True, False, torch.float32), (False, True, torch.float32)],
)
def test_auto_precision_on_cpu(
    monkeypatch: pytest.MonkeyPatch, native: bool, faster: bool, expected: torch.dtype
) -> None:
    monkeypatch.setattr(D, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(D, "cpu_bf16_is_faster", lambda: faster)
    assert D.resolve_precision("auto", CPU) == expected
    notes = D.precision_notes(expected, CPU, "auto")
    assert bool(notes) == (native and not faster)  # say why a native bf16 was passed over


def test_auto_precision_on_cuda(two_gpus: None) -> None:
    assert D.resolve_precision("auto", CUDA0) == torch.float16


def test_explicit_precisions(monkeypatch: pytest.MonkeyPatch, two_gpus: None) -> None:
    monkeypatch.setattr(D, "cpu_has_native_bf16", lambda: True)
    assert D.resolve_precision("fp32", CPU) == torch.float32
    assert D.resolve_precision("bf16", CPU) == torch.bfloat16
    assert D.precision_notes(torch.bfloat16, CPU, "bf16") == []
    assert D.resolve_precision("fp16", CPU) == torch.float16  # allowed, but warned about
    (note,) = D.precision_notes(torch.float16, CPU)
    assert "slow" in note and "\n" not in note
    monkeypatch.setattr(D, "cpu_has_native_bf16", lambda: False)
    assert any("emulated" in n for n in D.precision_notes(torch.bfloat16, CPU, "bf16"))
    assert D.precision_notes(torch.float16, CUDA0, "fp16") == []
    with pytest.raises(DeblurError, match="--precision"):
        D.resolve_precision("int8", CPU)


def test_bf16_on_old_gpu_is_an_error(monkeypatch: pytest.MonkeyPatch, two_gpus: None) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 5))
    with pytest.raises(DeblurError, match="no native bf16"):
        D.resolve_precision("bf16", CUDA0)
    assert D.resolve_precision("fp16", CUDA0) == torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (8, 0))
    assert D.resolve_precision("bf16", CUDA0) == torch.bfloat16


def test_bf16_probe_returns_a_bool_and_restores_threads_and_rng() -> None:
    threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    D.cpu_bf16_is_faster.cache_clear()
    assert isinstance(D.cpu_bf16_is_faster(), bool)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)  # seeded runs must not depend on who probed first


def test_default_tile_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "_physical_memory_bytes", lambda: 64 << 30)
    assert D.default_tile_config(CPU, (720, 1280)) == TileConfig(0, 0, 1)
    assert D.default_tile_config(CPU, (2160, 3840)).tile_size == 0
    assert D.default_tile_config(CPU, (4320, 7680)) == TileConfig(256, 32, 1)
    assert D.default_tile_config(CPU, None).tile_size == 0
    assert D.default_tile_config(CUDA0, (720, 1280)) == TileConfig(256, 32, 8)
    # A small machine: 4K whole frames would need ~5 GB, more than half of 8 GB.
    monkeypatch.setattr(D, "_physical_memory_bytes", lambda: 8 << 30)
    assert D.default_tile_config(CPU, (1080, 1920)).tile_size == 0
    assert D.default_tile_config(CPU, (2160, 3840)).tile_size == 256


def test_one_mapping_of_precision_names() -> None:
    assert list(D.DTYPES) == [p for p in PRECISIONS if p not in ("auto", "int8")]  # int8: OpenVINO's
    for name, dtype in D.DTYPES.items():
        assert D.precision_name(dtype) == name and D.resolve_precision(name, CPU) == dtype
    assert D.precision_name(torch.float64) == "float64"
