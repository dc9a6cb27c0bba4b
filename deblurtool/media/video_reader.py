"""Decode a video in a background thread: RGB frames with their pts, plus packets of streams to copy.

The reader opens the file and decodes the FIRST frame in the caller's thread, so that an unusable input (not
a video, no video stream, nothing decodable) fails with an :class:`InputError` before any output exists, and
so the writer can be configured from facts that only a decoded frame carries (display matrix, colour tags).
After :meth:`VideoReader.start` a thread demuxes the rest into a bounded queue: memory stays flat for any
length.

A damaged input is decoded as far as it goes: a video packet the decoder rejects is skipped (the frames
around it keep their own pts, so timing and audio stay in sync), frames the decoder repaired by concealment
are counted, and the file breaking off ends the stream. :attr:`VideoReader.damage` then says, in one line,
what happened, so the caller can finish the output and still report a partial result.

A picture with an alpha channel (PNG or QuickTime RLE in MOV, ProRes 4444, FFV1, VP9 with WebM's
separate alpha plane, read through libvpx because FFmpeg's own VP9 decoder ignores it) is delivered as RGB
for the model plus its alpha, untouched, for the writer to carry over.

Given a :class:`~deblurtool.media.time_range.TimeRange`, only the frames of that slice are delivered, their
pts shifted so the first is 0; the reader decodes (without converting) up to the slice's first frame in the
caller's thread, so that a slice with no frame is refused before any output exists and :attr:`VideoReader.cut`
tells the writer where to cut the other streams. It stops reading soon after the slice's end.

Frames stay in their STORED orientation; the display matrix (rotation/flip side data) is reported in
:class:`VideoInfo` for the writer to copy, so the output plays with the same orientation as the input while
the model sees exactly the pixels the camera stored (no resampling, no rotate-and-back).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import av.codec.context
import av.container
import av.error
import av.stream
import av.video.stream
import numpy as np
from av.video.codeccontext import VideoCodecContext

from deblurtool.errors import InputError
from deblurtool.media.colour import alpha_array, chroma_siting, has_alpha, to_rgb_array
from deblurtool.media.time_range import Cut, TimeRange
from deblurtool.media.video_probe import (
    alpha_decoder,
    display_matrix,
    ends_early,
    estimate_frames,
    expected_end,
    pick_video_stream,
    refuse_non_video,
)

_POLL_S = 0.1  # how often a blocked thread looks at the stop event
_PROBE_MAX_SKIPPED = 250  # rejected video packets before the first frame after which the input is refused
_PROBE_MAX_PACKETS = 600  # packets read ahead to find the first one of every audio and subtitle stream
_PROBE_MAX_BYTES = 64 << 20
_SLICE_READ_ON_S = 2  # how far past a slice's end other streams are still read (their packets lag or lead)


@dataclass(frozen=True)
class VideoInfo:
    """Facts about the input's video stream that the writer and the progress bar need.

    ``time_base`` is the stream's (pts are in it); ``frames_total`` is the container's exact count when it has
    one, else an estimate from duration and rate, else None; ``display_matrix`` is FFmpeg's 9-int
    ``AV_PKT_DATA_DISPLAYMATRIX`` (None when absent) and ``rotation`` its counter-clockwise angle in degrees.
    Colour tags are FFmpeg enum values (AVColorSpace, AVColorRange, ...), 0/2 meaning unspecified.
    ``alpha``: the frames carry an alpha channel (:attr:`DecodedFrame.alpha`); ``notes``: what the reader
    could not keep (``note:`` lines for the writer to report).
    """

    path: Path
    width: int
    height: int
    codec_name: str
    pix_fmt: str
    bit_depth: int
    time_base: Fraction
    average_rate: Fraction | None
    frames_total: int | None
    frames_exact: bool
    display_matrix: tuple[int, ...] | None
    rotation: int
    colorspace: int
    color_range: int
    color_primaries: int
    color_trc: int
    base_rate: Fraction | None = None  # FFmpeg's r_frame_rate: the finest rate on which every pts falls
    alpha: bool = False
    notes: tuple[str, ...] = ()
    field_order: int = 0  # AVFieldOrder: 0 unknown, 1 progressive, 2-5 interlaced (2 top field first)


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded picture: ``rgb`` HxWx3, uint8 for 8-bit sources or uint16 (full 0..65535 range) for deeper
    ones so 10/12-bit precision survives; ``pts`` in :attr:`VideoInfo.time_base`; ``index`` counts from 0;
    ``alpha`` HxW of ``rgb``'s dtype for a video with an alpha channel, else None."""

    rgb: np.ndarray
    pts: int
    index: int
    alpha: np.ndarray | None = None


