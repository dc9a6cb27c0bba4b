"""Synthetic dataset on disk: sources -> planned samples -> GoPro layout, behind ``deblurtool synth``.

:func:`make_dataset` finds sources, plans every sample up front from the seed and writes
``OUT/{train,test}/SEQ/{blur,sharp}/NNNNNN.png`` plus ``OUT/manifest.json``; the blur itself is
:func:`trainers.synth.blur.synthesize`.
"""

from __future__ import annotations

import functools
import json
import multiprocessing as mp
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from deblurtool.errors import InputError, OutputError, one_line
from deblurtool.fsutil import write_bytes
from deblurtool.media.colour import to_rgb_u8
from deblurtool.media.image_io import read_rgb_u8
from trainers.synth.blur import SynthParams, content_rescale, synthesize
from trainers.synth.staging import MANIFEST, dataset_entries, staged_dataset

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".ogv", ".mpg", ".mpeg", ".m4v"})


@dataclass(frozen=True)
class Item:
    """One sharp frame to sample from: a still image (``frame`` None) or one decoded frame of a video."""

    path: str
    seq: str
    frame: int | None = None


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to write one pair; ``key`` seeds its generator (order-independent)."""

    item: Item
    split: str
    name: str
    key: tuple[int, ...]


def _seq_name(rel: Path) -> str:
    stem = "__".join([*rel.parent.parts, rel.stem]) or rel.stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)


def count_video_frames(path: Path) -> int:
    """Frames in the first video stream, by demuxing packets (no decoding)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return sum(1 for p in container.demux(stream) if p.size)
    except (av.FFmpegError, IndexError) as e:
        raise InputError(f"cannot read video: {e}", path) from None


def _probe_image(path: Path) -> None:
    """InputError for a file that is not an image (its header only: a folder of photos is probed fast)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 (the header is parsed lazily)
    except Exception as e:  # Pillow raises several types for unreadable files
        raise InputError(f"cannot read this image ({type(e).__name__})", path) from None


def find_items(
    src: Path,
    frames_per_video: int = 24,
    min_frame_gap: int = 8,
    skipped: list[tuple[str, str]] | None = None,
) -> list[list[Item]]:
    """Every source file under ``src`` (recursively, sorted) as a list of items; one list per source file.

    Consecutive video frames are near duplicates, so a video gives at most ``frames_per_video`` frames spread
    evenly through it, at least ``min_frame_gap`` frames apart. A file that cannot be read is left out and
    added to ``skipped`` as (path, reason); without that list, its InputError is raised.
    """
    if not src.is_dir():
        raise InputError("not a folder of images and videos", src)
    groups: list[list[Item]] = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        ext, seq = path.suffix.lower(), _seq_name(path.relative_to(src))
        try:
            if ext in IMAGE_EXTS:
                _probe_image(path)
            total = count_video_frames(path) if ext in VIDEO_EXTS else 0
        except InputError as e:
            if skipped is None:
                raise
            skipped.append((str(path), one_line(e)))
            continue
        if ext in IMAGE_EXTS:
            groups.append([Item(str(path), seq)])
        elif ext in VIDEO_EXTS:
            k = max(1, min(frames_per_video, total // max(1, min_frame_gap)))
            idx = (
                sorted(set(np.rint(np.linspace(0, total - 1, k + 2)[1:-1]).astype(int).tolist()))
                if total
                else []
            )
            groups.append([Item(str(path), seq, i) for i in idx])
    return [g for g in groups if g]


def plan_tasks(
    groups: list[list[Item]], count: int, seed: int, test_fraction: float, test_count: int
) -> list[Task]:
    """Split source files into train/test (disjoint files) and spread ``count`` train pairs over their items.

    Held-out files are drawn from the still images first (video frames are the most GoPro-like content, so
    they are kept for training) unless there are too few. Every item gets ``count // items`` pairs, the
    remainder going to a seeded random subset, so the plan depends only on the sources and the seed.
    """
    rng = np.random.default_rng([seed, 1])
    order = list(rng.permutation(len(groups)))
    order.sort(key=lambda i: groups[i][0].frame is not None)  # stable: stills first, each kind shuffled
    n_test = (
        0
        if test_fraction <= 0 or len(groups) < 2
        else min(len(groups) - 1, max(1, round(test_fraction * len(groups))))
    )
    test_groups = [groups[i] for i in sorted(order[:n_test])]
    train_groups = [groups[i] for i in sorted(order[n_test:])]

    def spread(gs: list[list[Item]], total: int, split: str, split_id: int) -> list[Task]:
        items = [it for g in gs for it in g]
        if not items or total <= 0:
            return []
        per = np.full(len(items), total // len(items))
        per[rng.permutation(len(items))[: total % len(items)]] += 1
        tasks: list[Task] = []
        next_name: dict[str, int] = {}
        for i, (it, k) in enumerate(zip(items, per, strict=True)):
            for j in range(int(k)):
                next_name[it.seq] = next_name.get(it.seq, 0) + 1
                tasks.append(Task(it, split, f"{next_name[it.seq]:06d}.png", (seed, split_id, i, j)))
        return tasks

    return spread(train_groups, count, "train", 0) + spread(
        test_groups, test_count if n_test else 0, "test", 1
    )


_image_cache: dict[str, np.ndarray] = {}
_video_cache: dict[str, dict[int, np.ndarray]] = {}


def read_image_rgb(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB (grey is replicated, alpha dropped); InputError naming the file if unreadable.

    A name for synth's callers over the project's one image reader, ``media.image_io.read_rgb_u8``."""
    return read_rgb_u8(Path(path))


