"""Colour conversion of video frames, both ways: decoded YUV/RGB frames to RGB arrays for the model, and the
model's RGB arrays back to the encoder's pixel format, without bias and the same on every run.

Decoding: swscale's direct path from 4:2:0/4:2:2 to packed RGB truncates: measured on this FFmpeg, every
8-bit round trip darkened pictures by about 1.2 levels on average (and its accurate-rounding flags corrupt
NV12 and 10-bit 4:2:0 outright). Upsampling chroma to 16-bit 4:4:4 first, then converting, is unbiased (mean
error under 0.1 level) for every YUV format tried, for ~7 ms per 720p frame. So never call
``frame.to_ndarray(format="rgb24")`` on a decoded frame: use :func:`to_rgb_array` or :func:`to_rgb_u8`.

Encoding: RGB -> YUV with the input's matrix and range and accurate rounding (measured unbiased, mean error
~0.01 level, to 8- and 10-bit YUV); full-range gray from a weighted sum in numpy (see :func:`_to_gray`).
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import Interpolation

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


# -- decoded frame -> RGB array ------------------------------------------------------------------------------


def to_rgb_array(frame: av.VideoFrame, array_format: str) -> np.ndarray:
    """HxWx3 RGB (``rgb24`` -> uint8, ``rgb48le`` -> uint16) from a decoded frame, without colour bias (see
    the module docstring), identical on every call."""
    fmt = frame.format
    if not fmt.is_rgb and not fmt.has_palette and len(fmt.components) >= 3:
        frame = frame.reformat(format="yuv444p16le", threads=SWS_THREADS)
    return frame.to_ndarray(format=array_format, threads=SWS_THREADS)


def to_rgb_u8(frame: av.VideoFrame) -> np.ndarray:
    """HxWx3 uint8 RGB from a decoded frame of any depth (deeper ones rounded to 8 bits), without bias."""
    return to_rgb_array(frame, "rgb24")


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


def from_rgb_array(rgb: np.ndarray, pix_fmt: str, colorspace: int, color_range: int) -> av.VideoFrame:
    """A frame in ``pix_fmt`` from HxWx3 uint8/uint16 RGB, converted with the input's ``colorspace`` matrix
    (AVColorSpace) and ``color_range`` (AVColorRange, 0 unspecified) so colours read back as decoded."""
    gray_dtype = _GRAY_FORMATS.get(pix_fmt)
    if gray_dtype is not None and color_range == 2:
        frame = av.VideoFrame.from_ndarray(_to_gray(rgb, colorspace, gray_dtype), format=pix_fmt)
        frame.color_range = 2
        return frame
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
