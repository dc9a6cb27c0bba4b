"""Encode frames and remux copied packets in a background thread, fed through a bounded queue.

The output keeps the input's size, time base and every frame's pts (so variable frame rate survives), its
colour tags and display matrix (so it plays with the same colours and orientation), its metadata (title,
creation time, location; each stream's language and title) and its audio and subtitle streams: packets are
copied into streams made from the input streams' templates. Every stream is checked against the output
container when the file is opened, before any frame is encoded (see :mod:`.stream_map`): audio the container
cannot hold is re-encoded, anything else it cannot hold is skipped, each with a note in
:attr:`VideoWriter.notes`. The file's header is written at opening too, so what the muxer would refuse is
refused before the model runs.

An input with an alpha channel keeps it where the chosen encoder and container can (see
:mod:`.video_codec`): the model's RGB and the input's alpha, untouched, make each output frame. Where they
cannot, the writer refuses at opening, unless the user chose the encoder or pixel format (then a note).

AVI stores no presentation times, only the order of decoding, at one frame rate: there the time base is the
input's base frame rate and the encoder makes no B-frames (which would come back one frame late).

A writer can also copy a video encoded elsewhere instead of encoding one (``encoded``): the chunks of a Ray
job, each encoded by a writer from the same :class:`VideoInfo` and :class:`EncodeConfig`, are joined this way,
with everything else a writer does (streams, metadata, AVI timing) done the same.

The container is always closed, also on error; after :meth:`VideoWriter.abort` the encoder is not flushed (the
caller deletes the file anyway, and flushing a long look-ahead would only delay Ctrl-C).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import av.codec.context
import av.container
import av.error
import av.stream
import av.video.stream
import numpy as np

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError, OutputError, disk_full, os_reason
from deblurtool.media.colour import chroma_siting, from_rgb_array, output_color_range
from deblurtool.media.stream_map import (
    SideStream,
    add_side_streams,
    copied_metadata,
    cut_packet,
    written_as_data,
)
from deblurtool.media.time_range import Cut
from deblurtool.media.video_codec import (
    INTERLACED_ENCODERS,
    NO_REORDER_FORMATS,
    alpha_note,
    avi_refusal,
    choose_codec,
    choose_pix_fmt,
    depth_note,
    encoder_options,
)

if TYPE_CHECKING:
    from deblurtool.media.video_reader import VideoReader
from deblurtool.media.video_reader import VideoInfo

__all__ = ["VideoWriter", "choose_pix_fmt"]

_POLL_S = 0.1


@dataclass(frozen=True)
class _Frame:
    rgb: np.ndarray
    pts: int
    alpha: np.ndarray | None = None


@dataclass(frozen=True)
class _Encoded:
    packet: av.Packet


class _End:
    """Queue sentinel: no more input; flush the encoder and close."""


class VideoWriter:
    """Open ``path`` for writing and add its streams; :meth:`start` the encode thread; :meth:`put_frame` /
    :meth:`put_packet` in input order; then :meth:`finish` (normal end) or :meth:`abort` (error, Ctrl-C).

    ``side_streams`` are the input's other streams and ``samples`` their first packets (by stream index, for
    the check at opening): audio and subtitles the output container can hold are copied (see
    :attr:`copied_indices`), audio it cannot hold is re-encoded, the rest skipped, each with a line in
    :attr:`notes`. ``metadata`` (the input container's) and ``video_metadata`` (its video stream's) are
    carried over. Errors raised by the thread surface from the next put or from :meth:`finish` as
    :class:`OutputError`. Messages name ``shown_path`` (default ``path``): the final name, when ``path`` is a
    hidden temporary one.

    ``cut``: the frames are a slice (their pts shifted to start at 0): the other streams are cut and shifted
    to match.

    ``encoded``: the video is copied, not encoded: the video stream is made from this stream (of a file
    written by another writer from the same ``info`` and ``encode``; its encoder's notes are that writer's)
    and its packets come through :meth:`put_encoded` instead of :meth:`put_frame`.
    """

    @classmethod
    def for_reader(
        cls,
        path: Path,
        reader: VideoReader,
        encode: EncodeConfig,
        *,
        shown_path: Path,
        encoded: av.video.stream.VideoStream | None = None,
    ) -> VideoWriter:
        """A writer of ``reader``'s video: its size and timing, the streams it copies, their sample packets,
        the container's and the video stream's metadata, and a slice's cut (if the reader reads one)."""
        return cls(
            path,
            reader.info,
            encode,
            side_streams=reader.side_streams,
            shown_path=shown_path,
            samples=reader.sample_packets,
            metadata=reader.metadata,
            video_metadata=reader.video_stream.metadata,
            encoded=encoded,
            cut=reader.cut,
        )

    def __init__(
        self,
        path: Path,
        info: VideoInfo,
        encode: EncodeConfig,
        *,
        side_streams: Sequence[av.stream.Stream] = (),
        queue_size: int = 8,
        shown_path: Path | None = None,
        samples: Mapping[int, av.Packet] | None = None,
        metadata: Mapping[str, str] | None = None,
        video_metadata: Mapping[str, str] | None = None,
        encoded: av.video.stream.VideoStream | None = None,
        cut: Cut | None = None,
    ) -> None:
        self.path = path
        self.shown_path = shown_path if shown_path is not None else path
        self.info = info
        self.notes: list[str] = list(info.notes)
        self.alpha = (
            False  # whether each frame's alpha is written (the input has alpha and the output keeps it)
        )
        self.frames_written = 0
        self._error: BaseException | None = None
        self._aborted = threading.Event()
        self._queue: queue.Queue[_Frame | _Encoded | av.Packet | _End] = queue.Queue(maxsize=queue_size)
        self._encoded = encoded is not None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._last_pts: int | None = None
        self._cut = cut
        try:
            self._container = av.open(str(path), "w")
        except (av.error.FFmpegError, ValueError, OSError) as e:
            raise OutputError(
                f"cannot write a video here ({_reason(e)}; use .mp4, .mkv or .mov)", self.shown_path
            ) from None
        try:
            if encoded is None:
                self.codec = choose_codec(encode.codec, self._container, info)
                self.pix_fmt = choose_pix_fmt(self.codec, encode.pix_fmt, info)
                self.alpha, note = alpha_note(
                    self.codec, self.pix_fmt, info, encode, self._container, path.suffix
                )
                self.notes.extend([note] if note else [])
            else:
                self.codec = encoded.codec_context.name
                self.pix_fmt = (
                    encoded.codec_context.format.name if encoded.codec_context.format else info.pix_fmt
                )
            self.color_range = output_color_range(self.pix_fmt, info.color_range)
            if self.codec == "mjpeg":
                self.color_range = 2  # JPEG is full range; FFmpeg's encoder refuses limited-range YUV
            self._container.metadata.update(copied_metadata(metadata or {}))
            self._stream = self._add_video_stream(encode, video_metadata or {}, encoded)
            self._sides: dict[int, SideStream] = add_side_streams(
                self._container, side_streams, samples or {}, self.notes, suffix=path.suffix, cut=cut
            )
            self._start()
        except BaseException:
            self._close_container()
            raise

    @property
    def copied_indices(self) -> frozenset[int]:
        """Indices (in the input) of the streams this writer carries (copied or re-encoded)."""
        return frozenset(self._sides)

    def _add_video_stream(
        self, encode: EncodeConfig, metadata: Mapping[str, str], encoded: av.video.stream.VideoStream | None
    ) -> av.video.stream.VideoStream:
        info = self.info
        if encoded is None and written_as_data(self._container, self.codec):
            raise OutputError(
                f"{self.path.suffix} files cannot hold {self.codec} video (no player would read it); "
                "use another --codec (libx264, libx265, mpeg2video) or container",
                self.shown_path,
            )
        try:
            if encoded is None:
                options = encoder_options(self.codec, encode, self.notes)
                stream = self._container.add_stream(self.codec, rate=info.average_rate, options=options)
            else:
                stream = self._container.add_stream_from_template(encoded)
                if info.average_rate:  # as add_stream(rate=...) sets it: Matroska's default duration
                    stream.codec_context.framerate = info.average_rate
        except (av.error.FFmpegError, ValueError) as e:
            refusal = f"cannot use --codec {self.codec} in {self.path.suffix} files ({_reason(e)})"
            raise OutputError(refusal, self.shown_path) from None
        if not isinstance(stream, av.video.stream.VideoStream):
            raise DeblurError(f"--codec {self.codec} is not a video encoder")
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, self.pix_fmt
        # The input's time base: every pts is written as it was read (variable frame rate survives). AVI
        # counts frames at one rate instead: the finest rate on which the input's frames fall.
        self.time_base = info.time_base
        if self._container.format.name in NO_REORDER_FORMATS:
            problem = avi_refusal(self.codec)
            if problem is not None:
                raise OutputError(problem, self.shown_path)
            rate = info.base_rate or info.average_rate
            self.time_base = 1 / rate if rate else info.time_base
            stream.codec_context.max_b_frames = 0
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        if info.colorspace not in (0, 2):  # RGB (0) or unspecified (2): leave the encoder's default
            stream.codec_context.colorspace = info.colorspace
        if self.color_range:
            stream.codec_context.color_range = self.color_range
        if info.color_primaries not in (0, 2):
            stream.codec_context.color_primaries = info.color_primaries
        if info.color_trc not in (0, 2):
            stream.codec_context.color_trc = info.color_trc
        if info.display_matrix is not None:
            stream.set_display_matrix(info.display_matrix)
        if encoded is None:
            self._keep_fields(stream)
        stream.metadata.update(copied_metadata(metadata, stream=True))
        note = depth_note(self.codec, self.pix_fmt, info) if encoded is None else None
        if note:
            self.notes.append(note)
        return stream

    def _keep_fields(self, stream: av.video.stream.VideoStream) -> None:
        """Interlaced input stays interlaced where the encoder codes fields (its field order tagged); other
        encoders write progressive pictures, said in a note."""
        order = self.info.field_order
        if order <= 1:
            return
        if self.codec in INTERLACED_ENCODERS:
            context = stream.codec_context
            context.field_order = order
            context.flags |= av.codec.context.Flags.interlaced_dct | av.codec.context.Flags.interlaced_me
            return
        self.notes.append(
            f"note: the input is interlaced but {self.codec} writes progressive pictures (no field order); "
            "--codec libx264 or mpeg2video keeps it interlaced"
        )

    def _start(self) -> None:
        """Open the encoders and write the header now: what FFmpeg refuses is refused before any work."""
        try:
            self._container.start_encoding()
        except (av.error.FFmpegError, ValueError) as e:
            if disk_full(e):  # (helper B) no other codec or container would help
                raise OutputError(f"cannot write ({_reason(e)})", self.shown_path) from None
            what = f"cannot write {self.codec} ({self.pix_fmt}) video in {self.path.suffix} files"
            raise OutputError(
                f"{what} ({_reason(e)}); try another --codec or container", self.shown_path
            ) from None
        if self._container.format.name in NO_REORDER_FORMATS and self._stream.codec_context.has_b_frames:
            raise OutputError(
                f"{self.path.suffix} files cannot keep the timing of {self.codec}'s reordered frames; "
                "use .mkv or .mp4, or another --codec",
                self.shown_path,
            )

    # -- producer side (caller's thread) ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("VideoWriter.start() called twice")
        self._thread = threading.Thread(target=self._run, name="deblurtool-encode", daemon=True)
        self._thread.start()

    def _put(self, item: _Frame | _Encoded | av.Packet | _End) -> None:
        while True:
            self._raise_if_failed()
            if self._thread is None or not self._thread.is_alive():
                raise RuntimeError("VideoWriter is not running")
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def put_frame(self, rgb: np.ndarray, pts: int, alpha: np.ndarray | None = None) -> None:
        """Queue one HxWx3 uint8/uint16 RGB frame (the input's size) with its pts in the input time base, and
        its HxW ``alpha`` (the decoded frame's) when the input has alpha."""
        if rgb.shape != (self.info.height, self.info.width, 3) or rgb.dtype not in (np.uint8, np.uint16):
            raise DeblurError(
                f"the model returned a {rgb.dtype} array of shape {rgb.shape}, expected "
                f"({self.info.height}, {self.info.width}, 3) uint8 or uint16"
            )
        if self.alpha and (alpha is None or alpha.shape != rgb.shape[:2]):
            got = "none" if alpha is None else f"shape {alpha.shape}"
            raise DeblurError(f"the output keeps alpha but frame {pts} came with {got}")
        self._put(_Frame(np.ascontiguousarray(rgb), pts, alpha if self.alpha else None))

    def put_encoded(self, packet: av.Packet) -> None:
        """Queue a packet of the ``encoded`` video, its pts, dts and duration in the input's time base, in
        decode order."""
        self._put(_Encoded(packet))

    def put_packet(self, packet: av.Packet) -> None:
        """Queue a packet of a copied stream (from the reader, in file order)."""
        self._put(packet)

    def finish(self) -> None:
        """Flush the encoder, write the trailer, close; raise what went wrong in the thread, if anything."""
        self._put(_End())
        assert self._thread is not None
        self._thread.join()
        self._raise_if_failed()

    def abort(self) -> None:
        """Stop promptly and close the file without flushing (the caller deletes it). Safe to call twice."""
        self._aborted.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._thread is None:
            self._close_container()

    def _raise_if_failed(self) -> None:
        e = self._error
        if e is not None:
            if isinstance(e, DeblurError):
                raise e
            raise OutputError(f"writing the video failed ({_reason(e)})", self.shown_path) from e

    # -- encode thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._aborted.is_set():
                try:
                    item = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if isinstance(item, _End):
                    if not self._encoded:
                        self._container.mux(self._stream.encode(None))
                    for side in self._sides.values():
                        if side.transcoder is not None:
                            self._container.mux(side.transcoder.packets(None))
                    break
                if isinstance(item, _Frame):
                    self._container.mux(self._stream.encode(self._to_video_frame(item)))
                    self.frames_written += 1
                elif isinstance(item, _Encoded):
                    self._container.mux(self._rebased(item.packet))
                    self.frames_written += 1
                elif item.dts is not None:  # dts-less packets are demuxer flush markers, not data
                    side = self._sides[item.stream.index]
                    if self._before_start(item):
                        continue
                    if side.transcoder is not None:
                        self._container.mux(side.transcoder.packets(item))
                    elif (kept := item if self._cut is None else cut_packet(item, self._cut)) is not None:
                        kept.stream = side.out
                        self._container.mux(kept)
        except BaseException as e:
            self._error = e
        finally:
            try:
                self._close_container()
            except BaseException as e:
                self._error = self._error or e

    def _before_start(self, packet: av.Packet) -> bool:
        """An audio packet that ends before time 0 (an encoder's priming) in a file that stores no
        timestamps for it (AVI): a player would play it as sound, and the muxer would shift the whole file
        by a fraction of a frame to make room for it. It is left out; its samples are never heard anyway."""
        if self.time_base == self.info.time_base or packet.pts is None or not packet.time_base:
            return False
        return (packet.pts + (packet.duration or 0)) * packet.time_base <= 0

    def _output_pts(self, pts: int) -> int:
        """``pts`` (the input's time base) in this file's: the same, but in AVI a count of frames of its one
        rate, each after the last."""
        if self.time_base != self.info.time_base:
            pts = round(Fraction(pts) * self.info.time_base / self.time_base)
            if self._last_pts is not None and pts <= self._last_pts:
                pts = self._last_pts + 1
        self._last_pts = pts
        return pts

    def _to_video_frame(self, item: _Frame) -> av.VideoFrame:
        siting = chroma_siting(self.codec, self.pix_fmt)  # where this output's decoders take its chroma to be
        frame = from_rgb_array(
            item.rgb, self.pix_fmt, self.info.colorspace, self.color_range, item.alpha, siting=siting
        )
        frame.pts = self._output_pts(item.pts)
        frame.time_base = self.time_base
        return frame

    def _rebased(self, packet: av.Packet) -> av.Packet:
        """An ``encoded`` packet in this file's time base and stream (AVI makes no reordered frames, so there
        its dts is its pts)."""
        if self.time_base != self.info.time_base:
            duration = packet.duration or 0
            packet.pts = packet.dts = self._output_pts(packet.pts or 0)
            packet.duration = round(Fraction(duration) * self.info.time_base / self.time_base)
        packet.time_base = self.time_base
        packet.stream = self._stream
        return packet

    def _close_container(self) -> None:
        if not self._closed:
            self._closed = True
            self._container.close()


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and disk_full(e):  # (helper B) say the disk is full
        return os_reason(e)
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).rstrip(".")
