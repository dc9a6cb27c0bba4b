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

import torch
from rich.table import Table

from deblurtool.bench.results import (
    BenchReport,
    EnginesReport,
    Fp32Comparison,
    ModelsReport,
    QualityReport,
    SpeedReport,
    SystemInfo,
    TemporalReport,
    as_json,
)
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


def system_info(device: torch.device) -> SystemInfo:
    """Where and when this was measured, and the command line, for the JSON report."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return SystemInfo(
        device=str(device),
        device_name=name,
        cpu_model=cpu_model(),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        python=platform.python_version(),
        platform=platform.platform(),
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        command=shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    )


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


def write_json(path: Path, report: BenchReport, *, overwrite: bool) -> None:
    """Write ``report`` to ``path`` atomically (temp file in the same folder, then rename)."""
    text = json.dumps(as_json(report), indent=2, allow_nan=False) + "\n"
    write_output(Path(path), text.encode("utf-8"), overwrite=overwrite)


# --- tables ---


def _caption(legend: dict[str, str], columns: list[str]) -> str:
    """The legend of the columns the table has, in their order (a table describes only what it shows)."""
    return "; ".join(f"{c}: {legend[c]}" for c in columns if c in legend)


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else ("inf" if not math.isfinite(v) else format(v, spec))


def speed_table(s: SpeedReport, sysinfo: SystemInfo) -> Table:
    w, h = s.resolution
    peaks = ", ".join(f"{k} {v:.3g}" for k, v in s.matmul_peak_tflops.items())
    columns = ["variant", "ms/frame", "fps", "tiles/s", "GMAC", "TFLOP/s", "%peak", "MiB", "speedup"]
    legend = {
        "variant": "precision, whole frame or tile/overlap and batch (b); * the default settings",
        "GMAC": "multiply-adds per frame counted from the model (overlaps and padding included)",
        "%peak": "TFLOP/s as a share of the matmul peak in the same dtype",
        "MiB": "CUDA max allocated" if "cuda" in sysinfo.device else "peak RSS",
        "speedup": "against the plain fp32 loop",
    }
    t = Table(
        title=f"Speed: {w}x{h} frame, {sysinfo.device_name} ({sysinfo.device}, {sysinfo.threads} "
        f"threads), median of {s.runs}; matmul peak TFLOP/s {peaks}",
        title_justify="left",
        caption=_caption(legend, columns),
    )
    for col in columns:
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in s.variants:
        t.add_row(
            ("* " if r.is_default else "") + r.name, f"{r.ms_per_frame:.0f}", f"{r.fps:.3g}",
            f"{r.tiles_per_s:.3g}", f"{r.macs_per_frame / 1e9:.1f}", f"{r.tflops:.3f}",
            f"{100 * r.fraction_of_peak:.0f}", f"{r.peak_mem_mib:.0f}", f"{r.speedup_vs_baseline:.2f}x",
        )  # fmt: skip
    return t


def temporal_table(tc: TemporalReport) -> Table:
    """Warping error per sequence: the input's, the model's and (with ground truth) the sharp frames'."""
    sharp = tc.mean.sharp is not None
    columns = ["sequence", "pairs", "input", "model", *(["sharp"] if sharp else []), "trusted"]
    legend = {
        "input": "warping error of the input, RMS 8-bit levels (lower is steadier)",
        "model": "of the model's output: it should flicker no more than "
        + ("the sharp frames" if sharp else "the input"),
        "sharp": "of the sharp frames",
        "trusted": "share of pixels where the flow passed its forward-backward check",
    }
    t = Table(
        title=f"Temporal consistency over {tc.pairs} frame pairs: {tc.metric}",
        title_justify="left",
        caption=_caption(legend, columns),
    )
    t.add_column("sequence", no_wrap=True, overflow="ellipsis", min_width=21)
    for col in columns[1:]:
        t.add_column(col, justify="right")
    m = tc.mean
    rows = [(r.name, r.pairs, r.input, r.output, r.sharp, r.valid) for r in tc.rows]
    rows.append(("[bold]mean[/]", tc.pairs, m.input, m.output, m.sharp, m.valid))
    for name, pairs, inp, out, shp, valid in rows:
        cells = [f"{inp:.2f}", f"{out:.2f}", *([_fmt(shp, ".2f")] if sharp else [])]
        t.add_row(name, str(pairs), *cells, f"{100 * valid:.0f}%")
    return t


