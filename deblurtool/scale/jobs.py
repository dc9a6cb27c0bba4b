"""`folder --ray` and `video --ray`: take the plan's units, react to their results, join chunked videos;
outcomes (manifest, counts, reports) are recorded through the plan, on the driver only.

Resume: the plan skips a file recorded in the manifest with the same input and settings (as without Ray); a
chunk whose record exists under the same key is reused, so an interrupted long video restarts only the
chunks it had not finished (and a video whose chunks were all done is only joined). A chunk that cannot be
made exactly, or chunks that do not join, make that video fall back to one whole-video unit, which behaves
exactly as ``video`` does (damaged inputs included). A chunk that fails for another reason (an output that
cannot be written, an input the node cannot see) fails its video with that reason, as ``video`` would.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from deblurtool.errors import ModelOutputError, one_line
from deblurtool.pipeline.plan import Plan, Unit, failure_reason, file_note
from deblurtool.pipeline.video import VideoSummary
from deblurtool.scale.join import JoinError, JoinSummary, join_chunks
from deblurtool.scale.units import ChunkRecord, read_record, remove_chunks
from deblurtool.scale.worker import UnitResult


@dataclass
class _Video:
    """A chunked video in progress: its chunks' records as they arrive, or the whole-video fallback."""

    rel: Path
    src: Path
    out: Path
    frames: int
    chunks: list[Unit] = field(default_factory=list)
    records: dict[int, ChunkRecord] = field(default_factory=dict)
    whole: bool = False


class RayJob:
    """The plan's units in, results out (the dispatcher's Job protocol). Notes and failures go to the plan's
    report; in a folder a note names its file."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.total_frames = self.frames_done = self.reused = 0
        self.videos: dict[Path, _Video] = {}
        self.finished: dict[Path, VideoSummary] = {}  # what each finished video is
        self.stop = threading.Event()
        self._joins: dict[Future[JoinSummary], _Video] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deblurtool-join")

    def start(self, units: list[Unit]) -> list[Unit]:
        """The units to send out: finished chunks of an earlier run reused (a video whose chunks are all
        done is joined at once), longest first."""
        todo: list[Unit] = []
        for unit in units:
            if unit.kind != "chunk":
                todo.append(unit)
                continue
            assert unit.chunk is not None
            v = self.videos.get(unit.rel)
            if v is None:
                probe = self.plan.probes.get(unit.rel)
                frames = (probe.frames if probe is not None else None) or 1
                v = self.videos[unit.rel] = _Video(unit.rel, unit.src, self.plan.output(unit.rel), frames)
            v.chunks.append(unit)
            record = read_record(unit.out)
            if record is None:
                todo.append(unit)
            else:
                v.records[unit.chunk.index] = record
                self.reused += 1
                self.frames_done += record.frames
                self.total_frames += record.frames
        for v in self.videos.values():
            if len(v.records) == len(v.chunks):
                self._start_join(v)
        self.total_frames += sum(u.frames for u in todo)
        todo.sort(key=lambda u: -u.frames)  # longest first (stable): no long unit is left alone at the end
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
            if not result.ok:
                self.plan.failed(unit.src, result.reason)
            else:
                self._notes(unit.src, result.notes)
                if unit.kind == "video":
                    self.finished[unit.rel] = VideoSummary(
                        src=unit.src, dst=unit.out, frames=result.frames, seconds=result.seconds,
                        pix_fmt=result.pix_fmt, copied_streams=result.copied_streams,
                        notes=list(result.notes), damage=result.damage,
                    )  # fmt: skip
                self.plan.finished(unit.rel, unit.src, result.damage, result.frames)
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
            self.plan.failed(v.src, result.reason)
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
                joined = future.result()
            except JoinError as e:
                more += self._fall_back(v, one_line(e))
                continue
            except Exception as e:
                self.plan.failed(v.src, failure_reason(e))
                continue
            remove_chunks(v.out)
            self._notes(v.src, joined.notes)
            self.finished[v.rel] = VideoSummary(
                src=v.src, dst=v.out, frames=joined.frames, seconds=0.0, pix_fmt=joined.pix_fmt,
                copied_streams=joined.copied_streams, notes=list(joined.notes),
            )  # fmt: skip
            self.plan.finished(v.rel, v.src)
        return more

    def _start_join(self, v: _Video) -> None:
        chunks = [(u.out, v.records[u.chunk.index]) for u in v.chunks if u.chunk is not None]
        future = self._pool.submit(join_chunks, v.src, chunks, v.out, self.plan.encode, stop=self.stop)
        self._joins[future] = v

    def _fall_back(self, v: _Video, reason: str) -> list[Unit]:
        v.whole = True
        self.plan.report.note(f"note: {v.src}: chunks not usable ({reason}); deblurring it as one unit")
        self.total_frames += v.frames
        return [Unit("video", v.src, v.out, v.rel, v.frames)]

    def _notes(self, src: Path, notes: list[str]) -> None:
        for text in notes:
            self.plan.report.note(text if self.plan.single else file_note(src, text))

    def close(self) -> None:
        self.stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
