"""The plan of a job, made once and consumed by the local run and the Ray run alike.

Before the model loads (:func:`plan_folder`, :func:`plan_video`): the paths are checked, a folder is scanned
once (a video opened once), the encoder settings are checked against each output container, the output
folder is made and tried for writing, and its lock is taken; whatever would be refused is refused now. Once
the model's signature is known, :meth:`Plan.units` skips what the manifest says is done and cuts the rest
into work units: an image, a whole video, or (on Ray) a frame range of a long video. As units finish,
:meth:`Plan.finished` and :meth:`Plan.failed` record them (manifest, counts, reports) the same way for both
runners.

A long video is cut by presentation timestamp: chunk ``k`` holds exactly the frames whose pts lie in
``[lo_k, hi_k)`` (the first range open below, the last open above), so every frame belongs to exactly one
chunk whatever the frame rate (VFR too) and however wrong the container's duration or frame count is. The
boundaries are placed about ``chunk_frames`` frames apart from the stream's average rate; nothing is decoded
to plan them (a two-hour video is planned from its header). Chunk files live in a hidden folder beside the
output (``.NAME.chunks/``), named by a key of everything that changes them, so a re-run reuses exactly the
chunks made the same way.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError, InputError, OutputError, one_line, os_reason
from deblurtool.fsutil import (
    check_writable,
    make_folders,
    output_lock,
    remove_empty_folders,
    remove_stale_temps,
    remove_stale_temps_under,
    side_name,
)
from deblurtool.media.image_io import IMAGE_SUFFIXES
from deblurtool.media.time_range import TimeRange
from deblurtool.media.video_codec import check_encode, check_output, choose_codec
from deblurtool.media.video_probe import VIDEO_SUFFIXES, estimate_frames, pick_video_stream
from deblurtool.pipeline.manifest import Manifest, video_signature
from deblurtool.pipeline.progress import LogProgress, Progress
from deblurtool.pipeline.video import VideoSummary, check_compare_output, check_video_paths, compare_lock

CHUNK_SECONDS = 60  # the default chunk on Ray: about a minute of frames at the video's own rate
ANIMATED_SUFFIXES = frozenset({".gif"})  # `video` takes them; a folder names them in a note
KINDS = ("image", "video", "chunk")


# -- outcomes ------------------------------------------------------------------------------------------------


class Outcome(enum.Enum):
    """What became of one input of a folder (the values are the manifest's words for a skip)."""

    DONE = "done"
    SKIPPED_DONE = "skipped_done"  # recorded as made from the same input and settings
    SKIPPED_EXISTING = "skipped_existing"  # an output with no record is in the way (no --overwrite)
    FAILED = "failed"


@dataclass
class FolderSummary:
    """What a folder job did. ``images`` and ``videos`` count the inputs of each kind found (also those that
    could not be read), ``unlisted`` the folders that could not be listed; each of these ends as one of
    ``done``, ``skipped_done``, ``skipped_existing`` or ``failed`` (each failed input with its one-line
    reason), so the counts add up (:attr:`inputs`). ``ignored`` counts other files (GIFs among them, named in
    a note)."""

    images: int = 0
    videos: int = 0
    unlisted: int = 0
    done: int = 0
    skipped_done: int = 0
    skipped_existing: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    ignored: int = 0
    seconds: float = 0.0

    @property
    def skipped(self) -> int:
        return self.skipped_done + self.skipped_existing

    @property
    def inputs(self) -> int:
        """Every input the scan found: ``done + skipped + len(failed)`` once the job has ended."""
        return self.images + self.videos + self.unlisted

    def add(self, outcome: Outcome, path: Path | None = None, reason: str = "") -> None:
        """Count one input's ``outcome`` (a failure with its ``path`` and ``reason``)."""
        if outcome is Outcome.DONE:
            self.done += 1
        elif outcome is Outcome.SKIPPED_DONE:
            self.skipped_done += 1
        elif outcome is Outcome.SKIPPED_EXISTING:
            self.skipped_existing += 1
        else:
            assert path is not None
            self.failed.append((path, reason))

    def line(self) -> str:
        text = f"{self.images} image(s), {self.videos} video(s)"
        if self.unlisted:
            text += f", {self.unlisted} unreadable folder(s)"
        text += f": {self.done} done, {self.skipped} skipped, {len(self.failed)} failed"
        details = []
        if self.skipped_existing:
            details.append(f"{self.skipped_existing} existing output(s) kept; --overwrite replaces them")
        if self.ignored:
            details.append(f"{self.ignored} other file(s) ignored")
        return text + (f" ({'; '.join(details)})" if details else "")


def failure_reason(e: Exception) -> str:
    """One line in words for a failed input (reported after the input's path): an output's trouble names the
    output, an OS error says what failed (a full disk says so), not Python's repr of it."""
    if isinstance(e, OutputError) and e.path:
        return f"output {e.path}: {one_line(e)}"
    if isinstance(e, OSError):
        return os_reason(e) + (f": {e.filename}" if e.filename else "")
    return one_line(e)


def damage_line(damage: str | None, frames: int) -> str | None:
    """How a damaged video of a folder is listed among the failures (its output holds what was decoded)."""
    return f"{damage}; the {frames} frame(s) that could be decoded were deblurred" if damage else None


def file_note(path: Path, text: str) -> str:
    """A note of one file of a folder, naming it: ``note: PATH: text``."""
    return f"note: {path}: {text.removeprefix('note: ')}"


@dataclass
class JobResult:
    """What a runner (local or Ray) returns for a plan: the counts (``summary``), what each finished video
    is (``videos``, by its ``rel``), one line per Ray worker and the chunks of an earlier run reused."""

    summary: FolderSummary
    videos: dict[Path, VideoSummary] = field(default_factory=dict)
    workers: list[str] = field(default_factory=list)
    reused_chunks: int = 0

    @property
    def video(self) -> VideoSummary:
        """The one video of a `video` job."""
        (only,) = self.videos.values()
        return only


# -- units ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkRange:
    """Frames with ``lo <= pts < hi`` (None: open) in the source's video time base; chunk ``index`` of
    ``count``."""

    index: int
    count: int
    lo: int | None
    hi: int | None


@dataclass(frozen=True)
class Unit:
    """One piece of work. ``out`` is the final output (image, video) or the chunk file (chunk); ``rel``
    names the input in reports and the manifest; ``frames`` is an estimate, for progress and ordering."""

    kind: str
    src: Path
    out: Path
    rel: Path
    frames: int
    chunk: ChunkRange | None = None

    @property
    def key(self) -> str:
        part = f"#{self.chunk.index}" if self.chunk is not None else ""
        return f"{self.rel.as_posix()}{part}"


@dataclass(frozen=True)
class VideoProbe:
    """Header facts of a video's stream (no decoding): enough to plan chunks and estimate progress."""

    time_base: Fraction
    rate: Fraction | None
    start: int
    frames: int | None


def probe_video(path: Path) -> VideoProbe | None:
    """Header facts of ``path``'s video stream, or None when it cannot be planned (unreadable, no rate):
    such a video is one whole unit, and its run reports the problem as `video` would."""
    try:
        with av.open(str(path)) as container:
            stream = pick_video_stream(container, path)
            tb, rate = stream.time_base, stream.average_rate or stream.guessed_rate
            if not tb or not rate:
                return None
            frames = stream.frames or estimate_frames(stream, container)
            start = stream.start_time if stream.start_time is not None else 0
            return VideoProbe(time_base=tb, rate=Fraction(rate), start=start, frames=frames)
    except Exception:  # anything odd: the whole-video path gives the precise one-line reason
        return None


def plan_ranges(probe: VideoProbe | None, chunk_frames: int | None) -> list[ChunkRange]:
    """Chunk ranges for a video of about ``probe.frames`` frames: none when it fits in one chunk (or cannot
    be planned), else ``ceil(frames / chunk_frames)`` ranges of equal duration. ``chunk_frames`` None: about
    CHUNK_SECONDS of frames at the stream's rate."""
    if probe is None or not probe.frames or probe.rate is None:
        return []
    per_chunk = chunk_frames if chunk_frames is not None else max(1, round(CHUNK_SECONDS * probe.rate))
    count = math.ceil(probe.frames / per_chunk)
    if count < 2:
        return []
    step = Fraction(probe.frames, count) / probe.rate / probe.time_base  # ticks per chunk
    cuts = [probe.start + round(step * k) for k in range(1, count)]
    bounds: list[int | None] = [None, *cuts, None]
    return [ChunkRange(k, count, bounds[k], bounds[k + 1]) for k in range(count)]


def video_units(
    src: Path, out: Path, rel: Path, probe: VideoProbe | None, chunk_frames: int | None, key: str
) -> list[Unit]:
    """The units of one video: a whole-video unit, or one per chunk (files under :func:`chunk_dir`).
    ``key`` names the input state and settings (see :func:`chunk_key`)."""
    frames = (probe.frames if probe is not None else None) or 1
    ranges = plan_ranges(probe, chunk_frames)
    if not ranges:
        return [Unit("video", src, out, rel, frames)]
    folder = chunk_dir(out)
    return [
        Unit(
            "chunk",
            src,
            folder / f"{r.index:05d}-{_range_key(key, r)}{out.suffix}",
            rel,
            max(1, round(frames / r.count)),
            r,
        )
        for r in ranges
    ]


def chunk_dir(out: Path) -> Path:
    """The hidden folder holding the finished chunks of output ``out`` until they are joined (a shortened,
    hashed name where ``.NAME.chunks`` would pass the file system's limit on a name)."""
    return side_name(out, ".chunks")


def chunk_key(st: os.stat_result, signature: str, encode: EncodeConfig) -> str:
    """What must match for a finished chunk to be reused: the input (size, mtime) and all settings."""
    text = json.dumps([st.st_size, st.st_mtime_ns, signature, asdict(encode)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _range_key(key: str, r: ChunkRange) -> str:
    return hashlib.sha256(f"{key}:{r.count}:{r.lo}:{r.hi}".encode()).hexdigest()[:16]


# -- the plan ------------------------------------------------------------------------------------------------


def is_video(rel: Path) -> bool:
    return rel.suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class Input:
    """One input of a job: ``rel`` (its path relative to the input folder; a video's file name), the input
    file ``src`` and its output ``out``."""

    rel: Path
    src: Path
    out: Path


class Plan:
    """A job's inputs and its ledger: what became of each (manifest, counts, reports).

    ``single``: the plan of one video (`video`): no manifest, and the runners let its failures raise, as
    ``run_video`` does. ``src`` is the input folder (or file), ``marker`` the output's lock file, held while
    the plan lives (a Ray worker must see it, else the output is not on shared storage)."""

    def __init__(
        self,
        src: Path,
        inputs: list[Input],
        *,
        encode: EncodeConfig,
        manifest: Manifest | None,
        summary: FolderSummary,
        marker: Path,
        report: Progress,
        probes: dict[Path, VideoProbe | None] | None = None,
        time_range: TimeRange | None = None,
        compare: Path | None = None,
    ) -> None:
        self.src, self.inputs, self.encode, self.manifest = src, inputs, encode, manifest
        self.summary, self.marker, self.report = summary, marker, report
        self.probes = dict(probes or {})
        self.time_range = time_range  # `video --start/--duration/--end`: only that slice is deblurred
        self.compare = compare  # `video --compare`: the before/after view is written there too (locked)
        self.recorded: dict[Path, tuple[os.stat_result, str]] = {}  # rel -> input state and signature

    @property
    def single(self) -> bool:
        return self.manifest is None

    @property
    def label(self) -> str:
        return self.src.name or str(self.src)

    def output(self, rel: Path) -> Path:
        """The final output of input ``rel``."""
        return next(i.out for i in self.inputs if i.rel == rel)

    @property
    def has_videos(self) -> bool:
        return any(is_video(i.rel) for i in self.inputs)

    def units(
        self, signature: str, *, overwrite: bool, cut: bool = False, chunk_frames: int | None = None
    ) -> list[Unit]:
        """The work left, for a model whose settings ``signature`` names: inputs the manifest records as done
        with these settings are counted as skipped (an output in the way without a record too, unless
        ``overwrite``); the others become units, a video as one unit, or cut into frame ranges when ``cut``
        (``chunk_frames`` as :func:`plan_ranges` takes it). An input that vanished is a failure."""
        units: list[Unit] = []
        for item in self.inputs:
            video = is_video(item.rel)
            sig = video_signature(signature, self.encode) if video else signature
            try:
                st = item.src.stat()
                if self.manifest is not None:
                    skip = self.manifest.skip(item.rel, st, sig, item.out, overwrite)
                    if skip:
                        self.summary.add(Outcome(skip))
                        continue
                self.recorded[item.rel] = (st, sig)
                if not video:
                    units.append(Unit("image", item.src, item.out, item.rel, 1))
                    continue
                if item.rel not in self.probes:
                    self.probes[item.rel] = probe_video(item.src)
                probe = self.probes[item.rel]
                if not cut:
                    frames = (probe.frames if probe is not None else None) or 1
                    units.append(Unit("video", item.src, item.out, item.rel, frames))
                    continue
                key = chunk_key(st, sig, self.encode)
                units += video_units(item.src, item.out, item.rel, probe, chunk_frames, key)
            except OSError as e:
                self.failed(item.src, failure_reason(e))
        return units

    def finished(self, rel: Path, src: Path, damage: str | None = None, frames: int = 0) -> None:
        """Input ``rel`` is written: recorded in the manifest, counted done (a damaged video, whose output
        holds what could be decoded, is recorded and counted failed)."""
        if self.manifest is not None:
            self.manifest.add(rel, *self.recorded[rel])
        failure = None if self.single else damage_line(damage, frames)
        if failure:
            self.failed(src, failure)
        else:
            self.summary.add(Outcome.DONE)

    def failed(self, src: Path, reason: str) -> None:
        """Input ``src`` failed with the one-line ``reason``: counted, and reported (in a folder)."""
        self.summary.add(Outcome.FAILED, src, reason)
        if not self.single:
            self.report.failed(src, reason)


# -- making a plan (everything that can be refused is refused here, before the model loads) -----------------


@contextlib.contextmanager
def plan_folder(
    src: Path, dst: Path, encode: EncodeConfig | None = None, report: Progress | None = None
) -> Iterator[Plan]:
    """The plan of a folder job, with the output folder's lock held while the body runs.

    Checks the paths, scans the folder once (a folder with nothing to do is refused), checks the encoder
    settings against the container of every video found, makes the output folder, tries writing in it (a
    read-only one is one line now, not one failure per file after the model ran), takes its lock (a second
    job into it is refused, not raced) and removes temporary files a killed run left. Unreadable entries
    are reported and counted failed; GIFs are named in a note."""
    report = report if report is not None else LogProgress()
    encode = encode or EncodeConfig()
    check_folder_paths(src, dst)
    scan = scan_folder(src, dst)
    _check_has_inputs(src, scan)
    check_encode(encode, "")  # (a folder of images given --codec nosuch is refused too)
    by_suffix = {rel.suffix.lower(): rel for rel in scan.files if is_video(rel)}
    for rel in by_suffix.values():  # one check per kind of container among the videos
        check_encode_for(encode, dst / rel)
    make_folders(dst, for_path=dst)
    check_writable(dst)
    with output_lock(dst) as lock:
        remove_stale_temps_under(dst)  # left by a run that was killed (power cut, SIGKILL) mid-file
        summary = scan.summary()
        inputs = [Input(rel, src / rel, dst / rel) for rel in scan.files]
        plan = Plan(src, inputs, encode=encode, manifest=Manifest(dst), summary=summary, marker=lock,
                    report=report)  # fmt: skip
        for path, reason in scan.failed:
            plan.failed(path, reason)
        if scan.animated:
            shown = ", ".join(str(p) for p in scan.animated[:5])
            more = f" and {len(scan.animated) - 5} more" if len(scan.animated) > 5 else ""
            report.note(
                f"note: {len(scan.animated)} GIF(s) not deblurred by `folder` ({shown}{more}); "
                "`deblurtool video IN.gif OUT.mp4` deblurs one"
            )
        yield plan


@contextlib.contextmanager
def plan_video(
    src: Path,
    dst: Path,
    encode: EncodeConfig,
    *,
    overwrite: bool = False,
    report: Progress | None = None,
    time_range: TimeRange | None = None,
    compare: Path | None = None,
) -> Iterator[Plan]:
    """The plan of one video into ``dst``, with the output's lock held while the body runs: the paths, the
    encoder settings for ``dst``'s container and the input (opened once: an unusable one is refused now)
    checked, the output's folder made (removed again on failure if this made it) and tried for writing, its
    lock taken and the temporary files of a killed run removed. ``compare`` (``video --compare``): the
    before/after output, checked and locked the same way."""
    from deblurtool.media.video_reader import VideoReader  # the full probe: first frame, side streams

    report = report if report is not None else LogProgress()
    check_video_paths(src, dst, overwrite)
    check_encode_for(encode, dst)
    with VideoReader(src) as reader:
        stream, info = reader.video_stream, reader.info
        check_output(info, encode, dst.suffix)  # e.g. an alpha channel the output cannot keep
        if compare is not None:
            check_compare_output(src, dst, compare, encode, info, overwrite)
        if time_range is not None:
            reader.check_slice(time_range)  # a slice outside the video, by its header
        rate = info.average_rate or stream.guessed_rate
        start = stream.start_time if stream.start_time is not None else 0
        probe = VideoProbe(info.time_base, Fraction(rate), start, info.frames_total) if rate else None
    created = make_folders(dst.parent, for_path=dst)
    try:
        check_writable(dst.parent, for_path=dst)
        with output_lock(dst) as lock, compare_lock(src, dst, compare, overwrite):
            check_video_paths(src, dst, overwrite)  # again: the job that held the lock may have made it
            remove_stale_temps(dst)
            rel = Path(src.name)
            yield Plan(src, [Input(rel, src, dst)], encode=encode, manifest=None,
                       summary=FolderSummary(videos=1), marker=lock, report=report,
                       probes={rel: probe}, time_range=time_range, compare=compare)  # fmt: skip
    except BaseException:
        remove_empty_folders(created)
        raise


def check_encode_for(encode: EncodeConfig, out: Path) -> None:
    """Refuse, before the model loads, an output name or encoder settings that cannot work for the video
    output ``out``: an image or unknown file type, an encoder this FFmpeg lacks, a ``--crf`` beyond the range
    of the encoder that will run (the one asked for, else the container's usual one), a ``--pix-fmt`` that
    encoder does not take."""
    suffix = out.suffix.lower()
    videos = ", ".join(sorted({".mp4", ".mkv", ".mov", ".webm"}))
    if suffix in IMAGE_SUFFIXES | ANIMATED_SUFFIXES:
        raise OutputError(f"cannot write a video in {suffix} files (an image format); use {videos}", out)
    usual = usual_encoder(suffix)
    if usual is None:
        raise OutputError(f"cannot write a video in {suffix} files (no container FFmpeg knows); use {videos}",
                          out)  # fmt: skip
    codec = encode.codec or usual
    check_encode(replace(encode, codec=codec), suffix)
    if encode.pix_fmt is not None:
        try:
            formats = [f.name for f in av.codec.Codec(codec, "w").video_formats or ()]
        except (av.error.FFmpegError, ValueError):
            return  # check_encode has refused an unknown encoder already
        if formats and encode.pix_fmt not in formats:
            raise DeblurError(
                f"--pix-fmt {encode.pix_fmt} is not supported by {codec} (it takes: {', '.join(formats)})"
            )


def usual_encoder(suffix: str) -> str | None:
    """The encoder an output ending in ``suffix`` gets without ``--codec`` (None: FFmpeg knows no such
    container; the writer refuses it by name)."""
    with tempfile.TemporaryDirectory(prefix="deblurtool-") as folder:
        try:
            with av.open(str(Path(folder) / f"probe{suffix}"), "w") as container:
                return choose_codec(None, container)
        except (av.error.FFmpegError, ValueError, OSError):
            return None


# -- the folder scan -----------------------------------------------------------------------------------------


def check_folder_paths(src: Path, dst: Path) -> None:
    if not src.exists():
        raise InputError("no such folder", src)
    if not src.is_dir():
        raise InputError("is not a folder (use `deblurtool video` for a video file)", src)
    if dst.exists() and not dst.is_dir():
        raise OutputError("exists and is not a folder", dst)
    src_r, dst_r = src.resolve(), dst.resolve()
    if dst_r == src_r or src_r in dst_r.parents:
        raise OutputError(f"is inside the input folder {src}; choose an output folder outside it", dst)


@dataclass
class FolderScan:
    """The inputs of a folder: ``files`` (images and videos, relative to the folder), how many other files
    were ``ignored`` (``animated``: the GIFs among them), and the entries that ``failed`` to be listed or
    read, each with its one-line reason and kind (image, video or folder)."""

    files: list[Path] = field(default_factory=list)
    ignored: int = 0
    animated: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    failed_kinds: list[str] = field(default_factory=list)

    def summary(self) -> FolderSummary:
        """An empty summary of this scan: its counts (each unreadable entry counted as its kind)."""
        videos = sum(map(is_video, self.files)) + self.failed_kinds.count("video")
        images = len(self.files) + len(self.failed) - videos - self.failed_kinds.count("folder")
        return FolderSummary(images=images, videos=videos, unlisted=self.failed_kinds.count("folder"),
                             ignored=self.ignored)  # fmt: skip


def scan_folder(src: Path, dst: Path) -> FolderScan:
    """The supported images and videos under ``src`` (relative paths; each folder's files sorted, then its
    subfolders), how many other files were seen, and every entry that could not be listed or read, with the
    reason: nothing is left out silently. Linked folders are followed, each real folder once (a link loop
    cannot hang us); a link to the output folder is not an input."""
    scan = FolderScan()
    seen: set[tuple[int, int]] = set()
    outputs = dst.resolve()
    stack = [(src, Path())]
    while stack:
        folder, rel = stack.pop()
        try:
            st = folder.stat()
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            scan.failed.append((folder, f"cannot list this folder ({os_reason(e)})"))
            scan.failed_kinds.append("folder")
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        subfolders = []
        for entry in entries:
            path = Path(entry.path)
            if _is_dir(entry):
                real = path.resolve()
                if real != outputs and outputs not in real.parents:
                    subfolders.append((path, rel / entry.name))
            elif (suffix := Path(entry.name).suffix.lower()) not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                scan.ignored += 1
                if suffix in ANIMATED_SUFFIXES:
                    scan.animated.append(path)
            elif _is_file(entry):
                scan.files.append(rel / entry.name)
            else:
                what = "a link to nothing" if entry.is_symlink() else "not a regular file"
                kind = "video" if suffix in VIDEO_SUFFIXES else "image"
                scan.failed.append((path, f"cannot read this {kind} ({what})"))
                scan.failed_kinds.append(kind)
        stack.extend(reversed(subfolders))
    return scan


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _check_has_inputs(src: Path, scan: FolderScan) -> None:
    if scan.files:
        return
    kinds = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES | VIDEO_SUFFIXES))
    seen = f"{scan.ignored} other file(s) seen"
    if scan.failed:
        path, reason = scan.failed[0]
        seen += f"; {len(scan.failed)} entry(ies) could not be read, e.g. {path}: {reason}"
    raise InputError(f"holds no images or videos ({kinds}); {seen}", src)
