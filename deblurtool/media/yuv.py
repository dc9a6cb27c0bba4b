"""Exact YUV <-> RGB for planar YUV pictures: the stream's matrix (BT.601, BT.709, BT.2020, ...), range
(limited or full) and chroma siting, computed in float32 and rounded once, to nearest.

Chroma: decoding upsamples each subsampled chroma plane linearly, from where its samples sit (the siting:
MPEG-2's "left" for H.264, HEVC and most codecs, JPEG's "center" for JPEG). Encoding does the inverse: it
keeps the subsampled chroma that, upsampled the same way, comes closest (least squares) to the picture's
full-resolution chroma. So a decode -> encode round trip gives back the chroma it started from, up to the
rounding of the RGB values and where RGB had to be clipped; a plain average or a smoothing filter would
blur every chroma edge once more on each pass through the tool.

Each axis is done separately (the 2-D least-squares problem separates): along an axis, upsampling is a
sparse matrix ``U`` (each output sample mixes at most two neighbouring chroma samples, the edges clamped),
and the encoder's chroma is ``(U^T U)^-1 U^T x``, where ``U^T U`` is tridiagonal (solved exactly, by
elimination, vectorised over the other axis).

Only the arithmetic lives here; :mod:`.colour` decides which frames take this path.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import av
import av.video.plane
import cv2
import numpy as np

# AVChromaLocation -> (x, y): where a chroma sample sits within the block of luma samples it covers, from 0
# (with the first luma sample) to 1 (with the last); 0.5 is the middle.
_SITING = {1: (0.0, 0.5), 2: (0.5, 0.5), 3: (0.0, 0.0), 4: (0.5, 0.0), 5: (0.0, 1.0), 6: (0.5, 1.0)}
SITING_LEFT = 1  # MPEG-2, H.264, HEVC, VP9, AV1: the default when a stream does not say
SITING_CENTER = 2  # JPEG / MJPEG, MPEG-1

# AVColorSpace -> (Kr, Kb) luma weights; anything else (unspecified, RGB, BT.601) is BT.601, as swscale does.
_WEIGHTS = {
    1: (0.2126, 0.0722),  # BT.709
    4: (0.30, 0.11),  # FCC
    7: (0.212, 0.087),  # SMPTE 240M
    9: (0.2627, 0.0593),  # BT.2020 (non-constant luminance)
    10: (0.2627, 0.0593),  # BT.2020 constant luminance: converted as non-constant, as swscale does
}
_BT601 = (0.299, 0.114)

# (log2 chroma width, log2 chroma height) -> the subsampling in a planar format's name
_SUBSAMPLING = {(0, 0): "444", (1, 0): "422", (1, 1): "420", (2, 0): "411", (2, 1): "410", (0, 1): "440"}


def luma_weights(colorspace: int) -> tuple[float, float, float]:
    """(Kr, Kg, Kb) of the AVColorSpace ``colorspace`` (BT.601 when unspecified, as swscale assumes)."""
    kr, kb = _WEIGHTS.get(colorspace, _BT601)
    return kr, 1.0 - kr - kb, kb


# -- formats ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planar:
    """A planar YUV format this module converts: Y, U, V on planes 0, 1, 2 (alpha, if any, on 3), ``bits``
    per sample (8-16, little or ``big`` endian), chroma ``log2_w`` / ``log2_h`` times smaller."""

    name: str
    bits: int
    log2_w: int
    log2_h: int
    big: bool

    @property
    def dtype(self) -> np.dtype:
        return plane_dtype(self.bits, self.big)


def plane_dtype(bits: int, big: bool = False) -> np.dtype:
    """The numpy type of one stored sample of ``bits`` bits."""
    if bits <= 8:
        return np.dtype(np.uint8)
    return np.dtype(">u2" if big else "<u2")


def _log2(full: int, part: int) -> int:
    return (full // part).bit_length() - 1


@functools.cache
def planar(pix_fmt: str) -> Planar | None:
    """``pix_fmt`` as a :class:`Planar` format, or None if it is not one (RGB, gray, semi-planar or packed
    YUV, palette)."""
    fmt = av.VideoFormat(pix_fmt)
    parts = fmt.components
    if fmt.is_rgb or len(parts) < 3 or [c.plane for c in parts[:3]] != [0, 1, 2]:
        return None
    bits = {c.bits for c in parts[:3]}
    if len(bits) != 1 or not 8 <= min(bits) <= 16 or "yuv" not in pix_fmt:
        return None
    return Planar(pix_fmt, min(bits), _log2(1024, fmt.chroma_width(1024)),
                  _log2(1024, fmt.chroma_height(1024)), pix_fmt.endswith("be"))  # fmt: skip


@functools.cache
def planar_twin(pix_fmt: str) -> str | None:
    """The planar YUV format with ``pix_fmt``'s subsampling and depth (``nv12`` -> ``yuv420p``, ``p010le`` ->
    ``yuv420p10le``, ``yuyv422`` -> ``yuv422p``): converting between the two only moves samples. None when
    ``pix_fmt`` is no YUV format or has no such twin."""
    fmt = av.VideoFormat(pix_fmt)
    parts = fmt.components
    if fmt.is_rgb or fmt.has_palette or len(parts) < 3 or pix_fmt.startswith("xyz"):
        return None
    sub = _SUBSAMPLING.get((_log2(1024, fmt.chroma_width(1024)), _log2(1024, fmt.chroma_height(1024))))
    bits = max(c.bits for c in parts[:3])
    if sub is None:
        return None
    name = f"yuv{sub}p" + ("" if bits <= 8 else f"{bits}le")
    try:
        av.VideoFormat(name)
    except ValueError:
        return None
    return name


def _read_plane(plane: av.video.plane.VideoPlane, dtype: np.dtype) -> np.ndarray:
    """A plane's samples as an HxW array (native byte order), without the padding at the end of each line."""
    rows = np.frombuffer(memoryview(plane), dtype=dtype).reshape(plane.height, -1)[:, : plane.width]
    return rows.astype(dtype.newbyteorder("=")) if dtype.itemsize > 1 else rows


