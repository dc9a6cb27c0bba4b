"""Encode frames and remux copied packets in a background thread, fed through a bounded queue.

The output keeps the input's size, time base and every frame's pts (so variable frame rate survives), its
colour tags and display matrix (so it plays with the same colours and orientation), and its audio and subtitle
streams as they were: packets are copied into streams made from the input streams' templates, never
re-encoded. A stream the output container cannot hold is skipped with a note in :attr:`VideoWriter.notes`.

The container is always closed, also on error; after :meth:`VideoWriter.abort` the encoder is not flushed (the
caller deletes the file anyway, and flushing a long look-ahead would only delay Ctrl-C).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import av.container
import av.error
import av.stream
import av.video.stream
import numpy as np

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError, OutputError
from deblurtool.media.colour import from_rgb_array, output_color_range
from deblurtool.media.video_reader import VideoInfo

_POLL_S = 0.1

# Encoders that take a constant-quality ``crf`` option, with its largest value.
_CRF_MAX = {"libx264": 51, "libx264rgb": 51, "libx265": 51, "libvpx": 63, "libvpx-vp9": 63, "libsvtav1": 63}


@dataclass(frozen=True)
class _Frame:
    rgb: np.ndarray
    pts: int


class _End:
    """Queue sentinel: no more input; flush the encoder and close."""


def _video_formats(codec_name: str) -> list[str]:
    try:
        codec = av.codec.Codec(codec_name, "w")
    except (av.error.FFmpegError, ValueError):
        raise DeblurError(f"--codec {codec_name!r} is not an encoder this FFmpeg build has") from None
    if codec.type != "video":
        raise DeblurError(f"--codec {codec_name!r} is a {codec.type} encoder, not a video one")
    return [f.name for f in codec.video_formats or ()]


def _fits(pix_fmt: str, width: int, height: int) -> bool:
    """Chroma-subsampled formats need even sizes (x264 refuses odd ones)."""
    fmt = av.VideoFormat(pix_fmt, width, height)
    subsampled = any(c.width != width or c.height != height for c in fmt.components[1:] if not c.is_alpha)
    return not (subsampled and (width % 2 or height % 2))


def choose_pix_fmt(codec_name: str, requested: str | None, info: VideoInfo) -> str:
    """The encoder pixel format: ``requested`` if given (must be supported); else the input's when the encoder
    has it; else, for a deeper-than-8-bit input, a 10-bit 4:2:0 format when available (so precision is not
    thrown away silently); else yuv420p; odd frame sizes avoid subsampled formats (4:4:4 instead)."""
    formats = _video_formats(codec_name)
    w, h = info.width, info.height
    if requested is not None:
        try:
            av.VideoFormat(requested)
        except ValueError:
            raise DeblurError(f"--pix-fmt {requested!r} is not a pixel format FFmpeg knows") from None
        if formats and requested not in formats:
            raise DeblurError(
                f"--pix-fmt {requested} is not supported by {codec_name} (it takes: {', '.join(formats)})"
            )
        if not _fits(requested, w, h):
            raise DeblurError(f"--pix-fmt {requested} needs an even frame size, the input is {w}x{h}")
        return requested
    if not formats:  # the encoder did not say; let FFmpeg pick from what we hand it
        return info.pix_fmt
    wanted = [info.pix_fmt]
    if info.bit_depth > 8:
        wanted += ["yuv420p10le", "yuv444p10le"]
    wanted += ["yuv420p", "yuv444p", *formats]
    for name in wanted:
        if name in formats and _fits(name, w, h):
            return name
    raise DeblurError(f"{codec_name} has no pixel format for a {w}x{h} frame (try --codec ffv1)")


class VideoWriter:
    """Open ``path`` for writing and add its streams; :meth:`start` the encode thread; :meth:`put_frame` /
    :meth:`put_packet` in input order; then :meth:`finish` (normal end) or :meth:`abort` (error, Ctrl-C).

    ``side_streams`` are the input's other streams: audio and subtitles whose codec the output container
    accepts are copied (see :attr:`copied_indices`); the rest are skipped with a line in :attr:`notes`.
    Errors raised by the thread surface from the next put or from :meth:`finish` as :class:`OutputError`.
    Messages name ``shown_path`` (default ``path``): the final name, when ``path`` is a hidden temporary one.
    """

    def __init__(
        self,
        path: Path,
        info: VideoInfo,
        encode: EncodeConfig,
        *,
        side_streams: Sequence[av.stream.Stream] = (),
        queue_size: int = 8,
        shown_path: Path | None = None,
    ) -> None:
        self.path = path
        self.shown_path = shown_path if shown_path is not None else path
        self.info = info
        self.notes: list[str] = []
        self.frames_written = 0
        self._error: BaseException | None = None
        self._aborted = threading.Event()
        self._queue: queue.Queue[_Frame | av.Packet | _End] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._closed = False
        self.pix_fmt = choose_pix_fmt(encode.codec, encode.pix_fmt, info)
        self.color_range = output_color_range(self.pix_fmt, info.color_range)
        try:
            self._container = av.open(str(path), "w")
        except (av.error.FFmpegError, ValueError, OSError) as e:
            raise OutputError(
                f"cannot write a video here ({_reason(e)}; use .mp4, .mkv or .mov)", self.shown_path
            ) from None
        try:
            self._stream = self._add_video_stream(encode)
            self._out_streams = self._add_side_streams(side_streams)
        except BaseException:
            self._close_container()
            raise

    @property
    def copied_indices(self) -> frozenset[int]:
        """Indices (in the input) of the streams whose packets this writer copies."""
        return frozenset(self._out_streams)

    def _add_video_stream(self, encode: EncodeConfig) -> av.video.stream.VideoStream:
        info = self.info
        options: dict[str, str] = {}
        crf_max = _CRF_MAX.get(encode.codec)
        if crf_max is not None:
            if encode.crf > crf_max:
                raise DeblurError(f"--crf for {encode.codec} must be at most {crf_max}, got {encode.crf}")
            options["crf"] = str(encode.crf)
            if encode.codec.startswith("libvpx"):
                options["b"] = "0"  # constant quality, not a bitrate cap
        if encode.codec == "libx265":
            options["x265-params"] = "log-level=error"  # x265 prints info lines to stderr on its own
        try:
            stream = self._container.add_stream(encode.codec, rate=info.average_rate, options=options)
        except (av.error.FFmpegError, ValueError) as e:
            refusal = f"cannot use --codec {encode.codec} in {self.path.suffix} files ({_reason(e)})"
            raise OutputError(refusal, self.shown_path) from None
        if not isinstance(stream, av.video.stream.VideoStream):
            raise DeblurError(f"--codec {encode.codec} is not a video encoder")
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, self.pix_fmt
        # The input's time base: every pts is written as it was read (variable frame rate survives).
        stream.time_base = info.time_base
        stream.codec_context.time_base = info.time_base
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
        return stream

    def _add_side_streams(self, side_streams: Sequence[av.stream.Stream]) -> dict[int, av.stream.Stream]:
        out: dict[int, av.stream.Stream] = {}
        supported = self._container.supported_codecs
        for s in side_streams:
            name = s.codec_context.name if s.codec_context is not None else "unknown"
            what = f"{s.type} stream #{s.index} ({name})"
            if s.type not in ("audio", "subtitle") or s.disposition & av.stream.Disposition.attached_pic:
                self.notes.append(f"note: {what} not copied (only audio and subtitles are)")
            elif name not in supported:
                self.notes.append(f"note: {what} not copied: {self.path.suffix} files cannot hold {name}")
            else:
                try:
                    out[s.index] = self._container.add_stream_from_template(s)
                except (av.error.FFmpegError, ValueError) as e:
                    self.notes.append(f"note: {what} not copied ({_reason(e)})")
        return out

    # -- producer side (caller's thread) ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("VideoWriter.start() called twice")
        self._thread = threading.Thread(target=self._run, name="deblurtool-encode", daemon=True)
        self._thread.start()

    def _put(self, item: _Frame | av.Packet | _End) -> None:
        while True:
            self._raise_if_failed()
            if self._thread is None or not self._thread.is_alive():
                raise RuntimeError("VideoWriter is not running")
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def put_frame(self, rgb: np.ndarray, pts: int) -> None:
        """Queue one HxWx3 uint8/uint16 RGB frame (the input's size) with its pts in the input time base."""
        if rgb.shape != (self.info.height, self.info.width, 3) or rgb.dtype not in (np.uint8, np.uint16):
            raise DeblurError(
                f"the model returned a {rgb.dtype} array of shape {rgb.shape}, expected "
                f"({self.info.height}, {self.info.width}, 3) uint8 or uint16"
            )
        self._put(_Frame(np.ascontiguousarray(rgb), pts))

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
                    self._container.mux(self._stream.encode(None))
                    break
                if isinstance(item, _Frame):
                    self._container.mux(self._stream.encode(self._to_video_frame(item)))
                    self.frames_written += 1
                elif item.dts is not None:  # dts-less packets are demuxer flush markers, not data
                    item.stream = self._out_streams[item.stream.index]
                    self._container.mux(item)
        except BaseException as e:
            self._error = e
        finally:
            try:
                self._close_container()
            except BaseException as e:
                self._error = self._error or e

    def _to_video_frame(self, item: _Frame) -> av.VideoFrame:
        frame = from_rgb_array(item.rgb, self.pix_fmt, self.info.colorspace, self.color_range)
        frame.pts = item.pts
        frame.time_base = self.info.time_base
        return frame

    def _close_container(self) -> None:
        if not self._closed:
            self._closed = True
            self._container.close()


def _reason(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).rstrip(".")
