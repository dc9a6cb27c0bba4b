"""``deblurtool compare A B OUT``: a labelled before/after view of two images or two videos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deblurtool import ui
from deblurtool.commands.common import Codec, Crf, NoProgress, Overwrite, PixFmt, handle_errors
from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError, PartialFailure

LayoutOption = Annotated[
    str,
    typer.Option(
        "--layout",
        metavar="LAYOUT",
        help="side-by-side (A left, B right: twice as wide) or split (a wipe: A's left half, B's right "
        "half).",
    ),
]
Labels = Annotated[
    str | None,
    typer.Option(
        "--labels",
        metavar="A,B",
        help="The two labels, comma-separated (default: before,after); an empty one draws nothing.",
        show_default=False,
    ),
]
# The part of A to compare with B (videos): what `deblurtool video --start/--duration/--end` deblurred.
SliceStart = Annotated[
    str | None,
    typer.Option(
        "--start",
        metavar="TIME",
        help="Videos: compare A from TIME on (seconds or [HH:]MM:SS[.ms]) with the whole of B, e.g. B made "
        "by `deblurtool video A B --start TIME`.",
        show_default=False,
    ),
]
SliceDuration = Annotated[
    str | None,
    typer.Option(
        "--duration", metavar="TIME", help="Videos: only this long a part of A.", show_default=False
    ),
]
SliceEnd = Annotated[
    str | None,
    typer.Option(
        "--end", metavar="TIME", help="Videos: A only up to TIME (not with --duration).", show_default=False
    ),
]


@handle_errors
def compare(
    a: Annotated[Path, typer.Argument(metavar="A", help="The 'before' image or video.", show_default=False)],
    b: Annotated[
        Path,
        typer.Argument(metavar="B", help="The 'after' one, of the same size and length.", show_default=False),
    ],
    out: Annotated[
        Path,
        typer.Argument(
            metavar="OUT",
            help="The view: a video file (.mp4, .mkv, ...) for two videos, an image (.png, ...) for two "
            "images.",
            show_default=False,
        ),
    ],
    layout: LayoutOption = "side-by-side",
    labels: Labels = None,
    overwrite: Overwrite = False,
    codec: Codec = None,
    crf: Crf = None,
    pix_fmt: PixFmt = None,
    start: SliceStart = None,
    duration: SliceDuration = None,
    end: SliceEnd = None,
    no_progress: NoProgress = False,
) -> None:
    """Show two images or two videos together, labelled: side by side, or as a split-screen wipe.

    For judging a result against its input: A is usually the blurry original and B what `deblurtool video`
    or `deblurtool folder` made of it. Both must have the same size, and videos the same length (frame
    count or duration); anything else is refused before any work.

    Videos: the view has A's frame timing and A's audio and subtitles, and appears only when complete. Each
    input is shown upright (a rotation tag is applied to the pixels). To compare a slice made with
    `video --start/--duration/--end`, give compare the same options: they cut A.

    Images: below the view, the most detailed region of A and the same region of B, enlarged 4x pixel for
    pixel, where sharpening shows most; the region is outlined above. Written in OUT's format.

    Examples:

      deblurtool compare shaky.mp4 sharp.mp4 before-after.mp4

      deblurtool compare in.mp4 try.mp4 wipe.mp4 --start 1:05 --duration 5 --layout split

      deblurtool compare blurry.png deblurred.png view.png --labels "blurry,deblurred"

    Exit codes: 0 done; 1 an input was damaged (the frames both could decode were compared); 2 inputs of
    different sizes or lengths, an unusable input or a refused output (nothing written); 70 internal error;
    130 interrupted, 143 terminated (nothing left behind).
    """
    from deblurtool.compare import check_layout, compare_images, compare_videos, is_image, parse_labels
    from deblurtool.media.time_range import TimeRange

    chosen = check_layout(layout)
    names = parse_labels(labels)
    time_range = TimeRange.from_options(start, duration, end)
    if is_image(a) and is_image(b):
        video_only = [
            o for o, v in (("--start", start), ("--duration", duration), ("--end", end), ("--codec", codec),
                           ("--crf", crf), ("--pix-fmt", pix_fmt)) if v is not None
        ]  # fmt: skip
        if video_only:
            raise DeblurError(f"{', '.join(video_only)}: for videos only; A and B are images")
        summary = compare_images(a, b, out, labels=names, layout=chosen, overwrite=overwrite)
    else:
        bar = ui.ProgressBar("fps", enabled=not no_progress)
        encode = EncodeConfig(codec=codec, crf=crf, pix_fmt=pix_fmt)
        summary = compare_videos(a, b, out, encode, labels=names, layout=chosen, overwrite=overwrite,
                                 time_range=time_range, progress=bar)  # fmt: skip
    ui.say(summary.line())
    if summary.damage:
        raise PartialFailure(
            f"the input is damaged ({summary.damage}); the frames both had were compared", out
        )
