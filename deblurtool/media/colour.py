"""Colour conversion of video frames, both ways: decoded YUV/RGB frames to RGB arrays for the model, and the
model's RGB arrays back to the encoder's pixel format, without bias and the same on every run.

YUV (planar, semi-planar and packed, 8 to 16 bits): converted by :mod:`.yuv` with the stream's own matrix
(BT.601, BT.709, BT.2020, ...), range (limited or full) and chroma siting, in float32, rounded once to
nearest. Its chroma upsampling (decode) and least-squares downsampling (encode) are each other's inverse,
so a pass through the tool does not blur colour edges: a decode -> encode round trip returns the chroma it
started from, up to RGB rounding. swscale only moves samples here (``nv12`` <-> ``yuv420p`` and the like).
Its own YUV -> RGB paths truncate (pictures come out darker) and its 4:2:0 resampling blurs chroma on
every round trip, which is why :func:`to_rgb_array` and :func:`from_rgb_array` do not use them.

The chroma siting is not exposed by PyAV, so it is taken from the codec's convention
(:func:`chroma_siting`): JPEG's centred chroma for JPEG-family codecs and MPEG-1, DV's for PAL DV, and
MPEG-2's left siting (H.264, HEVC, VP9, AV1 and the rest) otherwise, which is also what players assume
for an untagged output. Other YUV formats (none common) go through swscale via 16-bit 4:4:4.

Full-range gray is written from a weighted sum in numpy (see :func:`_to_gray`); other gray, RGB and
palette formats go through swscale, which is exact for them.

Alpha (transparency) is not picture content: it is read and written as stored, never through a colour
matrix. A planar YUVA format's alpha plane is copied as is (rescaled only between bit depths); packed and
RGB formats (rgba, argb, gbrap, ...) go through swscale, which copies alpha between them unchanged.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import Interpolation

from deblurtool.media.yuv import (
    SITING_CENTER,
    SITING_LEFT,
    Planar,
    _read_plane,
    _write_plane,
    planar,
    planar_twin,
    plane_dtype,
    rgb_to_yuv,
    write_planes,
    yuv_to_rgb,
)

# swscale threads per conversion: with its default slice threads, the same decoded 17x9 4:2:0 frame converted
# 1000 times gave 3 different results (rows at slice boundaries varied); one thread was always identical,
# and no slower here (5.0 against 7.6 ms per 720p frame on 2 cores).
SWS_THREADS = 1

# FFmpeg AVColorSpace -> swscale colour matrix (PyAV's ``Colorspace`` uses swscale's SWS_CS_* numbering).
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}

_ACCURATE = Interpolation.BILINEAR | Interpolation.ACCURATE_RND

# Full-range gray written from numpy: swscale's RGB -> gray16le came out up to 252/65535 too bright
# (measured on a ramp), and a weighted sum is exact for gray content (equal channels).
_GRAY_FORMATS: dict[str, type[np.unsignedinteger]] = {"gray": np.uint8, "gray16le": np.uint16}


# Codecs whose 4:2:0 chroma sits centred between the luma samples (JPEG's siting), not MPEG-2's "left".
_CENTERED = frozenset({"mjpeg", "mjpegb", "jpegls", "ljpeg", "smvjpeg", "mpeg1video", "h261", "h263"})


def chroma_siting(codec_name: str | None, pix_fmt: str) -> int:
    """The AVChromaLocation taken for a stream of ``codec_name`` in ``pix_fmt``: its codec's convention
    (PyAV does not expose a stream's own tag), which is also what a player assumes when it is untagged."""
    if codec_name in _CENTERED or pix_fmt.startswith("yuvj"):
        return SITING_CENTER
    if codec_name == "dvvideo" and pix_fmt.startswith("yuv420p"):
        return 3  # PAL DV: co-sited with the top-left luma sample
    return SITING_LEFT


def _full_range(pix_fmt: str, color_range: int) -> bool:
    """Whether YUV samples use the full range: tagged so (AVColorRange 2), or a JPEG ``yuvj`` format;
    untagged YUV is limited range, as decoders and swscale take it."""
    return color_range == 2 or pix_fmt.startswith("yuvj")


def _as_planar(pix_fmt: str) -> Planar | None:
    """The planar YUV format :mod:`.yuv` converts ``pix_fmt`` through (itself, or its twin that only moves
    samples), or None for formats that are not YUV or have no twin."""
    native = planar(pix_fmt)
    if native is None:
        twin = planar_twin(pix_fmt)
        native = planar(twin) if twin is not None else None
    return native


# -- decoded frame -> RGB array ------------------------------------------------------------------------------


def to_rgb_array(frame: av.VideoFrame, array_format: str, siting: int | None = None) -> np.ndarray:
    """HxWx3 RGB (``rgb24`` -> uint8, ``rgb48le`` -> uint16) from a decoded frame, with its matrix, range
    and the chroma ``siting`` (AVChromaLocation; None: :func:`chroma_siting` of the format alone), exact
    and identical on every call (see the module docstring)."""
    fmt = frame.format
    if not fmt.is_rgb and not fmt.has_palette and len(fmt.components) >= 3:
        native = _as_planar(fmt.name)
        if native is not None:
            if native.name != fmt.name:
                frame = frame.reformat(format=native.name, threads=SWS_THREADS)  # moves samples only
            return yuv_to_rgb(
                frame,
                native,
                int(frame.colorspace),
                _full_range(fmt.name, int(frame.color_range)),
                siting if siting is not None else chroma_siting(None, fmt.name),
                np.uint8 if array_format == "rgb24" else np.uint16,
            )
        frame = frame.reformat(format="yuv444p16le", threads=SWS_THREADS)
    return frame.to_ndarray(format=array_format, threads=SWS_THREADS)


def to_rgb_u8(frame: av.VideoFrame) -> np.ndarray:
    """HxWx3 uint8 RGB from a decoded frame of any depth (deeper ones rounded to 8 bits), without bias."""
    return to_rgb_array(frame, "rgb24")


# -- alpha ---------------------------------------------------------------------------------------------------


def has_alpha(pix_fmt: str) -> bool:
    """Whether the pixel format ``pix_fmt`` stores an alpha channel."""
    return any(c.is_alpha for c in av.VideoFormat(pix_fmt).components)


def _rescale(values: np.ndarray, from_max: int, to_max: int) -> np.ndarray:
    """Integer samples in 0..``from_max`` to 0..``to_max``, rounded to nearest (exact for equal ranges)."""
    if from_max == to_max:
        return values
    wide = values.astype(np.uint64)
    return ((wide * (2 * to_max) + from_max) // (2 * from_max)).astype(
        np.uint16 if to_max > 255 else np.uint8
    )


def alpha_array(frame: av.VideoFrame, dtype: type[np.unsignedinteger]) -> np.ndarray | None:
    """The HxW alpha of a decoded frame (None if its format has none), as uint8, or uint16 scaled to the full
    0..65535 range as :func:`to_rgb_array` scales deep colour; read as stored (see the module docstring)."""
    fmt = frame.format
    alpha = next((c for c in fmt.components if c.is_alpha), None)
    if alpha is None:
        return None
    top = int(np.iinfo(dtype).max)
    if fmt.is_planar and not fmt.is_rgb:
        stored = _read_plane(frame.planes[alpha.plane], plane_dtype(alpha.bits, fmt.name.endswith("be")))
        return np.ascontiguousarray(_rescale(stored, (1 << alpha.bits) - 1, top))
    # Packed or RGB: reordered by swscale at the format's own depth (exact), rescaled here.
    deep = alpha.bits > 8
    packed = frame.to_ndarray(format="rgba64le" if deep else "rgba", threads=SWS_THREADS)[:, :, 3]
    return np.ascontiguousarray(_rescale(packed, 65535 if deep else 255, top))


def _with_alpha(
    rgb: np.ndarray, alpha: np.ndarray, pix_fmt: str, colorspace: int, color_range: int, siting: int | None
) -> av.VideoFrame:
    fmt = av.VideoFormat(pix_fmt)
    top = int(np.iinfo(rgb.dtype).max)
    alpha = _rescale(alpha, int(np.iinfo(alpha.dtype).max), top)
    if fmt.is_rgb or not fmt.is_planar:
        # Rescaled here to the format's depth (swscale does not round alpha between depths), then
        # reordered by swscale at that depth, which is exact.
        depth = 65535 if max(c.bits for c in fmt.components) > 8 else 255
        rgba = np.dstack([_rescale(rgb, top, depth), _rescale(alpha, top, depth)])
        frame = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(rgba), format="rgba64le" if depth > 255 else "rgba"
        )
        return frame if frame.format.name == pix_fmt else frame.reformat(format=pix_fmt, threads=SWS_THREADS)
    # YUVA: the colour planes converted exactly as without alpha, the alpha plane written as it is.
    base = from_rgb_array(rgb, pix_fmt.replace("yuva", "yuv", 1), colorspace, color_range, siting=siting)
    frame = av.VideoFrame(rgb.shape[1], rgb.shape[0], pix_fmt)
    for component in fmt.components:
        dtype = plane_dtype(component.bits, fmt.name.endswith("be"))
        plane = frame.planes[component.plane]
        if component.is_alpha:
            _write_plane(plane, _rescale(alpha, top, (1 << component.bits) - 1), dtype)
        else:
            _write_plane(plane, _read_plane(base.planes[component.plane], dtype), dtype)
    frame.color_range = base.color_range
    frame.colorspace = base.colorspace
    return frame


