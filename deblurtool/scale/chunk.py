"""Worker side of a chunk: decode one pts range of a video, deblur it, encode exactly its frames.

The decoder starts at the keyframe before the range (a seek), frames before the range are decoded and
dropped (never deblurred), and decoding stops at the first frame at or past the range's end. Each chunk is
encoded with the run's EncodeConfig through the same VideoWriter as ``video``, into the output's container
(same encoder choice, pixel format, colour tags, display matrix, time base and pts, AVI's rules), configured
from the same VideoInfo (the reader's probe of the file's first frame), so the chunks are pieces of what a
single-process run would have encoded.

A seek may land after the range's start (demuxers seek by dts or by an index, and a keyframe's dts can be
below a frame that belongs to the GOP before it; MPEG-TS seeks coarsely): that is detected (the first
decoded frame is already past ``lo``, or nothing decodes at all) and the seek is retried further back, down
to the file's start. Anything this exact path does not
support (frames without pts, pts not increasing, decoder errors of a damaged input) raises
:class:`ChunkUnsupported`; the driver then deblurs that video as one unit, exactly as ``video`` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.error

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError
from deblurtool.fsutil import atomic_write, make_folders, remove_stale_temps
from deblurtool.media.video_probe import pick_video_stream
from deblurtool.media.video_reader import DecodedFrame, VideoReader, decoded_frame, video_decoder
from deblurtool.media.video_writer import VideoWriter
from deblurtool.pipeline.plan import ChunkRange
from deblurtool.pipeline.progress import ArrayModel
from deblurtool.pipeline.video import deblur_frame
from deblurtool.scale.units import ChunkRecord, write_record

_BACKOFF_SECONDS = (0, 2, 10, 60)  # how far before ``lo`` successive seeks aim (then: the file's start)


class ChunkUnsupported(DeblurError):
    """This video cannot be cut exactly at pts boundaries; it is deblurred as one unit instead."""


class _LateSeek(Exception):
    """The seek landed after the range's first frame; seek further back."""


class _NoFrames(Exception):
    """The range holds no frame: there is no chunk file, only its record."""


def decode_range(
    path: Path, lo: int | None, hi: int | None, array_format: str, time_base: Fraction
) -> Iterator[DecodedFrame]:
    """Frames of ``path``'s video with ``lo <= pts < hi`` (None: open; pts in ``time_base``), in presentation
    order, converted as the reader converts them (``array_format`` rgb24 or rgb48le)."""
    targets: list[int | None] = [None]
    if lo is not None:
        targets = [lo - round(s / time_base) for s in _BACKOFF_SECONDS] + [None]
    for target in targets:
        try:
            yield from _decode_from(path, target, lo, hi, array_format)
            return
        except _LateSeek:
            continue
    raise ChunkUnsupported(f"no frame at or before pts {lo} could be decoded", path)


def _decode_from(
    path: Path, target: int | None, lo: int | None, hi: int | None, array_format: str
) -> Iterator[DecodedFrame]:
    with av.open(str(path)) as container:
        stream = pick_video_stream(container, path)
        stream.thread_type = "AUTO"
        decoder = video_decoder(stream)  # (libvpx for VP9 with an alpha plane, as the reader decodes it)
        if target is not None:
            container.seek(target, stream=stream, backward=True, any_frame=False)
        last: int | None = None
        index = 0
        try:
            for packet in container.demux(stream):
                for frame in decoder.decode(packet):
                    pts = frame.pts
                    if pts is None or (last is not None and pts <= last):
                        raise ChunkUnsupported("its frame timestamps are missing or not increasing", path)
                    if frame.is_corrupt:
                        raise ChunkUnsupported("a frame decoded with errors (damaged input)", path)
                    if last is None and target is not None and lo is not None and pts > lo:
                        raise _LateSeek
                    last = pts
                    if lo is not None and pts < lo:
                        continue
                    if hi is not None and pts >= hi:
                        return
                    yield decoded_frame(frame, pts, index, array_format)  # (with its alpha, if any)
                    index += 1
        except av.error.FFmpegError as e:
            raise ChunkUnsupported(f"decoding failed ({e}); damaged input?", path) from None
        if last is None and target is not None:
            raise _LateSeek  # nothing at all after the seek point (MPEG-TS near its end): look further back


def encode_chunk(
    src: Path,
    chunk_file: Path,
    rng: ChunkRange,
    model: ArrayModel,
    encode: EncodeConfig,
) -> ChunkRecord:
    """Deblur and encode the frames of ``rng`` into ``chunk_file`` (temp-then-rename), then write its record.
    A range holding no frame writes only the record."""
    with VideoReader(src) as reader:  # the same probe as `video`: identical VideoInfo in every chunk
        info = reader.info
    array_format = "rgb24" if info.bit_depth <= 8 else "rgb48le"  # as the reader chooses
    make_folders(chunk_file.parent, for_path=chunk_file)
    remove_stale_temps(chunk_file)
    pts: list[int] = []
    try:
        with atomic_write(chunk_file) as tmp:
            writer = VideoWriter(tmp, info, encode, shown_path=chunk_file)
            try:
                writer.start()
                for frame in decode_range(src, rng.lo, rng.hi, array_format, info.time_base):
                    writer.put_frame(deblur_frame(model, frame, info), frame.pts, frame.alpha)
                    pts.append(frame.pts)
                if not pts:
                    raise _NoFrames
                writer.finish()
            except BaseException:
                writer.abort()
                raise
    except _NoFrames:
        pass
    record = ChunkRecord(pts=pts, pix_fmt=writer.pix_fmt, notes=list(writer.notes))
    write_record(chunk_file, record)
    return record