def quality_table(q: QualityReport) -> Table:
    columns = ["image", "input PSNR", "input SSIM", "model PSNR", "model SSIM", "gain dB"]
    legend = {
        "input PSNR": "the blurry frame itself against the sharp one (the do-nothing baseline)",
        "gain dB": "model PSNR minus input PSNR",
        "image": "ref rows: published means over the GoPro test set; * marks the protocol used here (numbers "
        "on another protocol are not comparable)",
    }
    t = Table(
        title=f"Quality on {q.count} pairs, protocol {q.protocol} ({q.data})",
        title_justify="left",
        caption=_caption(legend, columns),
    )
    t.add_column("image", no_wrap=True, overflow="ellipsis", min_width=21)
    for col in columns[1:]:
        t.add_column(col, justify="right")
    for r in q.rows:
        t.add_row(
            r.name, f"{r.input_psnr:.2f}", f"{r.input_ssim:.3f}", f"{r.model_psnr:.2f}",
            f"{r.model_ssim:.3f}", f"{r.model_psnr - r.input_psnr:+.2f}",
        )  # fmt: skip
    t.add_section()
    m, i = q.model, q.input
    t.add_row("[bold]mean[/]", f"{i.psnr:.2f}", f"{i.ssim:.3f}", f"[bold]{m.psnr:.2f}[/]",
              f"[bold]{m.ssim:.3f}[/]", f"{m.psnr - i.psnr:+.2f}")  # fmt: skip
    t.add_section()
    for label, protocol, ref_psnr, ref_ssim in REFERENCES:
        mark = "*" if protocol == q.protocol else " "
        ssim_text = "-" if ref_ssim is None else f"{ref_ssim:.2f}"
        t.add_row(f"[dim]{mark}ref {label}[/]", "", "", f"{ref_psnr:.2f}", ssim_text, "")
    return t


def engines_table(e: EnginesReport, sysinfo: SystemInfo) -> Table:
    """The engines side by side: ms per frame whole and tiled, and quality against fp32 and sharp frames."""
    w, h = e.resolution
    scored = e.pairs > 0
    title = f"CPU engines: {sysinfo.cpu_model}, {e.threads} threads"
    if e.timed:
        title += f"; {w}x{h} frame, median of {e.runs} after a warm-up"
    if scored:
        title += f"; quality on {e.pairs} real pair(s), whole frames"
    columns = ["engine precision"]
    columns += ["ms whole", "ms 256/32", "x torch bf16", "first s"] if e.timed else []
    columns += ["vs fp32 dB", "vs sharp dB", "delta dB"] if scored else []
    legend = {
        "ms whole": "the frame in one piece",
        "ms 256/32": "in 256-pixel tiles, overlap 32",
        "x torch bf16": "speed of the whole frame against PyTorch eager bf16's",
        "first s": "the first whole-frame call (pays conversion and compilation unless cached)",
        "vs fp32 dB": "PSNR of the output against PyTorch fp32's",
        "vs sharp dB": "against the sharp frame",
        "delta dB": "vs sharp minus PyTorch fp32's",
    }
    t = Table(title=title, title_justify="left", caption=_caption(legend, columns))
    t.add_column(columns[0])
    for col in columns[1:]:
        t.add_column(col, justify="right")
    for r in e.rows:
        cells = []
        if e.timed:
            cells += [_fmt(r.whole_ms, ".0f"), _fmt(r.tiled_ms, ".0f"), _fmt(r.speedup_vs_torch_bf16, ".2f")]
            cells += [_fmt(r.whole_first_s, ".1f")]
        if scored:
            cells += [
                _fmt(r.psnr_vs_fp32, ".1f"),
                _fmt(r.psnr_vs_sharp, ".3f"),
                _fmt(r.delta_vs_fp32_db, "+.3f"),
            ]
        t.add_row(r.name + (" (failed)" if r.error else ""), *cells)
    return t


