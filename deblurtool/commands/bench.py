"""``deblurtool bench``: speed (default) and, with ``--metrics``, quality on real blur/sharp pairs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from deblurtool import ui
from deblurtool.commands.common import (
    BatchSize,
    Device,
    Overwrite,
    Precision,
    TileOverlap,
    TileSize,
    handle_errors,
    tile_config,
)
from deblurtool.errors import DeblurError

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
        "DeblurGAN report's protocol). Refuses to score untrained weights. Sequences of two or more "
        "consecutive frames also get a temporal-consistency table: the warping error (RMS levels) of "
        "input, model output and sharp frames, each carried from frame to frame by the DIS optical flow "
        "of the input; an output should flicker no more than the sharp frames. --data may also be a video "
        "file or a folder of frames without ground truth: then only the temporal table (input and output).",
        "[bold]Engines[/] (--engine all): every CPU engine installed, side by side on the same net and "
        "threads (torch's: one per core, or OMP_NUM_THREADS); see --engine.",
        "[bold]Models[/] (--model or --weights given twice or more, or --video): the generators side by "
        "side, each as video runs it (its default engine and precision unless --engine/--precision say "
        "otherwise): load time (with any conversion or int8 quantisation not yet cached), the first frame "
        "and the median frame on the synthetic frame and, with --video, frames per second over the whole "
        "video end to end (decode, deblur, encode), and the speed-up against the first model named.",
        "Tile options left out keep the device default (when all three are left out); if only some are "
        "given, the others take 256 / 32 / 4, as in the video and folder commands.",
    ]
)

EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        metavar="ENGINE",
        help="auto, torch or openvino as in video/folder (speed: an engine other than torch is timed beside "
        "PyTorch eager; --metrics adds its PSNR against PyTorch fp32), or all: every engine installed here "
        "(PyTorch eager fp32/bf16, torch.compile, OpenVINO fp32/bf16/int8, ONNX Runtime fp32/int8 with "
        'pip install "deblurtool\\[bench-engines]") side by side, whole frame and 256/32 tiles; with '
        "--metrics also PSNR against PyTorch fp32 and the sharp frames of --data. A list such as "
        "torch,openvino picks among torch, torch.compile, openvino and onnxruntime.",
    ),
]
WeightsFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--weights",
        metavar="FILE",
        dir_okay=False,
        help="A generator .safetensors file (default: the shipped default model); repeat it (or add --model) "
        "to compare models side by side.",
    ),
]
Models = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        metavar="NAME",
        help="A shipped model by name (`deblurtool models` lists them); repeat it to compare models side by "
        "side (named models come first, then --weights files).",
    ),
]
Video = Annotated[
    Path | None,
    typer.Option(
        "--video",
        dir_okay=False,
        help="Compare the models end to end on this video too (decode, deblur, encode; the output is "
        "discarded), e.g. samples/GOPR0384_11_00_blur.mp4.",
    ),
]
Resolution = Annotated[str, typer.Option("--resolution", help="Frame size WIDTHxHEIGHT timed for speed.")]
Runs = Annotated[int, typer.Option("--runs", min=1, help="Timed runs per variant after a warm-up (median).")]
Quick = Annotated[bool, typer.Option("--quick", help="Time only the baseline and the default settings.")]
Metrics = Annotated[bool, typer.Option("--metrics", help="Also score quality (PSNR/SSIM) on real pairs.")]
Speed = Annotated[bool, typer.Option("--speed/--no-speed", help="Time the model (skip with --no-speed).")]
Data = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="For --metrics: a pairs folder (default samples/gopro), or a clip (video file or folder of "
        "frames) for temporal consistency alone.",
    ),
]
ClipFrames = Annotated[
    int, typer.Option("--clip-frames", min=0, help="Frames of a --data clip to measure (0: all).")
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
    engine: EngineOpt = "auto",
    resolution: Resolution = "1280x720",
    runs: Runs = 3,
    quick: Quick = False,
    tile_size: TileSize = None,
    tile_overlap: TileOverlap = None,
    batch_size: BatchSize = None,
    weights: WeightsFiles = None,
    model: Models = None,
    video: Video = None,
    metrics: Metrics = False,
    speed: Speed = True,
    data: Data = None,
    resize: Resize = 0,
    save_examples: SaveExamples = None,
    json_out: JsonOut = None,
    clip_frames: ClipFrames = 0,
    overwrite: Overwrite = False,
) -> None:
    """Measure speed and, with --metrics, quality (full help: ``HELP``)."""
    from deblurtool.bench import BenchConfig, quality_table, run_bench, speed_table, temporal_table
    from deblurtool.bench.report import engines_table, fp32_table, models_table

    files = list(weights or [])
    if model:
        from deblurtool.models.weights import resolve_model

        files = [resolve_model(name) for name in model] + files
    config = BenchConfig(
        device=device, precision=precision, resolution=parse_resolution(resolution), runs=runs, quick=quick,
        tile=tile_config(tile_size, tile_overlap, batch_size), weights=tuple(files), metrics=metrics,
        speed=speed, data=data, resize=resize, save_examples=save_examples, json_out=json_out,
        overwrite=overwrite, clip_frames=clip_frames, engine=engine, video=video,
    )  # fmt: skip
    report = run_bench(config, say=ui.tell)
    if report.speed is not None:
        ui.print_table(speed_table(report.speed, report.system))
        for text in report.speed.notes:
            ui.note(text)
    if report.engines is not None:
        ui.print_table(engines_table(report.engines, report.system))
        for text in report.engines.notes:
            ui.note(text)
    if report.models is not None:
        ui.print_table(models_table(report.models, report.system))
        for row in report.models.rows:
            for text in row.notes:
                ui.note(f"{row.name}: {text}")
    if report.quality is not None:
        ui.print_table(quality_table(report.quality))
        if report.quality.vs_fp32 is not None:
            ui.print_table(fp32_table(report.quality.vs_fp32))
    if report.temporal is not None:
        ui.print_table(temporal_table(report.temporal))
    if json_out is not None:
        ui.tell(f"wrote {json_out}")


bench.__doc__ = HELP