# -- RGB array -> frame for the encoder ----------------------------------------------------------------------


def output_color_range(pix_fmt: str, input_range: int) -> int:
    """The AVColorRange to convert to and tag: the input's, but 2 (full) for an untagged input made gray.

    swscale produces gray samples in full range, while decoders of YUV codecs read an untagged stream as
    limited range (FFmpeg's H.264 decoder returns monochrome as yuv420p): untagged, a gray video written by
    libx264 came back with its contrast stretched by 255/219 (measured: +3.4 levels on average, +14 at most).
    """
    if not input_range and pix_fmt.startswith("gray"):
        return 2
    return input_range


def _to_gray(rgb: np.ndarray, colorspace: int, dtype: type[np.unsignedinteger]) -> np.ndarray:
    """HxWx3 uint8/uint16 RGB -> HxW full-range luma of ``dtype`` (BT.709 weights for a BT.709 input, else
    BT.601, as swscale would use)."""
    weights = (0.2126, 0.7152, 0.0722) if colorspace == 1 else (0.299, 0.587, 0.114)
    scale = np.iinfo(dtype).max / np.iinfo(rgb.dtype).max
    luma = rgb.astype(np.float32) @ np.asarray(weights, np.float32) * np.float32(scale)
    return np.clip(np.rint(luma), 0, np.iinfo(dtype).max).astype(dtype)


