"""``deblurtool synth``: blur/sharp training pairs, from high-frame-rate clips (``--fps``: GoPro's own recipe)
or from sharp images and videos with synthetic camera motion."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deblurtool import ui
from deblurtool.commands.common import Overwrite, handle_errors
from deblurtool.errors import DeblurError, PartialFailure

HELP = """Make blur/sharp training pairs, the way GoPro made them or with synthetic camera motion.

[bold]From high-frame-rate clips[/] (--fps given): SRC is a video (anything FFmpeg decodes), a folder of
numbered frames, or a folder of such clips. Each pair is the mean of N consecutive frames (stored sRGB values,
like GoPro's blur/; --linear: in linear light, like blur_gamma/) with the middle frame as its sharp target:
real motion integrated over a real exposure. N is drawn per pair from --exposure at the capture rate --fps
(give it: containers often store a playback rate); windows follow each other through the clip without
sharing a frame (--step to overlap them). --scale resizes the frames first, so blur lengths in pixels can be
matched to other pairs' (scripts/calibrate_synth.py measures them). Writes OUT/CLIP/{blur,sharp}/
T0_avgN.png and OUT/manifest.json. A clip that cannot be read is skipped with a note (exit 1).

[bold]Synthetic motion[/] (no --fps): SRC is a folder of sharp images and/or videos. Each pair averages
7-13 sub-frames of a random hand-held camera motion (pan with inertia, shake, small rotation and zoom
about the frame centre, so blur varies across the crop) in sRGB or, with probability --gamma, in linear
light; the sharp target is the middle sub-frame, exactly aligned. The default --preset gopro matches the
blur length, averaging, noise, softness and compression measured on genuine GoPro training pairs
(scripts/calibrate_synth.py; the table is in the model card). Sources are rescaled to about 720p content
scale first (blur lengths follow GoPro's at 720p), videos give frames spread through them.
Writes OUT/train/SEQ/{blur,sharp}/NNNNNN.png, OUT/test/... (held-out source files) and OUT/manifest.json.
A source that cannot be read is skipped with a note (exit 1).

Either way the dataset appears in OUT only once complete (a failed run leaves nothing to clear), and the
same sources and --seed give byte-identical files.
"""

Src = Annotated[
    Path,
    typer.Argument(
        metavar="SRC",
        help="With --fps: a high-frame-rate video, a folder of its frames, or a folder of such clips. "
        "Without: a folder of sharp images and/or videos (searched recursively).",
    ),
]
Out = Annotated[Path, typer.Argument(metavar="OUT", help="Output dataset folder (GoPro layout).")]
Count = Annotated[
    int | None,
    typer.Option(
        "--count",
        min=0,
        help="Training pairs to write [default: 2000]. With --fps: pairs per clip at most [default: 0, as "
        "many as the clip holds].",
        show_default=False,
    ),
]
Fps = Annotated[
    float | None,
    typer.Option(
        "--fps",
        min=0.001,
        help="Capture rate of the clips in SRC (frames a second, e.g. 240 for GoPro's, 1000 for X4K1000FPS): "
        "makes pairs from consecutive frames instead of synthetic motion.",
    ),
]
Exposure = Annotated[
    str,
    typer.Option(
        "--exposure",
        metavar="LO,HI",
        help="With --fps: exposure range in milliseconds; each pair averages round(ms * fps / 1000) frames "
        "drawn in it. Default: GoPro's 7-13 frames at 240 fps (29.2,54.2).",
    ),
]
Linear = Annotated[
    bool,
    typer.Option("--linear", help="With --fps: average in linear light (gamma 2.2), written to blur_gamma/."),
]
Scale = Annotated[
    float,
    typer.Option("--scale", min=0.01, help="With --fps: resize frames by this factor before averaging."),
]
Step = Annotated[
    int,
    typer.Option(
        "--step",
        min=0,
        help="With --fps: frames from one window's start to the next one's; 0: the window's length (no "
        "frame in two pairs).",
    ),
]
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


TRAJECTORY_ONLY = (
    "size", "test_fraction", "test_count", "preset", "gamma", "frames_per_video", "workers", "blur_median",
    "blur_max",
)  # fmt: skip
HFR_ONLY = ("exposure", "linear", "scale", "step")


@handle_errors
def synth(
    ctx: typer.Context,
    src: Src,
    out: Out,
    count: Count = None,
    fps: Fps = None,
    exposure: Exposure = "",
    linear: Linear = False,
    scale: Scale = 1.0,
    step: Step = 0,
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
    """Make training pairs (blur, sharp) from high-frame-rate clips or sharp images and videos."""
    given = {
        n for n in ctx.params if getattr(ctx.get_parameter_source(n), "name", "DEFAULT") == "COMMANDLINE"
    }
    wrong = sorted(given & set(TRAJECTORY_ONLY if fps is not None else HFR_ONLY))
    if wrong:
        mode = "with --fps (pairs from consecutive frames)" if fps is not None else "without --fps"
        flags = ", ".join("--" + n.replace("_", "-") for n in wrong)
        raise DeblurError(f"{flags}: not an option {mode}; see deblurtool synth --help")
    if fps is not None:
        _synth_hfr(src, out, fps, count or 0, exposure, linear, scale, step, seed, overwrite)
        return
    if not src.is_dir():
        raise DeblurError(
            f"{src}: a single clip makes pairs from consecutive frames: give its capture rate with --fps "
            "(containers often store a playback rate, e.g. 25 for 1000 fps footage)"
        )
    if count == 0:
        raise DeblurError("--count must be at least 1 without --fps")
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
            2000 if count is None else count,
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
    _report_skipped([(r["source"], r["reason"]) for r in manifest["skipped"]])


def _report_skipped(skipped: list[tuple[str, str]]) -> None:
    for path, reason in skipped:
        ui.note(f"skipped {path}: {reason}")
    if skipped:
        raise PartialFailure(f"{len(skipped)} source(s) could not be read and were skipped (named above)")


def _exposure_s(text: str) -> tuple[float, float] | None:
    if not text.strip():
        return None
    try:
        lo, hi = (float(v) / 1000 for v in text.split(","))
    except ValueError:
        raise DeblurError(f"--exposure: expected LO,HI in milliseconds, got {text!r}") from None
    return lo, hi


def _synth_hfr(
    src: Path,
    out: Path,
    fps: float,
    count: int,
    exposure: str,
    linear: bool,
    scale: float,
    step: int,
    seed: int,
    overwrite: bool,
) -> None:
    from trainers.synth.hfr_dataset import HfrSettings, make_hfr_dataset

    settings = HfrSettings(
        fps=fps,
        exposure_s=_exposure_s(exposure),
        scale=scale,
        linear=linear,
        step=step,
        per_clip=count,
        seed=seed,
    )
    lo, hi = settings.n_range
    ui.tell(f"windows of {lo}-{hi} frames at {fps:g} fps ({'linear light' if linear else 'sRGB'} mean)")
    with ui.progress("clips") as bar:
        task = bar.add_task("synth", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = make_hfr_dataset(
            src, out, settings, overwrite=overwrite, warn=lambda _: None, progress=progress
        )
    ui.say(f"wrote {result.pairs} pairs from {len(result.clips)} clip(s) to {out}")
    _report_skipped(result.skipped)


synth.__doc__ = HELP
