"""`folder --ray` and `video --ray`: plan the units, react to their results, join chunked videos, write the
manifest (here, on the driver, only), summarise.

Resume: a file recorded in the manifest with the same input and settings is skipped (as without Ray); a
chunk whose record exists under the same key is reused, so an interrupted long video restarts only the
chunks it had not finished (and a video whose chunks were all done is only joined). A chunk that cannot be
made exactly, or chunks that do not join, make that video fall back to one whole-video unit, which behaves
exactly as ``video`` does (damaged inputs included). A chunk that fails for another reason (an output that
cannot be written, an input the node cannot see) fails its video with that reason, as ``video`` would.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from deblurtool.config import EncodeConfig
from deblurtool.errors import ModelOutputError, one_line
from deblurtool.pipeline.folder import FolderSummary, damage_line, failure_reason, file_note, is_video
from deblurtool.pipeline.manifest import Manifest, video_signature
from deblurtool.pipeline.progress import Progress
from deblurtool.scale.join import JoinError, JoinSummary, join_chunks
from deblurtool.scale.units import (
    ChunkRecord,
    Unit,
    chunk_key,
    probe_video,
    read_record,
    remove_chunks,
    video_units,
)
from deblurtool.scale.worker import UnitResult


@dataclass
class _Video:
    """A video in progress: its chunks' records as they arrive, or the whole-video fallback."""

    rel: Path
    src: Path
    out: Path
    st: os.stat_result
    signature: str
    frames: int
    chunks: list[Unit] = field(default_factory=list)
    records: dict[int, ChunkRecord] = field(default_factory=dict)
    whole: bool = False


