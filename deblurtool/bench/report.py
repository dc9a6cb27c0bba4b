"""The bench report: where and when it was measured, the JSON file, and the tables the command prints."""

from __future__ import annotations

import contextlib
import json
import math
import platform
import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from deblurtool.errors import OutputError
from deblurtool.fsutil import write_bytes

# Published numbers shown beside ours (GoPro test set): (label, protocol, PSNR dB, SSIM or None if not given).
REFERENCES = (
    ("DeblurGAN report (resize256)", "resize256", 26.42, 0.87),
    ("DeblurGAN paper (full)", "full", 28.7, None),  # Kupyn et al. 2018 (PSNR only here)
)


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


def check_writable(path: Path | None, *, overwrite: bool) -> None:
    """Refuse an existing output before spending minutes measuring."""
    if path is not None and Path(path).exists() and not overwrite:
        raise OutputError("already exists (pass --overwrite to replace it)", path)


def write_output(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write a report file (JSON, example image) temp-then-rename, refusing an existing one unless
    ``overwrite``; its folder is created."""
    check_writable(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, data)


def write_json(path: Path, report: dict[str, Any], *, overwrite: bool) -> None:
    """Write ``report`` to ``path`` atomically (temp file in the same folder, then rename)."""
    text = json.dumps(_finite(report), indent=2, allow_nan=False) + "\n"
    write_output(Path(path), text.encode("utf-8"), overwrite=overwrite)


# --- tables ---
def speed_table(report: dict[str, Any]) -> Table:
    s, sysinfo = report["speed"], report["system"]
    w, h = s["resolution"]
    peaks = ", ".join(f"{k} {v:.3g}" for k, v in s["matmul_peak_tflops"].items())
    t = Table(
        title=f"Speed: {w}x{h} frame, {sysinfo['device_name']} ({sysinfo['device']}, {sysinfo['threads']} "
        f"threads), median of {s['runs']}; matmul peak TFLOP/s {peaks}",
        title_justify="left",
        caption="variant: precision, tile/overlap, batch (b); * the default settings; %peak: of the matmul "
        "peak in the same dtype; MiB: "
        + ("CUDA max allocated" if "cuda" in sysinfo["device"] else "peak RSS"),
    )
    for col in ("variant", "ms/frame", "fps", "tiles/s", "GMAC", "TFLOP/s", "%peak", "MiB", "speedup"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in s["variants"]:
        t.add_row(
            ("* " if r["is_default"] else "") + r["name"], f"{r['ms_per_frame']:.0f}", f"{r['fps']:.3g}",
            f"{r['tiles_per_s']:.3g}", f"{r['macs_per_frame'] / 1e9:.1f}", f"{r['tflops']:.3f}",
            f"{100 * r['fraction_of_peak']:.0f}", f"{r['peak_mem_mib']:.0f}",
            f"{r['speedup_vs_baseline']:.2f}x",
        )  # fmt: skip
    return t


def temporal_table(tc: dict[str, Any]) -> Table:
    """Warping error per sequence: the input's, the model's and (with ground truth) the sharp frames'."""
    sharp = "sharp" in tc["mean"]
    t = Table(
        title=f"Temporal consistency over {tc['pairs']} frame pairs: {tc['metric']}",
        title_justify="left",
        caption="lower is steadier; an output should flicker no more than the sharp frames (or, without "
        "them, than the input). trusted: share of pixels where the flow passed its forward-backward check",
    )
    t.add_column("sequence", no_wrap=True, overflow="ellipsis", min_width=21)
    for col in ("pairs", "input", "model", *(["sharp"] if sharp else []), "trusted"):
        t.add_column(col, justify="right")
    rows = [*tc["rows"], {"name": "[bold]mean[/]", "pairs": tc["pairs"], **tc["mean"]}]
    for r in rows:
        cells = [f"{r['input']:.2f}", f"{r['output']:.2f}", *([f"{r['sharp']:.2f}"] if sharp else [])]
        t.add_row(r["name"], str(r["pairs"]), *cells, f"{100 * r['valid']:.0f}%")
    return t


def quality_table(q: dict[str, Any]) -> Table:
    t = Table(
        title=f"Quality on {q['count']} pairs, protocol {q['protocol']} ({q['data']})",
        title_justify="left",
        caption="input: the blurry frame itself (the do-nothing baseline). ref: published means over the "
        "GoPro test set; * marks the protocol used here (numbers on another protocol are not comparable)",
    )
    t.add_column("image", no_wrap=True, overflow="ellipsis", min_width=21)
    for col in ("input PSNR", "input SSIM", "model PSNR", "model SSIM", "gain dB"):
        t.add_column(col, justify="right")
    for r in q["rows"]:
        t.add_row(
            r["name"], f"{r['input_psnr']:.2f}", f"{r['input_ssim']:.3f}", f"{r['model_psnr']:.2f}",
            f"{r['model_ssim']:.3f}", f"{r['model_psnr'] - r['input_psnr']:+.2f}",
        )  # fmt: skip
    t.add_section()
    m, i = q["model"], q["input"]
    t.add_row("[bold]mean[/]", f"{i['psnr']:.2f}", f"{i['ssim']:.3f}", f"[bold]{m['psnr']:.2f}[/]",
              f"[bold]{m['ssim']:.3f}[/]", f"{m['psnr'] - i['psnr']:+.2f}")  # fmt: skip
    t.add_section()
    for label, protocol, ref_psnr, ref_ssim in REFERENCES:
        mark = "*" if protocol == q["protocol"] else " "
        ssim_text = "-" if ref_ssim is None else f"{ref_ssim:.2f}"
        t.add_row(f"[dim]{mark}ref {label}[/]", "", "", f"{ref_psnr:.2f}", ssim_text, "")
    return t


def engines_table(report: dict[str, Any]) -> Table:
    """The engines side by side: ms per frame whole and tiled, and quality against fp32 and sharp frames."""
    e, sysinfo = report["engines"], report["system"]
    w, h = e["resolution"]
    timed = any("whole_ms" in r for r in e["rows"])
    scored = e["pairs"] > 0
    title = f"CPU engines: {sysinfo['cpu_model']}, {e['threads']} threads"
    if timed:
        title += f"; {w}x{h} frame, median of {e['runs']} after a warm-up"
    if scored:
        title += f"; quality on {e['pairs']} real pair(s), whole frames"
    t = Table(
        title=title,
        title_justify="left",
        caption="whole: the frame in one piece; 256/32: 256-pixel tiles, overlap 32. first s: the first call "
        "(pays conversion/compilation unless cached). vs fp32: PSNR of the output against PyTorch fp32's; "
        "vs sharp: against the sharp frame; delta: that minus PyTorch fp32's",
    )
    t.add_column("engine precision")
    cols = (["ms whole", "ms 256/32", "x torch bf16", "first s"] if timed else []) + (
        ["vs fp32 dB", "vs sharp dB", "delta dB"] if scored else []
    )
    for col in cols:
        t.add_column(col, justify="right")

    def fmt(r: dict[str, Any], key: str, spec: str) -> str:
        v = r.get(key)
        return "-" if v is None else ("inf" if not math.isfinite(v) else format(v, spec))

    for r in e["rows"]:
        cells = []
        if timed:
            cells += [
                fmt(r, "whole_ms", ".0f"),
                fmt(r, "tiled_ms", ".0f"),
                fmt(r, "speedup_vs_torch_bf16", ".2f"),
            ]
            cells += [fmt(r, "whole_first_s", ".1f")]
        if scored:
            cells += [
                fmt(r, "psnr_vs_fp32", ".1f"),
                fmt(r, "psnr_vs_sharp", ".3f"),
                fmt(r, "delta_vs_fp32_db", "+.3f"),
            ]
        t.add_row(r["name"] + (" (failed)" if "error" in r else ""), *cells)
    return t


def fp32_table(v: dict[str, Any]) -> Table:
    """One engine/precision against PyTorch fp32 on the quality pairs."""
    t = Table(
        title=f"{v['name']} against PyTorch fp32 on the same pairs",
        title_justify="left",
        caption="vs fp32: PSNR of the output against PyTorch fp32's output; delta: its PSNR to the sharp "
        "frame minus PyTorch fp32's",
    )
    t.add_column("image", no_wrap=True, overflow="ellipsis", min_width=21)
    for col in ("vs fp32 dB", "fp32 PSNR", "model PSNR", "delta dB"):
        t.add_column(col, justify="right")
    for r in v["rows"]:
        t.add_row(
            r["name"], f"{r['psnr_vs_fp32']:.1f}", f"{r['fp32_psnr']:.3f}", f"{r['model_psnr']:.3f}",
            f"{r['model_psnr'] - r['fp32_psnr']:+.3f}",
        )  # fmt: skip
    t.add_section()
    t.add_row(
        "[bold]mean[/]", f"{v['mean_psnr_vs_fp32']:.1f} (min {v['min_psnr_vs_fp32']:.1f})",
        f"{v['mean_fp32_psnr']:.3f}", f"{v['mean_fp32_psnr'] + v['mean_delta_db']:.3f}",
        f"[bold]{v['mean_delta_db']:+.3f}[/] (max |{v['max_abs_delta_db']:.3f}|)",
    )  # fmt: skip
    return t
