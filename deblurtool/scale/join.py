"""Driver side of a chunked video: join the chunk files into one output by packet remux, no second encode.

The chunks were encoded with the same settings from the same VideoInfo, so their packets are pieces of one
stream with one codec header (checked). Timestamps are not trusted to the chunk container (Matroska keeps
milliseconds only, MP4 may shift the start): each chunk's packets are ranked by their pts and given the
source's pts of the frames the worker encoded (its :class:`ChunkRecord`), so the output carries exactly the
source's timestamps, VFR too. Decode timestamps are rebuilt for the whole stream: ``dts[j]`` is the ``j -
d``-th smallest pts, ``d`` being the largest reordering (B-frame) depth seen, which keeps dts strictly
increasing and never above pts across the chunk boundaries (as an encoder would have set them).

Everything else is what ``video`` does, by the same code: the source is opened by the same
:class:`VideoReader` (its video is not decoded again, only its other packets are read) and the output is
written by the same :class:`VideoWriter`, which copies the video packets instead of encoding frames. So
audio and subtitles are copied, re-encoded or left out by the same stream map decisions with the same
notes, metadata is carried over, and AVI counts frames at its one rate; the output is written
temp-then-rename.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.container

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError
from deblurtool.fsutil import atomic_write, remove_stale_temps
from deblurtool.media.video_reader import VideoReader
from deblurtool.media.video_writer import VideoWriter
from deblurtool.scale.units import ChunkRecord


class JoinError(DeblurError):
    """The chunks do not fit together (the driver then deblurs the video as one unit)."""


class JoinStopped(Exception):
    """The driver was interrupted while joining (nothing is left under the temporary name)."""


@dataclass
class JoinSummary:
    """What a join wrote: as a :class:`~deblurtool.pipeline.VideoSummary` says it (``notes``: the chunks'
    encoder notes, then the stream map's)."""

    frames: int
    pix_fmt: str
    copied_streams: int
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _ChunkPlan:
    path: Path
    pts: list[int]  # new pts of the chunk's packets, in the chunk's decode order
    first: int  # decode index of the chunk's first packet in the whole stream


def _plan_chunk(path: Path, record: ChunkRecord, first: int) -> tuple[_ChunkPlan, int, bytes]:
    """Map the chunk's packets (decode order) to the record's pts by rank; return the plan, the chunk's
    reordering depth and its codec header."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        found = [p.pts for p in c.demux(stream) if p.size]
        header = bytes(stream.codec_context.extradata or b"")
    stored = [p for p in found if p is not None]
    if len(found) != record.frames or len(stored) != len(found):
        raise JoinError(f"chunk {path.name} holds {len(stored)} timed packet(s) for {record.frames} frame(s)")
    order = sorted(range(len(stored)), key=lambda j: stored[j])
    rank = [0] * len(stored)
    for r, j in enumerate(order):
        rank[j] = r
    depth = max(j - rank[j] for j in range(len(stored)))
    return _ChunkPlan(path, [record.pts[rank[j]] for j in range(len(stored))], first), depth, header


def join_chunks(
    src: Path,
    chunks: Sequence[tuple[Path, ChunkRecord]],
    dst: Path,
    encode: EncodeConfig,
    *,
    stop: threading.Event | None = None,
) -> JoinSummary:
    """Join ``chunks`` (in range order, encoded with ``encode``) of ``src`` into ``dst`` (see the module
    docstring); raise :class:`JoinError` when they do not fit together. Nothing is left under ``dst``'s
    temporary name on any error."""
    stop = stop or threading.Event()
    chunks = [(p, r) for p, r in chunks if r.frames]
    if not chunks:
        raise JoinError("no frame could be decoded from any chunk", src)
    all_pts = [p for _, r in chunks for p in r.pts]
    if any(b <= a for a, b in itertools.pairwise(all_pts)):
        raise JoinError("the chunks' frame timestamps overlap or are out of order", src)
    plans: list[_ChunkPlan] = []
    depth, headers, first = 0, set(), 0
    for path, record in chunks:
        plan, d, header = _plan_chunk(path, record, first)
        plans.append(plan)
        depth, first = max(depth, d), first + record.frames
        headers.add(header)
    if len(headers) > 1:
        raise JoinError("the chunks were encoded with different codec headers", src)
    reader = VideoReader(src, stop=stop)  # an input that changed meanwhile fails here, before any output
    try:
        remove_stale_temps(dst)
        with atomic_write(dst) as tmp, av.open(str(plans[0].path)) as template:
            writer = VideoWriter.for_reader(
                tmp, reader, encode, shown_path=dst, encoded=template.streams.video[0]
            )
            _mux(reader, writer, plans, all_pts, depth, stop)
    finally:
        reader.close()  # only now: the packets it handed out have been muxed
    notes = [*chunks[0][1].notes, *writer.notes]
    return JoinSummary(writer.frames_written, chunks[0][1].pix_fmt, len(writer.copied_indices), notes)


def _mux(
    reader: VideoReader,
    writer: VideoWriter,
    plans: list[_ChunkPlan],
    all_pts: list[int],
    depth: int,
    stop: threading.Event,
) -> None:
    """The chunks' packets and the source's copied ones, interleaved by time, through the writer."""
    try:
        reader.start(writer.copied_indices, frames=False)
        writer.start()
        with contextlib.ExitStack() as opened:  # chunk files stay open until their packets are written
            video = _video_packets(plans, all_pts, depth, reader.info.time_base, opened)
            side = (
                (float(p.dts * p.time_base), 1, n, p)
                for n, p in enumerate(reader.items())
                if isinstance(p, av.Packet) and p.dts is not None
            )
            for _, kind, _, packet in heapq.merge(video, side):
                if stop.is_set():
                    raise JoinStopped
                if kind == 0:
                    writer.put_encoded(packet)
                else:
                    writer.put_packet(packet)
            if stop.is_set():  # the reader ends early when stopped
                raise JoinStopped
            writer.finish()
    except BaseException:
        writer.abort()
        raise


def _dts(j: int, all_pts: list[int], depth: int) -> int:
    """Decode timestamp of the ``j``-th packet: the ``j - depth``-th pts; before the first frame, the first
    gaps mirrored (what x264 does for a constant rate, and strictly increasing for any rate)."""
    if j >= depth:
        return all_pts[j - depth]
    return 2 * all_pts[0] - all_pts[depth - j]


def _video_packets(
    plans: list[_ChunkPlan], all_pts: list[int], depth: int, tb: Fraction, opened: contextlib.ExitStack
) -> Iterator[tuple[float, int, int, av.Packet]]:
    """The chunks' packets in decode order with the source's timestamps (``tb``), keyed by decode time;
    each chunk file is opened on ``opened``."""
    seconds = float(tb)
    for plan in plans:
        c = opened.enter_context(av.open(str(plan.path)))
        packets = (p for p in c.demux(c.streams.video[0]) if p.size)
        for j, packet in enumerate(packets):
            g = plan.first + j
            duration = round(packet.duration * packet.time_base / tb) if packet.duration else 0
            packet.time_base = tb
            packet.pts, packet.dts = plan.pts[j], _dts(g, all_pts, depth)
            packet.duration = duration
            yield packet.dts * seconds, 0, g, packet