def decoded_frame(
    frame: av.VideoFrame, pts: int, index: int, array_format: str, siting: int | None = None
) -> DecodedFrame:
    """``frame`` as the model and the writer take it: RGB converted exactly (``array_format`` rgb24 or
    rgb48le, its chroma at ``siting``, see :mod:`.colour`) and its alpha, if its format has one, as stored."""
    rgb = to_rgb_array(frame, array_format, siting)
    alpha = alpha_array(frame, np.uint8 if array_format == "rgb24" else np.uint16)
    return DecodedFrame(rgb=rgb, pts=pts, index=index, alpha=alpha)


def video_decoder(stream: av.video.stream.VideoStream) -> VideoCodecContext:
    """The decoder for ``stream``'s packets: libvpx for VP8/VP9 with a separate alpha plane (which FFmpeg's
    own decoders ignore), else the stream's own."""
    decoder, _ = alpha_decoder(stream)
    return decoder if decoder is not None else stream.codec_context


class _End:
    """Queue sentinel: the input ended (normally, or after ``damage`` was recorded)."""


@dataclass(frozen=True)
class _Failure:
    error: BaseException


class _Raising:
    """A packet iterator that fails at once with ``error`` (met while reading ahead, reported in order)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __iter__(self) -> _Raising:
        return self

    def __next__(self) -> av.Packet:
        raise self.error


class VideoReader:
    """Decode the first video stream of ``path``; iterate :meth:`items` for frames and copied packets.

    Use as a context manager (or call :meth:`close`): it stops the thread and closes the file. ``stop`` is the
    pipeline's shared event; when it is set the thread ends within about 0.1 s. After iteration ends,
    ``damage`` is None for a clean end, or a one-line reason when the input was damaged (every frame that
    could be decoded was delivered; see the module docstring).
    """

    def __init__(
        self,
        path: Path,
        *,
        queue_size: int = 8,
        stop: threading.Event | None = None,
        time_range: TimeRange | None = None,
    ) -> None:
        self.path = path
        self.time_range = time_range
        self.cut: Cut | None = None  # for a slice: where the writer cuts the other streams
        self.frames_delivered = 0
        self._first_pts: int | None = None  # the video's first frame (times of a slice count from it)
        self._zero_pts: int | None = None  # a slice's first frame (its pts become 0)
        self._video_done = False  # a slice's last frame is behind us
        self.stop = stop if stop is not None else threading.Event()
        self.damage: str | None = None
        self.frames_decoded = 0
        self.frames_concealed = 0  # decoded, but flagged corrupt by the decoder (errors concealed)
        self.packets_skipped = 0  # video packets the decoder rejected
        self._first_skip: tuple[int, str] | None = None  # (frames decoded before it, reason)
        self._break_off: str | None = None  # why demuxing stopped early, if it did
        self._queue: queue.Queue[DecodedFrame | av.Packet | _End | _Failure] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._copy: frozenset[int] = frozenset()
        self._frames = True
        self._pending: list[DecodedFrame | av.Packet] = []
        self._last_pts: int | None = None
        self._last_duration = 1
        self.sample_packets: dict[int, av.Packet] = {}  # the first packet of each other stream, for checks
        self._file_end = 0.0  # the latest end (s) of any packet demuxed: where the file's content stops
        self._probed_bytes = 0
        self._closed = False
        try:
            self._container = av.open(str(path), "r")
        except FileNotFoundError:
            raise InputError("no such file", path) from None
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise InputError(f"not a readable video ({_reason(e)})", path) from None
        try:
            refuse_non_video(self._container, path)
            self._stream = pick_video_stream(self._container, path)
            self._stream.thread_type = "AUTO"
            decoder, alpha_note = alpha_decoder(self._stream)
            self._decoder = decoder if decoder is not None else self._stream.codec_context
            self._notes = (alpha_note,) if alpha_note else ()
            self._alpha: bool | None = None  # whether frames carry alpha: known from the first one
            rate, tb = self._stream.average_rate or self._stream.guessed_rate, self._stream.time_base
            self._pts_step = max(1, round(1 / (rate * tb))) if rate and tb else 1
            self._array_format = "rgb24"
            self._siting: int | None = (
                None  # where the chroma sits (colour.chroma_siting): from the first frame
            )
            self._packets = self._container.demux()
            first = self._probe_first_frame()
            self.info = self._make_info(first)
            if time_range is not None:
                self._find_slice()
        except BaseException:
            self._container.close()
            raise

    # -- set-up (caller's thread) ----------------------------------------------------------------------------

    @property
    def video_stream(self) -> av.video.stream.VideoStream:
        """The video stream being decoded (its metadata: language, title, ...)."""
        return self._stream

    @property
    def metadata(self) -> dict[str, str]:
        """The container's metadata (title, creation_time, location, ...), as FFmpeg names it."""
        return dict(self._container.metadata)

    @property
    def side_streams(self) -> list[av.stream.Stream]:
        """Every stream except the chosen video one (audio, subtitles, data, cover art): the writer picks."""
        return [s for s in self._container.streams if s.index != self._stream.index]

    def _probe_first_frame(self) -> av.VideoFrame:
        # Packets of other streams seen before the first picture are kept so none is lost for copying.
        while True:
            try:
                packet = next(self._packets)
            except StopIteration:
                break
            except av.error.FFmpegError as e:
                raise InputError(f"no video frame could be decoded ({_reason(e)})", self.path) from None
            self._saw(packet)
            if packet.stream.index != self._stream.index:
                if packet.dts is not None:
                    self._pending.append(packet)
                continue
            frames = self._decode_packet(packet)
            if not frames and self.packets_skipped >= _PROBE_MAX_SKIPPED:
                break  # hopeless: do not read a whole large file in the caller's thread to find out
            if frames:
                self._array_format = "rgb24" if _bit_depth(frames[0]) <= 8 else "rgb48le"
                self._siting = chroma_siting(self._stream.codec_context.name, frames[0].format.name)
                self._pending.extend(d for d in map(self._to_decoded, frames) if d is not None)
                self._probe_side_packets()
                return frames[0]
        if self._first_skip is not None:
            where = f"{self.packets_skipped} damaged packet(s)"
            raise InputError(f"no video frame could be decoded ({where}: {self._first_skip[1]})", self.path)
        raise InputError("no video frame could be decoded (empty or unsupported video stream)", self.path)

    @property
    def length(self) -> Fraction | None:
        """How long the video lasts from its first frame, in seconds, by the file's own word (None: it does
        not say); for checking a slice before any work."""
        end = expected_end(self._stream, self._container)
        if end is None or self._first_pts is None:
            return None
        return max(Fraction(0), end[0] - self._first_pts * self.info.time_base)

    def check_slice(self, time_range: TimeRange) -> None:
        """Refuse a slice outside this video by its header's duration (an :class:`InputError` naming the
        video's length), without decoding: for a command to say so before it loads the model."""
        rate = self.info.average_rate
        time_range.check(self.length, 1 / rate if rate else None, self.path)

    def _find_slice(self) -> None:
        """Decode (without converting) up to the slice's first frame, keeping the other streams' packets that
        may still sound in it; then :attr:`cut` and the progress estimate are known. No frame in the slice:
        :class:`InputError`."""
        assert self.time_range is not None and self._first_pts is not None
        tb = self.info.time_base
        begin = self._first_pts * tb + self.time_range.start
        pending, self._pending = self._pending, []
        for item in pending:  # in file order: video packets read ahead while probing are decoded first
            if isinstance(item, av.Packet) and item.stream.index == self._stream.index:
                for frame in self._decode_packet(item):
                    if (decoded := self._to_decoded(frame)) is not None:
                        self._pending.append(decoded)
            elif _may_reach(item, begin):
                self._pending.append(item)
        while self._zero_pts is None and not self._video_done:
            try:
                packet = next(self._packets)
            except StopIteration:
                for frame in _drained(self._decoder):
                    if (decoded := self._to_decoded(frame)) is not None:
                        self._pending.append(decoded)
                break
            except av.error.FFmpegError as e:
                raise InputError(f"the video breaks off before the slice ({_reason(e)})", self.path) from None
            self._saw(packet)
            if packet.stream.index == self._stream.index:
                for frame in self._decode_packet(packet):
                    if (decoded := self._to_decoded(frame)) is not None:
                        self._pending.append(decoded)
            elif packet.dts is not None and _may_reach(packet, begin):
                self._pending.append(packet)
        if self._zero_pts is None:
            last = (self._last_pts or 0) - self._first_pts
            raise InputError(
                f"no frame in the slice ({self.time_range}): the video's last frame is at "
                f"{float(last * tb):.3f} s",
                self.path,
            )
        end = self.time_range.end
        self.cut = Cut(
            zero=self._zero_pts * tb,
            end=None if end is None else self._first_pts * tb + end,
            trim_head=self._zero_pts > self._first_pts,
        )
        rate = self.info.average_rate
        total = self.info.frames_total
        if rate:
            span = self.time_range.duration
            wanted = round(span * rate) if span is not None else None
            left = None if total is None else max(1, total - round(self.time_range.start * rate))
            guesses = [n for n in (wanted, left) if n is not None]
            self.info = replace(self.info, frames_total=min(guesses) if guesses else None, frames_exact=False)

    def _saw(self, packet: av.Packet) -> None:
        """Note a demuxed packet: the first of each other stream is kept (the writer tries it in the output
        container before any work), and the latest end time of all tells where the file's content stops."""
        if packet.pts is not None and packet.time_base:
            self._file_end = max(
                self._file_end, float((packet.pts + (packet.duration or 0)) * packet.time_base)
            )
        index = packet.stream.index
        if index != self._stream.index and index not in self.sample_packets and packet.dts is not None:
            self.sample_packets[index] = packet

    def _probe_side_packets(self) -> None:
        """Read on (packets kept, video ones undecoded) until every audio and subtitle stream has shown a
        packet, within a budget: the writer checks that each can be muxed before the model runs."""
        wanted = {
            s.index
            for s in self._container.streams
            if s.type in ("audio", "subtitle") and s is not self._stream
        }
        while wanted - self.sample_packets.keys() and len(self._pending) < _PROBE_MAX_PACKETS:
            if self._probed_bytes > _PROBE_MAX_BYTES:
                return
            try:
                packet = next(self._packets)
            except StopIteration:
                self._packets = iter(())
                return
            except av.error.FFmpegError as e:  # the decode thread reports it, after the frames before it
                self._packets = _Raising(e)
                return
            self._saw(packet)
            self._probed_bytes += packet.size
            if packet.dts is not None or packet.stream.index == self._stream.index:
                self._pending.append(packet)

    def _decode_packet(self, packet: av.Packet) -> list[av.VideoFrame]:
        """The frames one video packet completes. A packet the decoder rejects is counted and skipped (the
        decoder resynchronises on the next one): one damaged packet costs a frame or a few, not the rest."""
        try:
            return list(self._decoder.decode(packet))
        except av.error.FFmpegError as e:
            self.packets_skipped += 1
            if self._first_skip is None:
                self._first_skip = (self.frames_decoded, _reason(e))
            return []

    def _make_info(self, first: av.VideoFrame) -> VideoInfo:
        stream = self._stream
        fmt = first.format
        matrix = display_matrix(first)
        exact = bool(stream.frames)
        return VideoInfo(
            path=self.path,
            width=first.width,
            height=first.height,
            codec_name=stream.codec_context.name,
            pix_fmt=fmt.name,
            bit_depth=_bit_depth(first),
            time_base=stream.time_base or Fraction(1, 90_000),
            average_rate=stream.average_rate or stream.guessed_rate or None,
            frames_total=stream.frames if exact else estimate_frames(stream, self._container),
            frames_exact=exact,
            display_matrix=matrix,
            rotation=int(first.rotation) if matrix is not None else 0,
            colorspace=int(first.colorspace),
            color_range=int(first.color_range),
            color_primaries=int(first.color_primaries),
            color_trc=int(first.color_trc),
            base_rate=stream.base_rate or None,
            alpha=bool(self._alpha),
            notes=self._notes,
            field_order=_field_order(stream, first),
        )

    # -- decoding (reader thread) ----------------------------------------------------------------------------

    def _to_decoded(self, frame: av.VideoFrame) -> DecodedFrame | None:
        """The frame as delivered (pts made valid; None: outside the slice, not even converted)."""
        # Encoders reject missing or repeated pts; a valid file has neither, a damaged one gets the next tick.
        pts = frame.pts
        if pts is None:
            pts = 0 if self._last_pts is None else self._last_pts + self._pts_step
        elif self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        self._last_duration = frame.duration or self._pts_step  # (a held last frame may last long)
        if frame.is_corrupt:
            self.frames_concealed += 1
        self.frames_decoded += 1
        if self._first_pts is None:
            self._first_pts = pts
            self._alpha = has_alpha(frame.format.name)
        if self.time_range is not None:
            t = (pts - self._first_pts) * (self._stream.time_base or Fraction(1, 90_000))
            if t < self.time_range.start or self._video_done:
                return None
            if self.time_range.end is not None and t >= self.time_range.end:
                self._video_done = True
                return None
            if self._zero_pts is None:
                self._zero_pts = pts
            pts -= self._zero_pts
        decoded = decoded_frame(frame, pts, self.frames_delivered, self._array_format, self._siting)
        if decoded.alpha is None and self._alpha:  # a frame the decoder returned without alpha: opaque
            alpha = np.full(decoded.rgb.shape[:2], np.iinfo(decoded.rgb.dtype).max, decoded.rgb.dtype)
            decoded = DecodedFrame(decoded.rgb, pts, decoded.index, alpha)
        elif not self._alpha and decoded.alpha is not None:
            decoded = DecodedFrame(decoded.rgb, pts, decoded.index)
        self.frames_delivered += 1
        return decoded

    def _deliver(self, frame: av.VideoFrame) -> None:
        decoded = self._to_decoded(frame)
        if decoded is not None:
            self._put(decoded)

    def start(self, copy_indices: Collection[int] = (), *, frames: bool = True) -> None:
        """Start the decode thread; packets of streams in ``copy_indices`` are passed on, others dropped.
        ``frames`` False: the video is not decoded at all, only those packets come (``damage`` stays None);
        for joining a video encoded elsewhere with this file's other streams."""
        if self._thread is not None:
            raise RuntimeError("VideoReader.start() called twice")
        self._copy = frozenset(copy_indices)
        self._frames = frames
        self._thread = threading.Thread(target=self._run, name="deblurtool-decode", daemon=True)
        self._thread.start()

    def _put(self, item: DecodedFrame | av.Packet | _End | _Failure) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            video_index = self._stream.index
            for item in self._pending:
                if isinstance(item, DecodedFrame):
                    if self._frames:
                        self._put(item)
                elif item.stream.index in self._copy:
                    self._put(item)
                elif item.stream.index == video_index and self._frames:  # read ahead while probing
                    for frame in self._decode_packet(item):
                        self._deliver(frame)
            self._pending.clear()
            self._decode_rest()
            self._put(_End())
        except _Stopped:
            pass
        except BaseException as e:  # a bug or MemoryError: hand it to the consumer, which re-raises it
            with contextlib.suppress(_Stopped):
                self._put(_Failure(e))

    def _decode_rest(self) -> None:
        video_index = self._stream.index
        while True:
            try:
                packet = next(self._packets)
            except StopIteration:
                break
            except av.error.FFmpegError as e:
                # The container itself is broken here: nothing after this point can be found reliably.
                self._break_off = f"it breaks off after frame {self.frames_decoded} ({_reason(e)})"
                if self._frames:
                    self._flush_decoder()
                break
            self._saw(packet)
            if self._past_slice(packet):
                break
            if packet.stream.index == video_index:
                for frame in self._decode_packet(packet) if self._frames else ():
                    self._deliver(frame)
            elif packet.stream.index in self._copy and packet.dts is not None:
                self._put(packet)  # (dts-less packets are the demuxer's end-of-stream markers)
        self.damage = self._damage_report() if self._frames else None

    def _flush_decoder(self) -> None:
        # The demuxer ended without its end-of-stream packet: drain the pictures the decoder still holds.
        with contextlib.suppress(av.error.FFmpegError):
            for frame in self._decoder.decode(None):
                self._deliver(frame)

    def _past_slice(self, packet: av.Packet) -> bool:
        """Whether reading can stop here: a slice's last frame is out and ``packet`` lies well past its end
        (other streams' packets lag or lead the video's by up to a second or so in most files)."""
        if not self._video_done or self.cut is None or self.cut.end is None:
            return False
        if packet.dts is None or not packet.time_base:
            return False
        return packet.dts * packet.time_base > self.cut.end + _SLICE_READ_ON_S

    def _damage_report(self) -> str | None:
        """One line saying what was wrong with the input, or None for a clean one (for a slice, a file that
        ends early is not checked: the slice is short by design)."""
        parts = []
        if self._break_off:
            parts.append(self._break_off)
        if self._first_skip is not None:
            after, reason = self._first_skip
            skipped = f"{self.packets_skipped} damaged video packet(s) skipped"
            parts.append(f"{skipped} (the first after frame {after}: {reason})")
        if self.frames_concealed:
            parts.append(f"{self.frames_concealed} frame(s) decoded with errors concealed by the decoder")
        total = self.info.frames_total
        # Edit lists may legitimately drop a frame or two from the container's count; more is a truncation.
        if self.time_range is not None:
            pass  # a slice is short by design: nothing to compare its frame count with
        elif self.info.frames_exact and total and self.frames_decoded < total - max(2, total // 100):
            hint = "" if parts else " (truncated?)"
            parts.append(f"{self.frames_decoded} of {total} frames could be decoded{hint}")
        elif not self.info.frames_exact:
            parts.extend(self._short_of_duration(bool(parts)))
        return f"the input is damaged: {'; '.join(parts)}" if parts else None

    def _short_of_duration(self, explained: bool) -> list[str]:
        """Without a frame count, the stream's (or else the container's) duration says whether the file
        ends early: a cut-off Matroska or WebM file decodes cleanly up to its cut."""
        end = expected_end(self._stream, self._container)
        if end is None or self._last_pts is None or not self.info.average_rate:
            return []
        video_end = (self._last_pts + self._last_duration) * self.info.time_base
        reached = video_end if end[1] else Fraction(self._file_end)
        found = ends_early(end, reached, 1 / self.info.average_rate)
        if found is None:
            return []
        frames = f"{self.frames_decoded} of about {self.info.frames_total} frames could be decoded"
        return [f"{frames} ({found}{'' if explained else '; truncated?'})"]

    # -- consuming (caller's thread) -------------------------------------------------------------------------

    def items(self) -> Iterator[DecodedFrame | av.Packet]:
        """Yield frames in presentation order interleaved with packets of copied streams, in file order.

        Ends when the input ends (check ``damage``) or ``stop`` is set; re-raises unexpected reader errors.
        """
        if self._thread is None:
            raise RuntimeError("VideoReader.items() before start()")
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if self.stop.is_set() or (not self._thread.is_alive() and self._queue.empty()):
                    return
                continue
            if isinstance(item, _End):
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop the thread (if any) and close the file. Safe to call more than once.

        Call it only after the packets handed out have been muxed: they refer to this file's streams.
        """
        if self._thread is not None and self._thread.is_alive():
            self.stop.set()
            self._thread.join(timeout=10)
            if self._thread.is_alive():  # stuck inside FFmpeg: closing under it would crash, leave it to exit
                return
        if not self._closed:
            self._closed = True
            self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Stopped(Exception):
    """Raised inside the reader thread to unwind when the pipeline's stop event is set."""


def _may_reach(item: DecodedFrame | av.Packet, begin: Fraction) -> bool:
    """Whether a read-ahead item can matter to a slice starting at ``begin`` (source seconds): frames are
    already filtered; a packet is kept unless it stops sounding (or showing) before the slice begins."""
    if isinstance(item, DecodedFrame) or item.pts is None or not item.time_base:
        return True
    return (item.pts + (item.duration or 0)) * item.time_base > begin


def _drained(decoder: VideoCodecContext) -> list[av.VideoFrame]:
    """The pictures a decoder still holds at the end of its input."""
    with contextlib.suppress(av.error.FFmpegError):
        return list(decoder.decode(None))
    return []


def _field_order(stream: av.video.stream.VideoStream, first: av.VideoFrame) -> int:
    """The stream's AVFieldOrder as its header or decoder says it; an interlaced first picture with no
    order said is taken as top field first (the usual order of HD interlaced video)."""
    order = int(stream.codec_context.field_order or 0) if stream.codec_context is not None else 0
    if order <= 1 and first.interlaced_frame:
        return 2
    return order


def _bit_depth(frame: av.VideoFrame) -> int:
    return max((c.bits for c in frame.format.components), default=8)


def _reason(e: BaseException) -> str:
    """A short reason from an FFmpeg/OS error (its strerror), without the file name repeated."""
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).rstrip(".")