def _write_plane(plane: av.video.plane.VideoPlane, values: np.ndarray, dtype: np.dtype) -> None:
    rows = np.zeros((plane.height, plane.line_size // dtype.itemsize), dtype)
    rows[:, : plane.width] = values
    plane.update(rows.tobytes())


# -- range -----------------------------------------------------------------------------------------------


def _levels(bits: int, full: bool) -> tuple[float, float, float, float]:
    """(luma offset, luma scale, chroma offset, chroma scale) of a range in ``bits`` bits (ITU-T H.273):
    limited is 16..235 and 16..240 scaled by 2^(bits-8); full is 0..2^bits-1 around 2^(bits-1)."""
    if full:
        top = float((1 << bits) - 1)
        return 0.0, top, float(1 << (bits - 1)), top
    step = float(1 << (bits - 8))
    return 16 * step, 219 * step, 128 * step, 224 * step


# -- chroma resampling, one axis ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Level:
    """One step of cyclic reduction of a tridiagonal system of ``size`` unknowns: the even-numbered rows
    take ``left`` / ``right`` times their odd neighbours' right-hand sides (which eliminates those
    unknowns); afterwards each odd unknown is its right-hand side less ``odd_left`` / ``odd_right`` times its
    even neighbours' values, times ``odd_inv``."""

    size: int
    left: np.ndarray
    right: np.ndarray
    odd_left: np.ndarray
    odd_right: np.ndarray
    odd_inv: np.ndarray


def _reduction(diag: np.ndarray, off: np.ndarray) -> tuple[list[_Level], float]:
    """The levels of cyclic reduction of the symmetric tridiagonal system (``diag``, ``off`` coupling
    ``j`` and ``j + 1``) and the inverse of the single pivot left at the end. Each level works on every row
    at once, so a solve costs a few array operations per level instead of a loop over the rows."""
    levels = []
    f32 = np.float32
    while len(diag) > 1:
        m = len(diag)
        d_odd = diag[1::2]
        e_pad = np.concatenate([[0.0], off, [0.0]])  # e_pad[j] couples j - 1 and j
        d_pad = np.concatenate([[1.0], diag, [1.0]])  # (the 1s only ever meet a zero coupling)
        evens = np.arange(0, m, 2)
        # Row j (even) uses row j - 1 (odd) with factor e[j-1]/d[j-1] and row j + 1 with e[j]/d[j+1].
        left = e_pad[evens] / d_pad[evens]
        right = e_pad[evens + 1] / d_pad[evens + 2]
        new_diag = diag[evens] - left * e_pad[evens] - right * e_pad[evens + 1]
        new_off = -right[:-1] * e_pad[evens[:-1] + 2]
        odds = np.arange(1, m, 2)
        levels.append(_Level(m, left.astype(f32), right.astype(f32), e_pad[odds].astype(f32),
                             e_pad[odds + 1].astype(f32), (1.0 / d_odd).astype(f32)))  # fmt: skip
        diag, off = new_diag, new_off
    return levels, float(1.0 / diag[0])


@dataclass(frozen=True)
class _Axis:
    """Linear upsampling of ``n_sub`` chroma samples to ``n_full`` along one axis (sample ``i`` of the full
    axis mixes chroma ``lo[i]`` and ``hi[i]`` with weights ``1 - w[i]`` and ``w[i]``), and what its
    least-squares inverse needs: for each chroma sample the full samples it feeds (``src``, ``src_w``,
    padded with weight 0), and the cyclic reduction of the tridiagonal ``U^T U``."""

    lo: np.ndarray
    hi: np.ndarray
    w: np.ndarray
    src: np.ndarray
    src_w: np.ndarray
    levels: list[_Level]
    last_inv: float


@functools.lru_cache(maxsize=32)
def _axis(n_full: int, n_sub: int, log2: int, where: float) -> _Axis:
    factor = 1 << log2
    # Full sample x sits at x; chroma sample j at factor*j + where*(factor-1) (both in luma samples).
    t = (np.arange(n_full, dtype=np.float64) - where * (factor - 1)) / factor
    base = np.floor(t)
    w = t - base
    lo = np.clip(base, 0, n_sub - 1).astype(np.intp)
    hi = np.clip(base + 1, 0, n_sub - 1).astype(np.intp)
    w = np.where(lo == hi, 0.0, w)  # clamped at an edge: one chroma sample, all of the weight
    # U as (row, column, weight) entries, at most two per row.
    rows = np.concatenate([np.arange(n_full), np.arange(n_full)])
    cols = np.concatenate([lo, hi])
    vals = np.concatenate([1.0 - w, w])
    keep = vals != 0
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = np.argsort(cols, kind="stable")
    rows, cols, vals = rows[order], cols[order], vals[order]
    counts = np.bincount(cols, minlength=n_sub)
    slot = np.arange(len(cols)) - np.repeat(np.cumsum(counts) - counts, counts)
    src = np.zeros((n_sub, int(counts.max())), np.intp)
    src_w = np.zeros((n_sub, int(counts.max())), np.float64)
    src[cols, slot] = rows
    src_w[cols, slot] = vals
    # U^T U: the diagonal, and the products of the two weights of rows that mix chroma j and j + 1.
    diag = np.bincount(cols, weights=vals * vals, minlength=n_sub)
    pair = (lo != hi) & (w != 0)
    off = np.bincount(lo[pair], weights=(1.0 - w[pair]) * w[pair], minlength=n_sub)[: n_sub - 1]
    levels, last_inv = _reduction(diag, off)
    f32 = np.float32
    return _Axis(lo, hi, w.astype(f32), src, src_w.astype(f32), levels, last_inv)


def _rows(values: np.ndarray) -> np.ndarray:
    """1-D ``values`` shaped to broadcast along axis 1 of an NxHxW array."""
    return values.reshape(1, -1, 1)


def _up(c: np.ndarray, axis: _Axis) -> np.ndarray:
    """Axis 1 of ``c`` (NxHxW float32) upsampled: the definition of the upsampling, which
    :func:`upsample` computes faster with OpenCV."""
    w = _rows(axis.w)
    out = c[:, axis.lo] * (1 - w)
    out += c[:, axis.hi] * w
    return out


def _down(x: np.ndarray, axis: _Axis) -> np.ndarray:
    """Axis 1 of ``x`` (NxHxW float32) reduced: the chroma whose upsampling is closest to ``x`` (least
    squares): ``U^T x``, then ``U^T U`` solved by cyclic reduction."""
    y = x[:, axis.src[:, 0]] * _rows(axis.src_w[:, 0])
    for k in range(1, axis.src.shape[1]):
        y += x[:, axis.src[:, k]] * _rows(axis.src_w[:, k])
    return _solve(y, axis.levels, axis.last_inv)


def _solve(b: np.ndarray, levels: list[_Level], last_inv: float) -> np.ndarray:
    """The solution, along axis 1, of the system that ``levels`` reduce, for the right-hand sides ``b``."""
    if not levels:
        return b * np.float32(last_inv)
    level, rest = levels[0], levels[1:]
    even, odd = b[:, 0::2], b[:, 1::2]
    n_even, n_odd = even.shape[1], odd.shape[1]
    reduced = even.copy()
    reduced[:, 1:] -= _rows(level.left[1:]) * odd[:, : n_even - 1]
    reduced[:, :n_odd] -= _rows(level.right[:n_odd]) * odd
    x_even = _solve(reduced, rest, last_inv)
    x = np.empty_like(b)
    x[:, 0::2] = x_even
    x_odd = odd - _rows(level.odd_left) * x_even[:, :n_odd]
    n_right = min(n_odd, n_even - 1)
    x_odd[:, :n_right] -= _rows(level.odd_right[:n_right]) * x_even[:, 1 : n_right + 1]
    x_odd *= _rows(level.odd_inv)
    x[:, 1::2] = x_odd
    return x


def _across(x: np.ndarray) -> np.ndarray:
    """NxHxW -> NxWxH, contiguous (so that work along the rows runs along axis 1)."""
    return np.ascontiguousarray(x.transpose(0, 2, 1))


# OpenCV's remapping indexes with 16-bit integers: beyond this size the reference code does the upsampling.
_CV_LIMIT = 32767


def upsample(chroma: np.ndarray, width: int, height: int, fmt: Planar, siting: int) -> np.ndarray:
    """NxHxW (N chroma planes stacked, float32) from their subsampled Nxhxw, linear from ``siting``, the
    edges clamped."""
    where_x, where_y = _SITING.get(siting, _SITING[SITING_LEFT])
    fx, fy = 1 << fmt.log2_w, 1 << fmt.log2_h
    if max(width, height) < _CV_LIMIT:
        # Each output sample's position on the chroma grid: exact in OpenCV's fixed point (1/32 of a
        # sample), as all sitings fall on eighths; bilinear, edges replicated, like _up along each axis.
        to_chroma = np.array([[1 / fx, 0, -where_x * (fx - 1) / fx], [0, 1 / fy, -where_y * (fy - 1) / fy]])
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        planes = [cv2.warpAffine(p, to_chroma, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE)
                  for p in chroma]  # fmt: skip
        return np.stack(planes)
    h_sub, w_sub = chroma.shape[1:]
    if fmt.log2_h:
        chroma = _up(chroma, _axis(height, h_sub, fmt.log2_h, where_y))
    if fmt.log2_w:
        chroma = _up(_across(chroma), _axis(width, w_sub, fmt.log2_w, where_x)).transpose(0, 2, 1)
    return chroma


def downsample(chroma: np.ndarray, w_sub: int, h_sub: int, fmt: Planar, siting: int) -> np.ndarray:
    """Nxhxw from full-resolution NxHxW (float32): the least-squares inverse of :func:`upsample`."""
    where_x, where_y = _SITING.get(siting, _SITING[SITING_LEFT])
    height, width = chroma.shape[1:]
    if fmt.log2_h:
        chroma = _down(chroma, _axis(height, h_sub, fmt.log2_h, where_y))
    if fmt.log2_w:
        chroma = _down(_across(chroma), _axis(width, w_sub, fmt.log2_w, where_x)).transpose(0, 2, 1)
    return chroma


# -- whole pictures --------------------------------------------------------------------------------------


def _to_rgb_matrix(colorspace: int, levels: tuple[float, float, float, float], top: float) -> np.ndarray:
    """3x4: stored (Y, Cb, Cr) samples -> RGB on 0..``top`` (the last column: the offsets)."""
    kr, kg, kb = luma_weights(colorspace)
    y_off, y_scale, c_off, c_scale = levels
    to_norm = np.diag([1 / y_scale, 1 / c_scale, 1 / c_scale])  # stored -> Y' in 0..1, Cb/Cr in -0.5..0.5
    ycc = np.array(
        [
            [1.0, 0.0, 2 * (1 - kr)],
            [1.0, -2 * kb * (1 - kb) / kg, -2 * kr * (1 - kr) / kg],
            [1.0, 2 * (1 - kb), 0.0],
        ]
    )
    linear = top * ycc @ to_norm
    offset = -linear @ np.array([y_off, c_off, c_off])
    return np.hstack([linear, offset[:, None]]).astype(np.float32)


def _to_ycc_matrix(colorspace: int, levels: tuple[float, float, float, float], top: float) -> np.ndarray:
    """3x4: RGB on 0..``top`` -> stored (Y, Cb, Cr) samples (unrounded), the inverse of
    :func:`_to_rgb_matrix`."""
    kr, kg, kb = luma_weights(colorspace)
    y_off, y_scale, c_off, c_scale = levels
    rgb = np.array(
        [
            [kr, kg, kb],
            [-0.5 * kr / (1 - kb), -0.5 * kg / (1 - kb), 0.5],
            [0.5, -0.5 * kg / (1 - kr), -0.5 * kb / (1 - kr)],
        ]
    )
    linear = np.diag([y_scale, c_scale, c_scale]) @ rgb / top
    return np.hstack([linear, np.array([[y_off], [c_off], [c_off]])]).astype(np.float32)


def _round(values: np.ndarray, bits: int) -> np.ndarray:
    """Float samples rounded to the nearest integer in 0..2^``bits``-1 (uint8 up to 8 bits, else uint16)."""
    if values.size < 16:  # cv2 reads an array of up to 4 values as a Scalar: round tiny frames in numpy
        dtype = np.uint8 if bits <= 8 else np.uint16
        return np.clip(np.rint(values), 0, (1 << bits) - 1).astype(dtype)
    flat = np.ascontiguousarray(values).reshape(-1, values.shape[-1])  # (cv2 takes 2-D arrays)
    rounded = cv2.add(flat, 0.0, dtype=cv2.CV_8U if bits <= 8 else cv2.CV_16U)  # rounds and saturates
    if bits not in (8, 16):
        np.minimum(rounded, (1 << bits) - 1, out=rounded)
    return np.asarray(rounded).reshape(values.shape)


def yuv_to_rgb(
    frame: av.VideoFrame, fmt: Planar, colorspace: int, full: bool, siting: int, out_dtype: type
) -> np.ndarray:
    """HxWx3 RGB of ``out_dtype`` (uint8, or uint16 on the full 0..65535 range) from a frame in the planar
    format ``fmt``: ``colorspace`` (AVColorSpace) picks the matrix, ``full`` the range, ``siting``
    (AVChromaLocation) where the chroma samples sit."""
    luma = _read_plane(frame.planes[0], fmt.dtype).astype(np.float32)
    chroma = np.stack([_read_plane(frame.planes[p], fmt.dtype) for p in (1, 2)]).astype(np.float32)
    cb, cr = upsample(chroma, frame.width, frame.height, fmt, siting)
    ycc = cv2.merge([luma, np.ascontiguousarray(cb), np.ascontiguousarray(cr)])
    top = float(np.iinfo(out_dtype).max)
    rgb = cv2.transform(ycc, _to_rgb_matrix(colorspace, _levels(fmt.bits, full), top))
    return _round(rgb, 8 if out_dtype == np.uint8 else 16)


def rgb_to_yuv(
    rgb: np.ndarray, fmt: Planar, colorspace: int, full: bool, siting: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Y, U and V planes (``fmt``'s sample type, native byte order) of HxWx3 uint8/uint16 RGB, the
    inverse of :func:`yuv_to_rgb`."""
    height, width = rgb.shape[:2]
    top = float(np.iinfo(rgb.dtype).max)
    ycc = cv2.transform(rgb.astype(np.float32), _to_ycc_matrix(colorspace, _levels(fmt.bits, full), top))
    luma, cb, cr = cv2.split(ycc)
    w_sub, h_sub = -(-width >> fmt.log2_w), -(-height >> fmt.log2_h)
    # The offsets commute with the least-squares downsampling (each upsampled sample's weights sum to 1).
    chroma = _round(downsample(np.stack([cb, cr]), w_sub, h_sub, fmt, siting), fmt.bits)
    return _round(luma, fmt.bits), chroma[0], chroma[1]


def write_planes(frame: av.VideoFrame, planes: tuple[np.ndarray, ...], fmt: Planar) -> None:
    """Store ``planes`` (native byte order) into ``frame``'s first planes, in ``fmt``'s byte order."""
    for plane, values in zip(frame.planes, planes, strict=False):
        _write_plane(plane, values, fmt.dtype)