def models_table(m: ModelsReport, sysinfo: SystemInfo) -> Table:
    """Several weights files side by side, each with its default engine and precision, end to end."""
    w, h = m.resolution
    video = m.video is not None
    title = (
        f"Models: {sysinfo.device_name} ({sysinfo.device}, {m.threads} threads); {w}x{h} frame, median of "
    )
    title += f"{m.runs} after a warm-up" + (f"; video {m.video}" if video else "")
    columns = ["model", "arch", "params M", "engine precision", "load s", "first s", "ms/frame"]
    columns += ["video fps", "video s"] if video else []
    columns += ["speed-up"]
    legend = {
        "load s": "loading, converting or quantising (once per weights file: cached afterwards)",
        "first s": "the first frame (compiles for its size unless cached)",
        "ms/frame": "median of the frame timings",
        "video fps": "frames per second over the whole video: decode, deblur, encode",
        "speed-up": "against the first model (by video fps with a video, else by ms/frame)",
    }
    t = Table(title=title, title_justify="left", caption=_caption(legend, columns))
    for col in columns:
        t.add_column(col, justify="left" if col in ("model", "arch", "engine precision") else "right")
    for r in m.rows:
        cells = [
            r.name, r.weights.arch, f"{r.weights.parameters / 1e6:.2f}", f"{r.engine} {r.precision}",
            f"{r.load_s:.1f}", _fmt(r.first_s, ".2f"), _fmt(r.ms_per_frame, ".0f"),
        ]  # fmt: skip
        if video:
            cells += [_fmt(r.video_fps, ".2f"), _fmt(r.video_s, ".1f")]
        cells += ["-" if r.speedup_vs_first is None else f"{r.speedup_vs_first:.2f}x"]
        t.add_row(*cells)
    return t


def fp32_table(v: Fp32Comparison) -> Table:
    """One engine/precision against PyTorch fp32 on the quality pairs."""
    columns = ["image", "vs fp32 dB", "fp32 PSNR", "model PSNR", "delta dB"]
    legend = {
        "vs fp32 dB": "PSNR of the output against PyTorch fp32's output",
        "delta dB": "its PSNR to the sharp frame minus PyTorch fp32's",
    }
    t = Table(
        title=f"{v.name} against PyTorch fp32 on the same pairs",
        title_justify="left",
        caption=_caption(legend, columns),
    )
    t.add_column("image", no_wrap=True, overflow="ellipsis", min_width=21)
    for col in columns[1:]:
        t.add_column(col, justify="right")
    for r in v.rows:
        t.add_row(
            r.name, _fmt(r.psnr_vs_fp32, ".1f"), f"{r.fp32_psnr:.3f}", f"{r.model_psnr:.3f}",
            f"{r.model_psnr - r.fp32_psnr:+.3f}",
        )  # fmt: skip
    t.add_section()
    t.add_row(
        "[bold]mean[/]", f"{_fmt(v.mean_psnr_vs_fp32, '.1f')} (min {_fmt(v.min_psnr_vs_fp32, '.1f')})",
        f"{v.mean_fp32_psnr:.3f}", f"{v.mean_fp32_psnr + v.mean_delta_db:.3f}",
        f"[bold]{v.mean_delta_db:+.3f}[/] (max |{v.max_abs_delta_db:.3f}|)",
    )  # fmt: skip
    return t
