"""Before and after: two images or two videos of the same size and length shown together, labelled.

Two layouts: ``side-by-side`` (A on the left, B on the right: twice as wide) and ``split`` (a wipe: the left
half of A and the right half of B, with a divider line between them: the size of A). Labels are drawn over
the picture, in a corner of each half, white text on a darkened box so they read on any content; no area is
added for them.

Videos: the view is written with A's frame timing (every frame's pts) and A's audio and subtitles (copied as
``deblurtool video`` copies them), through the project's one video writer (:class:`VideoWriter`), temp then
rename, under the output's lock. Each input is shown upright: a pure rotation in its display matrix is
applied to its pixels (the output has none), so the halves sit side by side as the viewer sees them.

Images: the view, and below it the most textured region of A (the window with the highest gradient energy)
cut from both, enlarged :data:`ZOOM` times with nearest-neighbour, so that sharpening can be judged pixel by
pixel; the region is outlined in the view above.

The per-frame composition (:func:`compose`) and :class:`CompareWriter` (frames with their pts in, the view
out) are what ``video --compare`` reuses to write the view of its input and its result in the same run.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.stream
import cv2
import numpy as np

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError, InputError, OutputError
from deblurtool.fsutil import (
    atomic_write,
    make_folders,
    output_lock,
    remove_empty_folders,
    remove_stale_temps,
)
from deblurtool.media.image_io import IMAGE_SUFFIXES, ImageData, read_rgb_u8, write_image
from deblurtool.media.time_range import Cut, TimeRange
from deblurtool.media.video_codec import check_encode, check_output
from deblurtool.media.video_reader import DecodedFrame, VideoInfo, VideoReader
from deblurtool.media.video_writer import VideoWriter
from deblurtool.pipeline.progress import Progress, as_progress

Layout = Literal["side-by-side", "split"]
LAYOUTS: tuple[Layout, ...] = ("side-by-side", "split")
DEFAULT_LABELS = ("before", "after")
ZOOM = 4  # how much the zoomed crop of an image comparison is enlarged (nearest-neighbour)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BOX_SHADE = 0.3  # the label box keeps this much of the picture's brightness


# -- one frame -----------------------------------------------------------------------------------------------


def parse_labels(text: str | None) -> tuple[str, str]:
    """``"blurry,deblurred"`` -> ``("blurry", "deblurred")``; None: :data:`DEFAULT_LABELS`. An empty label
    draws nothing. OpenCV's fonts have ASCII only: other characters are drawn as ``?``."""
    if text is None:
        return DEFAULT_LABELS
    parts = text.split(",")
    if len(parts) != 2:
        raise DeblurError(f"--labels {text!r}: give two labels separated by a comma, e.g. 'blurry,deblurred'")
    first, second = (p.strip().encode("ascii", "replace").decode() for p in parts)
    return first, second


def check_layout(layout: str) -> Layout:
    if layout not in LAYOUTS:
        raise DeblurError(f"--layout must be {' or '.join(LAYOUTS)}, got {layout!r}")
    return layout


def _top(dtype: np.dtype) -> int:
    return int(np.iinfo(dtype).max)