class RayJob:
    """Units in, results out; the driver's only writer of the manifest. ``manifest`` None: `video` (one file,
    no manifest, failures raise as in `video`). Notes and failures go to ``report``; in a folder a note names
    its file."""

    def __init__(
        self,
        encode: EncodeConfig,
        chunk_frames: int | None,
        manifest: Manifest | None,
        report: Progress,
        summary: FolderSummary | None = None,
    ) -> None:
        self.encode, self.chunk_frames, self.manifest, self.report = encode, chunk_frames, manifest, report
        self.summary = summary or FolderSummary()
        self.total_frames = self.frames_done = self.reused = 0
        self.videos: dict[Path, _Video] = {}
        self.results: dict[Path, UnitResult | JoinSummary] = {}
        self.inputs: dict[Path, tuple[os.stat_result, str]] = {}  # rel -> the input's state and signature
        self.stop = threading.Event()
        self.worker_lines: list[str] = []
        self._joins: dict[Future[JoinSummary], _Video] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deblurtool-join")

    # -- planning ------------------------------------------------------------------------------------------

    def plan(self, files: list[tuple[Path, Path, Path]], signature: str, overwrite: bool) -> list[Unit]:
        """Units for ``(rel, src, out)`` files: done files skipped, finished chunks reused."""
        units: list[Unit] = []
        for rel, src, out in files:
            video = is_video(rel)
            sig = video_signature(signature, self.encode) if video else signature
            try:
                st = src.stat()
                skip = self.manifest.skip(rel, st, sig, out, overwrite) if self.manifest else None
                if skip:
                    setattr(self.summary, skip, getattr(self.summary, skip) + 1)
                    continue
                self.inputs[rel] = (st, sig)
                units += (
                    self._video_units(rel, src, out, st, sig) if video else [Unit("image", src, out, rel, 1)]
                )
            except OSError as e:
                self._failed(rel, src, failure_reason(e))
        self.total_frames += sum(u.frames for u in units)
        units.sort(key=lambda u: -u.frames)  # longest first (stable): no long unit is left alone at the end
        return units

    def _video_units(self, rel: Path, src: Path, out: Path, st: os.stat_result, sig: str) -> list[Unit]:
        probe = probe_video(src)
        frames = (probe.frames if probe is not None else None) or 1
        units = video_units(src, out, rel, probe, self.chunk_frames, chunk_key(st, sig, self.encode))
        v = self.videos[rel] = _Video(rel, src, out, st, sig, frames)
        if units[0].kind == "video":
            v.whole = True
            return units
        v.chunks = units
        todo = []
        for u in units:
            assert u.chunk is not None
            record = read_record(u.out)
            if record is None:
                todo.append(u)
            else:
                v.records[u.chunk.index] = record
                self.reused += 1
                self.frames_done += record.frames
                self.total_frames += record.frames
        if not todo:
            self._start_join(v)
        return todo

    # -- results (the dispatcher's Job protocol) -----------------------------------------------------------

    def wanted(self, unit: Unit) -> bool:
        return unit.kind != "chunk" or not self.videos[unit.rel].whole

    def busy(self) -> bool:
        return bool(self._joins)

    def on_result(self, unit: Unit, result: UnitResult) -> list[Unit]:
        self.frames_done += result.frames
        if result.fatal:  # the model returns NaN or infinity: every other file would fail alike
            raise ModelOutputError(f"{result.reason}; the run stopped", unit.src)
        if unit.kind != "chunk":
            self.results[unit.rel] = result
            if not result.ok:
                self._failed(unit.rel, unit.src, result.reason)
            else:
                self._notes(unit.src, result.notes)
                self._finished(unit.rel, unit.src, result.damage, result.frames)
            if unit.kind == "video":
                remove_chunks(unit.out)  # chunks of an earlier try, if the video fell back
            return []
        v = self.videos[unit.rel]
        if v.whole:
            return []  # a chunk of a video that fell back meanwhile
        if result.unsupported:
            return self._fall_back(v, result.reason)
        if not result.ok:  # as `video` would fail (the output cannot be written, ...): no second try
            v.whole = True
            self._failed(v.rel, v.src, result.reason)
            remove_chunks(v.out)
            return []
        assert unit.chunk is not None and result.record is not None
        v.records[unit.chunk.index] = result.record
        if len(v.records) == len(v.chunks):
            self._start_join(v)
        return []

    def poll(self) -> list[Unit]:
        more: list[Unit] = []
        for future in [f for f in self._joins if f.done()]:
            v = self._joins.pop(future)
            try:
                joined = self.results[v.rel] = future.result()
            except JoinError as e:
                more += self._fall_back(v, one_line(e))
                continue
            except Exception as e:
                self._failed(v.rel, v.src, failure_reason(e))
                continue
            remove_chunks(v.out)
            self._notes(v.src, joined.notes)
            self._finished(v.rel, v.src, None, 0)
        return more

    def _start_join(self, v: _Video) -> None:
        chunks = [(u.out, v.records[u.chunk.index]) for u in v.chunks if u.chunk is not None]
        future = self._pool.submit(join_chunks, v.src, chunks, v.out, self.encode, stop=self.stop)
        self._joins[future] = v

    def _fall_back(self, v: _Video, reason: str) -> list[Unit]:
        v.whole = True
        self.report.note(f"note: {v.src}: chunks not usable ({reason}); deblurring it as one unit")
        self.total_frames += v.frames
        return [Unit("video", v.src, v.out, v.rel, v.frames)]

    def _notes(self, src: Path, notes: list[str]) -> None:
        for text in notes:
            self.report.note(text if self.manifest is None else file_note(src, text))

    def _finished(self, rel: Path, src: Path, damage: str | None, frames: int) -> None:
        if self.manifest is None:  # `video`: a damaged input is reported by the command (exit 1)
            self.summary.done += 1
            return
        self.manifest.add(rel, *self.inputs[rel])
        failure = damage_line(damage, frames)
        if failure:
            self._failed(rel, src, failure)
        else:
            self.summary.done += 1

    def _failed(self, rel: Path, src: Path, reason: str) -> None:
        self.summary.failed.append((src, reason))
        if self.manifest is not None:
            self.report.failed(src, reason)

    def close(self) -> None:
        self.stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