def read_video_frames(path: str | Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """The frames with the given 0-based decode indices, as HxWx3 uint8 RGB, converted the way ``deblurtool
    video`` converts them (swscale's direct YUV->RGB path darkens frames by about a level)."""
    out: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    out[i] = to_rgb_u8(frame)
                if len(out) == len(wanted):
                    break
    except (av.FFmpegError, IndexError) as e:
        raise InputError(f"cannot decode video: {e}", path) from None
    return out


def _load(item: Item, wanted_frames: set[int]) -> np.ndarray:
    if item.frame is None:
        if item.path not in _image_cache:
            _image_cache.clear()  # sources arrive grouped, so one cached image is enough
            # Reduce once to the largest content scale content_rescale can draw (720 x 1.1), not per pair.
            _image_cache[item.path] = content_rescale(read_image_rgb(item.path), short_side=792)
        return _image_cache[item.path]
    frames = _video_cache.setdefault(item.path, {})
    if item.frame not in frames:
        frames.update(read_video_frames(item.path, wanted_frames | {item.frame}))
    if item.frame not in frames:
        raise InputError(f"video has no frame {item.frame}", item.path)
    return frames[item.frame]


def _write_png(path: Path, rgb_u8: np.ndarray) -> None:
    """PNG written to a temporary name in the same folder, then renamed: no half-written final file."""
    ok, buf = cv2.imencode(".png", rgb_u8[..., ::-1])
    if not ok:
        raise OutputError("cannot encode PNG", path)
    write_bytes(path, buf.tobytes())


def run_tasks(
    tasks: list[Task], out: Path, params: SynthParams, wanted: dict[str, set[int]]
) -> list[dict[str, Any]]:
    """Synthesise and write the pairs of ``tasks`` (one worker's share); returns one record per pair."""
    records: list[dict[str, Any]] = []
    for t in tasks:
        rng = np.random.default_rng(list(t.key))
        try:
            frame = content_rescale(_load(t.item, wanted.get(t.item.path, set())), rng)
            if min(frame.shape[:2]) < 32:
                raise InputError(f"image too small ({frame.shape[1]}x{frame.shape[0]})", t.item.path)
        except InputError as e:  # this source is skipped, the others written (the caller notes it)
            records.append({"split": t.split, "source": t.item.path, "error": one_line(e)})
            continue
        blur, sharp, info = synthesize(frame, rng, params)
        folder = out / t.split / t.item.seq
        for kind, img in (("blur", blur), ("sharp", sharp)):
            (folder / kind).mkdir(parents=True, exist_ok=True)
            _write_png(folder / kind / t.name, img)
        records.append(
            {
                "split": t.split,
                "seq": t.item.seq,
                "name": t.name,
                "source": t.item.path,
                "frame": t.item.frame,
                **info,
            }
        )
    return records


def _chunks(tasks: list[Task], size: int) -> list[list[Task]]:
    """Consecutive runs of tasks from the same source file, at most ``size`` long (keeps caches warm)."""
    chunks: list[list[Task]] = []
    for t in tasks:
        if chunks and len(chunks[-1]) < size and chunks[-1][-1].item.path == t.item.path:
            chunks[-1].append(t)
        else:
            chunks.append([t])
    return chunks


def make_dataset(
    src: Path,
    out: Path,
    count: int,
    params: SynthParams,
    seed: int = 0,
    test_fraction: float = 0.1,
    test_count: int = 12,
    frames_per_video: int = 24,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write ``count`` train pairs and ``test_count`` test pairs (from held-out source files) under ``out``.

    Layout ``out/{train,test}/SEQ/{blur,sharp}/NNNNNN.png`` (SEQ = one source file), plus
    ``out/manifest.json`` with the parameters and one record per pair. Same sources + seed + params =>
    byte-identical files, whatever ``workers`` is: every pair's generator is seeded from its own key.
    ``progress(done, total)`` is called after each chunk of pairs.
    """
    src, out = src.resolve(), out.resolve()
    if out == src or src in out.parents:
        raise OutputError("output folder must not lie inside the source folder", out)
    if dataset_entries(out) and not overwrite:
        raise OutputError("already holds a dataset (use --overwrite to replace it)", out)
    skipped: list[tuple[str, str]] = []
    groups = find_items(src, frames_per_video, skipped=skipped)
    if not groups:
        why = f" ({len(skipped)} could not be read: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise InputError(f"no readable images or videos found{why}", src)
    tasks = plan_tasks(groups, count, seed, test_fraction, test_count)
    wanted: dict[str, set[int]] = {}
    for g in groups:
        for it in g:
            if it.frame is not None:
                wanted.setdefault(it.path, set()).add(it.frame)

    with staged_dataset(out, overwrite=overwrite) as tmp:
        records = _run_all(tasks, tmp, params, wanted, workers, progress)
        failed = [r for r in records if "error" in r]
        records = [r for r in records if "error" not in r]
        for r in failed:
            if (r["source"], r["error"]) not in skipped:
                skipped.append((r["source"], r["error"]))
        if not records:
            first = f"{skipped[0][0]}: {skipped[0][1]}"
            raise InputError(f"no pairs written: every source was skipped ({first})", src)
        manifest = {
            "seed": seed,
            "count": count,
            "test_count": sum(r["split"] == "test" for r in records),
            "params": asdict(params),
            "sources": sorted({it.path for g in groups for it in g}),
            "test_sources": sorted({r["source"] for r in records if r["split"] == "test"}),
            "entries": sorted({r["split"] for r in records}),
            "skipped": [{"source": p, "reason": why} for p, why in skipped],
            "samples": records,
        }
        write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
    return manifest


def _run_all(
    tasks: list[Task],
    out: Path,
    params: SynthParams,
    wanted: dict[str, set[int]],
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    chunks = _chunks(tasks, 32)
    records: list[dict[str, Any]] = []
    done = 0
    job = functools.partial(run_tasks, out=out, params=params, wanted=wanted)
    results: Iterator[list[dict[str, Any]]]
    if workers <= 1:
        results = map(job, chunks)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(workers)
        results = pool.imap(job, chunks)
    try:
        for recs in results:
            records.extend(recs)
            done += len(recs)
            if progress is not None:
                progress(done, len(tasks))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return records
