"""``deblurtool bench``: speed (default) and, with ``--metrics``, quality on real blur/sharp pairs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from deblurtool.commands.common import Device, Overwrite, Precision, Weights, err_console, handle_errors
from deblurtool.errors import DeblurError, InputError

console = Console(highlight=False)

# Typer's rich help keeps a docstring's line breaks, so the help is built from paragraphs without them and set
# as the command's __doc__ below.
HELP = "\n\n".join(
    [
        "Measure speed and, with --metrics, quality.",
        "[bold]Speed[/] (the default; --no-speed skips it): times the generator end to end as users run "
        "it (tiling, batching, fused half precision) on one synthetic frame of --resolution, after a "
        "warm-up, median of --runs. Compares the plain fp32 whole-frame loop, each precision of the device "
        "and several tilings (--quick: only the baseline and the default). Reports ms per frame, fps, "
        "tiles/s, peak memory, MACs per frame counted from the model, and TFLOP/s against a matmul peak "
        "measured in the same run. Without shipped weights it times a freshly initialised generator and "
        "says so (speed does not depend on weight values).",
        "[bold]Quality[/] (--metrics): PSNR and SSIM of the model and of the blurry input itself on real "
        "pairs from --data (a GOPRO_Large root, a split folder SEQ/{blur,sharp} or a {blur,sharp} folder; "
        "default: the GoPro pairs in samples/gopro), at full resolution or with --resize 256 (the "
        "DeblurGAN report's protocol). Refuses to score untrained weights.",
        "Tile options left out keep the device default (when all three are left out); if only some are "
        "given, the others take 256 / 32 / 4, as in the video and folder commands.",
    ]
)

Resolution = Annotated[str, typer.Option("--resolution", help="Frame size WIDTHxHEIGHT timed for speed.")]
Runs = Annotated[int, typer.Option("--runs", min=1, help="Timed runs per variant after a warm-up (median).")]
Quick = Annotated[bool, typer.Option("--quick", help="Time only the baseline and the default settings.")]
OptTileSize = Annotated[
    int | None,
    typer.Option("--tile-size", min=0, help="Override the device's default tile size (0: whole frame)."),
]
OptTileOverlap = Annotated[
    int | None, typer.Option("--tile-overlap", min=0, help="Override the default overlap.")
]
OptBatchSize = Annotated[
    int | None, typer.Option("--batch-size", min=1, help="Override the default batch size.")
]
Metrics = Annotated[bool, typer.Option("--metrics", help="Also score quality (PSNR/SSIM) on real pairs.")]
Speed = Annotated[bool, typer.Option("--speed/--no-speed", help="Time the model (skip with --no-speed).")]
Data = Annotated[
    Path | None,
    typer.Option("--data", file_okay=False, help="Pairs folder for --metrics (default samples/gopro)."),
]
Resize = Annotated[
    int,
    typer.Option(
        "--resize", min=0, help="Score at NxN (INTER_AREA), e.g. 256 as in the report; 0: full frames."
    ),
]
SaveExamples = Annotated[
    Path | None,
    typer.Option(
        "--save-examples", file_okay=False, help="Write blur | ours | sharp crops (PNG) to this folder."
    ),
]
JsonOut = Annotated[
    Path | None, typer.Option("--json", dir_okay=False, help="Write the full report as JSON here.")
]


def parse_resolution(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)`` (width, height)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise DeblurError(f"--resolution must look like 1280x720 (WIDTHxHEIGHT), got {text!r}")
    return int(m.group(1)), int(m.group(2))


@handle_errors
def bench(
    device: Device = "auto",
    precision: Precision = "auto",
    resolution: Resolution = "1280x720",
    runs: Runs = 3,
    quick: Quick = False,
    tile_size: OptTileSize = None,
    tile_overlap: OptTileOverlap = None,
    batch_size: OptBatchSize = None,
    weights: Weights = None,
    metrics: Metrics = False,
    speed: Speed = True,
    data: Data = None,
    resize: Resize = 0,
    save_examples: SaveExamples = None,
    json_out: JsonOut = None,
    overwrite: Overwrite = False,
) -> None:
    """Measure speed and, with --metrics, quality (full help: ``HELP``)."""
    from deblurtool import bench as b
    from deblurtool import devices
    from deblurtool.config import RuntimeConfig, TileConfig

    width, height = parse_resolution(resolution)
    if not metrics and (data is not None or resize or save_examples is not None):
        raise DeblurError("--data, --resize and --save-examples belong to quality: add --metrics")
    if not speed and not metrics:
        raise DeblurError("nothing to do: --no-speed skips speed, add --metrics to score quality")
    if resize and (resize < 16 or resize % 4):
        raise DeblurError(f"--resize must be 0 or a multiple of 4 of at least 16, got {resize}")
    b.check_writable(json_out, overwrite=overwrite)
    runtime = RuntimeConfig(device=device, precision=precision)  # validates the spellings
    dev = devices.resolve_device(runtime.device)
    prec = b.DTYPE_NAMES[devices.resolve_precision(runtime.precision, dev)]
    given = {"tile_size": tile_size, "tile_overlap": tile_overlap, "batch_size": batch_size}
    given = {k: v for k, v in given.items() if v is not None}
    tile = TileConfig(**given) if given else None  # None: the device default for each frame size

    model, weights_info = b.load_model(weights, allow_untrained=not metrics)
    report: dict[str, Any] = {"system": b.system_info(dev), "weights": weights_info}
    if weights_info.get("note"):
        err_console.print(f"[yellow]note:[/] {weights_info['note']}")
    if speed:
        report["speed"] = b.run_speed(
            model, device=dev, default_tile=tile or devices.default_tile_config(dev, (height, width)),
            precision=prec, resolution=(width, height), runs=runs, quick=quick,
            on_variant=lambda v: err_console.print(f"timing {v.name} ...", highlight=False),
        )  # fmt: skip
        print_table(speed_table(report))
        print_notes(report["speed"]["notes"])
    if metrics:
        from deblurtool.inference import Deblurrer
        from deblurtool.pairs import find_pairs

        root = data if data is not None else b.SAMPLES_DIR
        if data is None and not root.is_dir():
            raise InputError("the sample pairs are not installed here; pass --data DIR", root)
        pairs = find_pairs(root)
        deblurrer = Deblurrer(model, tile=tile, runtime=RuntimeConfig(device=str(dev), precision=prec))
        report["quality"] = b.run_quality(
            deblurrer.deblur_array, pairs, resize=resize, examples_dir=save_examples, overwrite=overwrite,
            on_row=lambda r: err_console.print(f"scored {r['name']} ({r['seconds']:.1f} s)", highlight=False),
        )  # fmt: skip
        report["quality"]["data"] = str(root)
        last = deblurrer.tile  # the device default picks per frame size: these are the last frame's
        report["quality"]["settings"] = {"device": str(dev), "precision": prec, "tile_given": bool(given),
                                         "tile_size": last.tile_size, "tile_overlap": last.tile_overlap,
                                         "batch_size": last.batch_size}  # fmt: skip
        print_table(quality_table(report["quality"]))
    if json_out is not None:
        b.write_json(json_out, report, overwrite=overwrite)
        err_console.print(f"wrote {json_out}")


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


def print_table(table: Table) -> None:
    # Piped to a file or log, rich assumes 80 columns and would truncate the numbers: use 120 there.
    if not console.is_terminal:
        console.width = max(console.width, 120)
    console.print(table)


def print_notes(notes: list[str]) -> None:
    for note in notes:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)


def quality_table(q: dict[str, Any]) -> Table:
    from deblurtool.bench import REFERENCES

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


bench.__doc__ = HELP