def from_rgb_array(
    rgb: np.ndarray,
    pix_fmt: str,
    colorspace: int,
    color_range: int,
    alpha: np.ndarray | None = None,
    *,
    siting: int | None = None,
) -> av.VideoFrame:
    """A frame in ``pix_fmt`` from HxWx3 uint8/uint16 RGB, converted with the input's ``colorspace`` matrix
    (AVColorSpace) and ``color_range`` (AVColorRange, 0 unspecified) so colours read back as decoded, its
    chroma placed for the ``siting`` (AVChromaLocation) its decoder will assume (None: :func:`chroma_siting`
    of the format alone). ``alpha`` (HxW uint8/uint16) is written as stored where ``pix_fmt`` has an alpha
    channel (a format with one, given none, is written opaque)."""
    if has_alpha(pix_fmt) and (alpha is not None or planar(pix_fmt) is not None):
        if alpha is None:
            alpha = np.full(rgb.shape[:2], np.iinfo(rgb.dtype).max, rgb.dtype)
        return _with_alpha(rgb, alpha, pix_fmt, colorspace, color_range, siting)
    gray_dtype = _GRAY_FORMATS.get(pix_fmt)
    if gray_dtype is not None and color_range == 2:
        frame = av.VideoFrame.from_ndarray(_to_gray(rgb, colorspace, gray_dtype), format=pix_fmt)
        frame.color_range = 2
        return frame
    native = _as_planar(pix_fmt)
    if native is not None:
        return _from_planes(rgb, pix_fmt, native, colorspace, color_range, siting)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24" if rgb.dtype == np.uint8 else "rgb48le")
    if av.VideoFormat(pix_fmt).is_rgb:
        return frame
    return frame.reformat(
        format=pix_fmt,
        dst_colorspace=_SWS_MATRIX.get(colorspace),
        dst_color_range=color_range or None,
        interpolation=_ACCURATE,
        threads=SWS_THREADS,
    )


def _from_planes(
    rgb: np.ndarray, pix_fmt: str, native: Planar, colorspace: int, color_range: int, siting: int | None
) -> av.VideoFrame:
    """``rgb`` converted by :mod:`.yuv` into ``native``, then (if ``pix_fmt`` is its twin) repacked."""
    full = _full_range(pix_fmt, color_range)
    planes = rgb_to_yuv(
        rgb, native, colorspace, full, siting if siting is not None else chroma_siting(None, pix_fmt)
    )
    frame = av.VideoFrame(rgb.shape[1], rgb.shape[0], native.name)
    write_planes(frame, planes, native)
    if color_range:
        frame.color_range = color_range
    if colorspace in _SWS_MATRIX:
        frame.colorspace = colorspace
    if native.name != pix_fmt:
        frame = frame.reformat(format=pix_fmt, threads=SWS_THREADS)  # moves samples only
    return frame