def _like(rgb: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``rgb`` (uint8 or uint16) in ``dtype``, full range to full range."""
    if rgb.dtype == dtype:
        return rgb
    if dtype == np.uint16:
        return rgb.astype(np.uint16) * 257
    return ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint8)


def draw_label(rgb: np.ndarray, text: str, *, right: bool = False, top: int = 0) -> None:
    """Draw ``text`` in place, in the top-left (or top-right) corner of ``rgb`` (HxWx3 uint8/uint16) from row
    ``top``: white on a darkened box, its size following the picture's height."""
    if not text:
        return
    height, width = rgb.shape[:2]
    scale = max(0.3, height / 720 * 0.9)
    thickness = max(1, round(scale * 1.6))
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(2, round(8 * scale))
    x0 = max(0, width - text_w - 3 * pad) if right else pad
    y0 = top + pad
    x1, y1 = min(width, x0 + text_w + 2 * pad), min(height, y0 + text_h + baseline + 2 * pad)
    if x1 <= x0 or y1 <= y0:
        return
    # OpenCV draws text on 8-bit pictures only: the text is drawn as an 8-bit coverage mask, then blended
    # into the darkened box at the picture's own depth.
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.putText(mask, text, (pad, pad + text_h), _FONT, scale, 255, thickness, cv2.LINE_AA)
    cover = (mask.astype(np.float32) / 255)[:, :, None]
    box = rgb[y0:y1, x0:x1].astype(np.float32) * _BOX_SHADE
    rgb[y0:y1, x0:x1] = np.rint(box + (_top(rgb.dtype) - box) * cover).astype(rgb.dtype)


def compose(
    rgb_a: np.ndarray,
    rgb_b: np.ndarray,
    labels: Sequence[str] = DEFAULT_LABELS,
    layout: Layout = "side-by-side",
) -> np.ndarray:
    """The view of one pair of frames: ``rgb_a`` and ``rgb_b`` HxWx3 (uint8 or uint16, the same size) ->
    a new array in ``rgb_a``'s dtype, 2W x H for ``side-by-side``, W x H for ``split`` (A's left half, B's
    right half, a light divider line between), each part labelled with ``labels`` (A's, B's)."""
    if rgb_a.shape != rgb_b.shape or rgb_a.ndim != 3 or rgb_a.shape[2] != 3:
        raise DeblurError(f"cannot compare frames of shapes {rgb_a.shape} and {rgb_b.shape}")
    rgb_b = _like(rgb_b, rgb_a.dtype)
    width = rgb_a.shape[1]
    if layout == "side-by-side":
        view = np.concatenate([rgb_a, rgb_b], axis=1)
        left, right = view[:, :width], view[:, width:]
        draw_label(left, labels[0])
        draw_label(right, labels[1])
        return view
    view = rgb_a.copy()
    middle = width // 2
    view[:, middle:] = rgb_b[:, middle:]
    line = max(2, width // 320)
    lo, hi = max(0, middle - line // 2), min(width, middle + (line + 1) // 2)
    view[:, lo:hi] = round(_top(view.dtype) * 0.85)
    draw_label(view, labels[0])
    draw_label(view, labels[1], right=True)
    return view


def view_size(width: int, height: int, layout: Layout) -> tuple[int, int]:
    """(width, height) of :func:`compose`'s output for inputs of ``width`` x ``height``."""
    return (2 * width if layout == "side-by-side" else width), height


# -- video ---------------------------------------------------------------------------------------------------


def _turns(info: VideoInfo) -> int:
    """Quarter turns (counter-clockwise) that show ``info``'s frames upright: its display matrix's rotation
    when that is all it does (a mirrored one is left to the player: 0)."""
    m = info.display_matrix
    if m is None or m[0] * m[4] - m[1] * m[3] < 0 or info.rotation % 90:
        return 0
    return (info.rotation // 90) % 4


def upright(rgb: np.ndarray, turns: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def shown_size(info: VideoInfo) -> tuple[int, int]:
    """(width, height) of ``info``'s frames as a viewer sees them (upright)."""
    turned = _turns(info) % 2 == 1
    return (info.height, info.width) if turned else (info.width, info.height)


class CompareWriter:
    """Write the view of two videos into ``path``: :meth:`put` each pair of frames (as decoded, stored
    orientation) with A's pts; :meth:`put_packet` A's packets of the streams in :attr:`copied_indices`;
    then :meth:`finish` (or :meth:`abort` on error). Timing, audio, subtitles and metadata are A's
    (``info_a`` and the other arguments as :class:`VideoWriter` takes them); ``info_b`` says how B's frames
    are stored (its rotation; None: as A's). The encoder's settings come from ``encode``.

    :meth:`put_packet` copies each packet before queueing it, so the same packet can then be handed to another
    writer (``video --compare``: hand it here FIRST, since a writer re-points the packets it is given at
    its own stream).
    """

    def __init__(
        self,
        path: Path,
        info_a: VideoInfo,
        encode: EncodeConfig,
        *,
        info_b: VideoInfo | None = None,
        labels: Sequence[str] = DEFAULT_LABELS,
        layout: Layout = "side-by-side",
        side_streams: Sequence[av.stream.Stream] = (),
        samples: Mapping[int, av.Packet] | None = None,
        metadata: Mapping[str, str] | None = None,
        video_metadata: Mapping[str, str] | None = None,
        cut: Cut | None = None,
        shown_path: Path | None = None,
    ) -> None:
        self.labels, self.layout = tuple(labels), layout
        self.turns_a = _turns(info_a)
        self.turns_b = _turns(info_b) if info_b is not None else self.turns_a
        self.info = view_info(info_a, layout)
        self._writer = VideoWriter(
            path,
            self.info,
            encode,
            side_streams=side_streams,
            shown_path=shown_path,
            samples=samples,
            metadata=metadata,
            video_metadata=video_metadata,
            cut=cut,
        )

    @classmethod
    def for_reader(
        cls,
        path: Path,
        reader: VideoReader,
        encode: EncodeConfig,
        *,
        info_b: VideoInfo | None = None,
        labels: Sequence[str] = DEFAULT_LABELS,
        layout: Layout = "side-by-side",
        shown_path: Path | None = None,
    ) -> CompareWriter:
        """A writer taking timing, streams, metadata and (for a slice) the cut from ``reader`` (A's)."""
        return cls(
            path,
            reader.info,
            encode,
            info_b=info_b,
            labels=labels,
            layout=layout,
            side_streams=reader.side_streams,
            samples=reader.sample_packets,
            metadata=reader.metadata,
            video_metadata=reader.video_stream.metadata,
            cut=reader.cut,
            shown_path=shown_path,
        )

    @property
    def copied_indices(self) -> frozenset[int]:
        return self._writer.copied_indices

    @property
    def notes(self) -> list[str]:
        return self._writer.notes

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written

    @property
    def pix_fmt(self) -> str:
        return self._writer.pix_fmt

    def start(self) -> None:
        self._writer.start()

    def put(self, rgb_a: np.ndarray, rgb_b: np.ndarray, pts: int) -> None:
        """Queue the view of one pair of frames (HxWx3 as decoded) at ``pts`` (A's time base)."""
        view = compose(upright(rgb_a, self.turns_a), upright(rgb_b, self.turns_b), self.labels, self.layout)
        self._writer.put_frame(view, pts)

    def put_packet(self, packet: av.Packet) -> None:
        """Queue a copy of one of A's packets (a stream in :attr:`copied_indices`)."""
        self._writer.put_packet(copy_packet(packet))

    def finish(self) -> None:
        self._writer.finish()

    def abort(self) -> None:
        self._writer.abort()


def copy_packet(packet: av.Packet) -> av.Packet:
    """A new packet with ``packet``'s data, timing, keyframe flag and stream (two writers can then each
    take one)."""
    copy = av.Packet(bytes(packet))
    copy.pts, copy.dts, copy.duration = packet.pts, packet.dts, packet.duration
    copy.time_base = packet.time_base
    copy.is_keyframe = packet.is_keyframe
    copy.stream = packet.stream
    return copy


def view_info(info: VideoInfo, layout: Layout) -> VideoInfo:
    """The :class:`VideoInfo` a writer of the view needs: A's timing, depth and colour, the view's size,
    upright (no display matrix where the rotation was applied to the pixels), no alpha."""
    width, height = view_size(*shown_size(info), layout)
    turned = _turns(info) != 0
    return replace(
        info,
        width=width,
        height=height,
        display_matrix=None if turned else info.display_matrix,
        rotation=0 if turned else info.rotation,
        alpha=False,
        notes=(),
        field_order=0 if turned else info.field_order,
    )


@dataclass
class CompareSummary:
    """What :func:`compare_videos` or :func:`compare_images` wrote; ``damage``: one line when an input was
    damaged (the frames both could decode were compared)."""

    dst: Path
    frames: int
    seconds: float
    width: int
    height: int
    notes: list[str]
    damage: str | None = None

    def line(self) -> str:
        what = f"{self.frames} frames" if self.frames else "image"
        return f"{what} in {self.seconds:.1f} s -> {self.dst} ({self.width}x{self.height})"


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def check_paths(a: Path, b: Path, dst: Path, overwrite: bool) -> None:
    """Refuse missing inputs, mixed kinds, an output that is an input, exists (without ``overwrite``), is a
    folder or has a suffix for the other kind: before any decoding."""
    for src in (a, b):
        if not src.exists():
            raise InputError("no such file", src)
        if src.is_dir():
            raise InputError("is a folder; compare takes two files", src)
    if is_image(a) != is_image(b):
        image, video = (a, b) if is_image(a) else (b, a)
        raise DeblurError(f"{image} is an image and {video} a video: compare two images or two videos")
    if dst.is_dir():
        raise OutputError("is a folder; give an output file name", dst)
    for src in (a, b):
        if dst.exists() and (src.resolve() == dst.resolve() or src.samefile(dst)):
            raise OutputError("is an input file; choose another output name", dst)
    if dst.exists() and not overwrite:
        raise OutputError("exists (use --overwrite to replace it)", dst)
    if is_image(a) and not is_image(dst):
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        raise OutputError(f"the view of two images is an image: give OUT one of {kinds}", dst)
    if not is_image(a) and (is_image(dst) or not dst.suffix):
        raise OutputError("the view of two videos is a video: give OUT a video extension (.mp4, .mkv)", dst)


def _shown(seconds: Fraction) -> str:
    return f"{float(seconds):.3f}".rstrip("0").rstrip(".") + " s"


def check_same_video(a: VideoReader, b: VideoReader, time_range: TimeRange | None) -> None:
    """Refuse two videos whose upright sizes differ, or whose frame counts (both exact) or lengths (by their
    headers, beyond a frame) do: in one line, before any frame is compared."""
    size_a, size_b = shown_size(a.info), shown_size(b.info)
    if size_a != size_b:
        raise InputError(
            f"is {size_b[0]}x{size_b[1]} but {a.path.name} is {size_a[0]}x{size_a[1]}: "
            "compare needs two videos of the same size",
            b.path,
        )
    hint = (
        "" if time_range is not None else "; if it is a slice, give compare the same --start/--duration/--end"
    )
    if time_range is None and a.info.frames_exact and b.info.frames_exact:
        if a.info.frames_total != b.info.frames_total:
            raise InputError(
                f"has {b.info.frames_total} frames but {a.path.name} has {a.info.frames_total}: compare "
                f"needs two videos of the same length{hint}",
                b.path,
            )
        return
    length_a, length_b = a.length, b.length
    if length_a is None or length_b is None:
        return  # unknown: the frame counts are compared as they come
    if time_range is not None:
        end = length_a if time_range.end is None else min(length_a, time_range.end)
        length_a = max(Fraction(0), end - time_range.start)
    rate = a.info.average_rate
    step = 1 / rate if rate else Fraction(0)
    if abs(length_a - length_b) > step:
        what = f"the slice of {a.path.name}" if time_range is not None else a.path.name
        raise InputError(
            f"lasts {_shown(length_b)} but {what} lasts {_shown(length_a)}: compare needs two videos of "
            f"the same length{hint}",
            b.path,
        )


def compare_videos(
    a: Path,
    b: Path,
    dst: Path,
    encode: EncodeConfig,
    *,
    labels: Sequence[str] = DEFAULT_LABELS,
    layout: Layout = "side-by-side",
    overwrite: bool = False,
    time_range: TimeRange | None = None,
    progress: Progress | None = None,
) -> CompareSummary:
    """Write the view of the videos ``a`` and ``b`` into ``dst`` with ``a``'s timing and streams
    (``time_range``: a slice of ``a``, cut as ``deblurtool video`` cuts it, to compare with ``b``).

    Refusals (:class:`InputError`, :class:`OutputError`: a missing input, different sizes or lengths, an
    output that exists) come before anything is created. Frames that run out in one video before the other
    are an :class:`InputError` after the work (nothing is written). On any exception nothing is left behind.
    """
    report = as_progress(progress)
    check_paths(a, b, dst, overwrite)
    check_encode(encode, dst.suffix)
    stop = threading.Event()
    started = time.perf_counter()
    with contextlib.ExitStack() as readers:
        reader_a = readers.enter_context(VideoReader(a, stop=stop, time_range=time_range))
        if time_range is not None:
            reader_a.check_slice(time_range)
        reader_b = readers.enter_context(VideoReader(b, stop=stop))
        check_same_video(reader_a, reader_b, time_range)
        check_output(view_info(reader_a.info, layout), encode, dst.suffix)
        created = make_folders(dst.parent, for_path=dst)
        try:
            with output_lock(dst):
                check_paths(a, b, dst, overwrite)  # again: a job that held the lock may have made it
                remove_stale_temps(dst)
                with atomic_write(dst) as tmp:
                    writer = CompareWriter.for_reader(
                        tmp, reader_a, encode, info_b=reader_b.info, labels=labels, layout=layout,
                        shown_path=dst,
                    )  # fmt: skip
                    try:
                        _write_all(reader_a, reader_b, writer, report)
                    except BaseException:
                        stop.set()
                        writer.abort()
                        raise
        except BaseException:
            stop.set()
            remove_empty_folders(created)
            raise
        damage = "; ".join(f"{r.path.name}: {r.damage}" for r in (reader_a, reader_b) if r.damage)
    return CompareSummary(
        dst=dst,
        frames=writer.frames_written,
        seconds=time.perf_counter() - started,
        width=writer.info.width,
        height=writer.info.height,
        notes=list(writer.notes),
        damage=damage or None,
    )


def _write_all(reader_a: VideoReader, reader_b: VideoReader, writer: CompareWriter, report: Progress) -> None:
    for note in writer.notes:
        report.note(note)
    reader_a.start(writer.copied_indices)
    reader_b.start(())
    frames_b = (item for item in reader_b.items() if isinstance(item, DecodedFrame))
    writer.start()
    count = 0
    with report.items(reader_a.info.path.name, reader_a.info.frames_total) as advance:
        for item in reader_a.items():
            if not isinstance(item, DecodedFrame):
                writer.put_packet(item)
                continue
            frame_b = next(frames_b, None)
            if frame_b is None:
                raise InputError(
                    f"ends after {count} frames, before {reader_a.path.name} (nothing was written)",
                    reader_b.path,
                )
            if frame_b.rgb.shape[:2] != (reader_b.info.height, reader_b.info.width) or (
                item.rgb.shape[:2] != (reader_a.info.height, reader_a.info.width)
            ):
                raise InputError("changes size part-way; videos that do are not supported", reader_a.path)
            writer.put(item.rgb, frame_b.rgb, item.pts)
            count += 1
            advance()
    if next(frames_b, None) is not None:
        raise InputError(
            f"has more frames than {reader_a.path.name} ({count}) (nothing was written)", reader_b.path
        )
    writer.finish()


# -- images --------------------------------------------------------------------------------------------------


def textured_region(rgb: np.ndarray, width: int, height: int) -> tuple[int, int]:
    """(x, y) of the ``width`` x ``height`` window of ``rgb`` with the most gradient energy (sum of squared
    Sobel derivatives of its gray levels): where sharpening shows most. Ties: the first, row by row."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    summed = cv2.integral((gx * gx + gy * gy).astype(np.float64), sdepth=cv2.CV_64F)
    windows = (
        summed[height:, width:]
        - summed[:-height, width:]
        - summed[height:, :-width]
        + summed[:-height, :-width]
    )
    y, x = np.unravel_index(int(np.argmax(windows)), windows.shape)
    return int(x), int(y)


def image_view(
    rgb_a: np.ndarray,
    rgb_b: np.ndarray,
    labels: Sequence[str] = DEFAULT_LABELS,
    layout: Layout = "side-by-side",
) -> np.ndarray:
    """The view of two images (HxWx3 uint8, the same size) and, below it after a 2-pixel gray band, the same
    region of both (the most textured of A, a quarter of the height and of a view half's width) enlarged
    :data:`ZOOM` times, side by side and labelled; the region is outlined in the view."""
    height, width = rgb_a.shape[:2]
    view = compose(rgb_a, rgb_b, labels, layout)
    half = view.shape[1] // 2
    crop_w, crop_h = max(1, min(width, half // ZOOM)), max(1, height // ZOOM)
    x, y = textured_region(rgb_a, crop_w, crop_h)
    panes = np.zeros((crop_h * ZOOM, view.shape[1], 3), np.uint8)
    for i, rgb in enumerate((rgb_a, rgb_b)):
        crop = rgb[y : y + crop_h, x : x + crop_w]
        zoomed = np.repeat(np.repeat(crop, ZOOM, axis=0), ZOOM, axis=1)
        panes[:, i * half : i * half + zoomed.shape[1]] = zoomed
        if labels[i]:
            draw_label(panes[:, i * half : (i + 1) * half], f"{labels[i]} {ZOOM}x")
    outline = max(1, height // 360)
    for left in (0, width) if layout == "side-by-side" else (0,):
        cv2.rectangle(view, (left + x, y), (left + x + crop_w - 1, y + crop_h - 1), (255, 210, 0), outline)
    band = np.full((2, view.shape[1], 3), 128, np.uint8)
    return np.concatenate([view, band, panes], axis=0)


def compare_images(
    a: Path,
    b: Path,
    dst: Path,
    *,
    labels: Sequence[str] = DEFAULT_LABELS,
    layout: Layout = "side-by-side",
    overwrite: bool = False,
) -> CompareSummary:
    """Write the view of the images ``a`` and ``b`` (upright, 8 bits a channel, alpha left out) with the
    zoomed crop below it (:func:`image_view`) into ``dst``, in ``dst``'s format. Different sizes: an
    :class:`InputError` before anything is written."""
    started = time.perf_counter()
    check_paths(a, b, dst, overwrite)
    rgb_a, rgb_b = read_rgb_u8(a), read_rgb_u8(b)
    if rgb_a.shape != rgb_b.shape:
        (ha, wa), (hb, wb) = rgb_a.shape[:2], rgb_b.shape[:2]
        raise InputError(
            f"is {wb}x{hb} but {a.name} is {wa}x{ha}: compare needs two images of the same size", b
        )
    view = image_view(rgb_a, rgb_b, labels, layout)
    created = make_folders(dst.parent, for_path=dst)
    try:
        with output_lock(dst):
            remove_stale_temps(dst)
            write_image(dst, ImageData(np.ascontiguousarray(view[:, :, ::-1])), overwrite=overwrite)
    except BaseException:
        remove_empty_folders(created)
        raise
    height, width = view.shape[:2]
    return CompareSummary(dst, 0, time.perf_counter() - started, width, height, notes=[])
