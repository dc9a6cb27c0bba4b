"""``deblurtool synth``: GoPro-like synthetic blur/sharp pairs from a folder of sharp images and videos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deblurtool import ui
from deblurtool.commands.common import Overwrite, handle_errors
from deblurtool.errors import DeblurError

HELP = """Make GoPro-like training pairs from sharp images and videos.

Each pair averages 7-13 sub-frames of a random hand-held camera motion (pan with inertia, shake, small
rotation and zoom about the frame centre, so blur varies across the crop) in sRGB or, with probability
--gamma, in linear light; the sharp target is the middle sub-frame, exactly aligned. The default --preset
gopro matches the blur length, averaging, noise, softness and compression measured on genuine GoPro
training pairs (scripts/calibrate_synth.py; the table is in the model card). Sources are rescaled to
about 720p content scale first (blur lengths follow GoPro's at 720p), videos give frames spread through them.
Writes OUT/train/SEQ/{blur,sharp}/NNNNNN.png, OUT/test/... (held-out source files) and OUT/manifest.json.
Same sources and --seed give byte-identical files.
"""

Src = Annotated[
    Path,
    typer.Argument(metavar="SRC", help="Folder of sharp images and/or videos (searched recursively)."),
]
Out = Annotated[Path, typer.Argument(metavar="OUT", help="Output dataset folder (GoPro layout).")]
Count = Annotated[int, typer.Option("--count", min=1, help="Training pairs to write.")]
Size = Annotated[
    int, typer.Option("--size", min=64, help="Crop edge in pixels (smaller sources: whole frame).")
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed; same seed, same bytes.")]
TestFraction = Annotated[
    float, typer.Option("--test-fraction", min=0.0, max=0.9, help="Share of source files held out for test.")
]
TestCount = Annotated[
    int, typer.Option("--test-count", min=0, help="Test pairs written from held-out files.")
]
Preset = Annotated[
    str,
    typer.Option(
        "--preset",
        help="Blur model: gopro (calibrated on genuine GoPro training pairs: see the model card) or v1 (the "
        "model before calibration). The options below override single values.",
    ),
]
Gamma = Annotated[
    float | None,
    typer.Option(
        "--gamma", min=0.0, max=1.0, help="Probability of averaging in linear light (else sRGB). [preset]"
    ),
]
FramesPerVideo = Annotated[
    int, typer.Option("--frames-per-video", min=1, help="Frames taken from each video.")
]
Workers = Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")]
BlurMedian = Annotated[
    float | None,
    typer.Option(
        "--blur-median", min=0.0, help="Median blur extent at the crop centre, pixels at 720p scale. [preset]"
    ),
]
BlurMax = Annotated[
    float | None,
    typer.Option("--blur-max", min=0.0, help="Largest blur extent drawn, pixels at 720p scale. [preset]"),
]


@handle_errors
def synth(
    src: Src,
    out: Out,
    count: Count = 2000,
    size: Size = 512,
    seed: Seed = 0,
    test_fraction: TestFraction = 0.1,
    test_count: TestCount = 12,
    preset: Preset = "gopro",
    gamma: Gamma = None,
    frames_per_video: FramesPerVideo = 24,
    workers: Workers = 1,
    blur_median: BlurMedian = None,
    blur_max: BlurMax = None,
    overwrite: Overwrite = False,
) -> None:
    """Make GoPro-like synthetic training pairs (blur, sharp) from sharp images and videos."""
    from trainers.synth import make_dataset
    from trainers.synth.blur import preset as synth_preset

    try:
        params = synth_preset(
            preset, size=size, gamma=gamma, blur_median_px=blur_median, blur_max_px=blur_max
        )
    except ValueError as e:
        raise DeblurError(str(e)) from None
    with ui.progress("pairs") as bar:
        task = bar.add_task("synth", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        manifest = make_dataset(
            src,
            out,
            count,
            params,
            seed=seed,
            test_fraction=test_fraction,
            test_count=test_count,
            frames_per_video=frames_per_video,
            workers=workers,
            overwrite=overwrite,
            progress=progress,
        )
    n_train = len(manifest["samples"]) - manifest["test_count"]
    ui.say(
        f"wrote {n_train} train + {manifest['test_count']} test pairs from {len(manifest['sources'])} sources"
        f" ({len(manifest['test_sources'])} held out) to {out}"
    )


synth.__doc__ = HELP
