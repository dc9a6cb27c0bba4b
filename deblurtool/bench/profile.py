"""Where the time and memory go: MACs counted from the model itself, peak memory, a matmul's peak TFLOP/s, and
timing a function the way ``deblurtool bench`` reports it (warm-up, synchronised, median)."""

from __future__ import annotations

import math
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn


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
