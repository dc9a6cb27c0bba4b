"""What OpenCV neither reports nor keeps about an image file: its resolution (DPI), the quality a lossy JPEG
or WebP was saved at and a JPEG's chroma subsampling (4:4:4, 4:2:2, ...) and colour model (CMYK), whether a
WebP is lossless, and whether a PNG is gray+alpha. Read from the file's own
headers (through Pillow's header parser where it has the field), and written back by patching the few bytes
OpenCV's encoders leave at their defaults, so outputs stay what the inputs were.

Qualities are estimated by comparison with OpenCV's own encoder: a JPEG's luminance quantisation table is
matched against the tables OpenCV writes at each quality 1-100, a lossy WebP's average quantiser index
against the indices libwebp chooses at each quality (on a reference picture). The output is then written at
the quality found, not at a fixed 95 that would make a small web JPEG several times larger, or a lossy WebP
lossless.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

_INCH = 0.0254  # metres


@dataclass(frozen=True)
class FileFacts:
    """``dpi`` (x, y) or None; ``quality`` 1-100 of a lossy JPEG/WebP or None; ``lossless`` for a WebP;
    ``gray_alpha`` for a PNG of colour type 4 (OpenCV reads it as BGRA with equal colour channels);
    ``chroma`` a colour JPEG's subsampling (``"444"``, ``"422"``, ``"420"``, ``"440"``, ``"411"``; None if
    other or not a JPEG); ``cmyk`` for a four-component (CMYK/YCCK) JPEG, which OpenCV reads as BGR."""

    dpi: tuple[float, float] | None = None
    quality: int | None = None
    lossless: bool | None = None
    gray_alpha: bool = False
    chroma: str | None = None
    cmyk: bool = False


def probe(data: bytes) -> FileFacts:
    """The facts of an encoded image (see :class:`FileFacts`); anything unreadable is simply left None."""
    dpi = _pillow_dpi(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return FileFacts(dpi=dpi, gray_alpha=len(data) > 25 and data[25] == 4)
    if data[:2] == b"\xff\xd8":
        table = _jpeg_luma_table(data)
        quality = _nearest_quality(table, _jpeg_reference()) if table else None
        sampling = _jpeg_sampling(data) or []
        chroma = _CHROMA_NAMES.get(sampling[0]) if len(sampling) == 3 else None
        if chroma is not None and any(f != (1, 1) for f in sampling[1:]):
            chroma = None  # chroma sampled finer than 1x1: a layout OpenCV cannot write
        return FileFacts(dpi=dpi, quality=quality, chroma=chroma, cmyk=len(sampling) == 4)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        chunks = dict(_riff_chunks(data))
        if b"VP8L" in chunks:
            return FileFacts(dpi=dpi, lossless=True)
        q = _vp8_mean_quantiser(chunks[b"VP8 "]) if b"VP8 " in chunks else None
        quality = None if q is None else _nearest_quality([q], _webp_reference())
        return FileFacts(dpi=dpi, quality=quality, lossless=False)
    return FileFacts(dpi=dpi)


def _pillow_dpi(data: bytes) -> tuple[float, float] | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            dpi = im.info.get("dpi")
    except Exception:  # Pillow cannot parse it: OpenCV may still decode it, the resolution is just unknown
        return None
    if not dpi or len(dpi) != 2 or not all(float(v) > 0 for v in dpi):
        return None
    return float(dpi[0]), float(dpi[1])


# -- quality estimates ---------------------------------------------------------------------------------------


def _nearest_quality(values: list[int] | list[float], reference: dict[int, list[float]]) -> int | None:
    if not values:
        return None
    return min(reference, key=lambda q: sum(abs(a - b) for a, b in zip(reference[q], values, strict=False)))


def _jpeg_luma_table(data: bytes) -> list[int] | None:
    """The 64 entries of quantisation table 0 (file order) from the first DQT segment that defines it."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker == 0xDA:  # start of scan: the tables come before it
            return None
        if marker == 0xDB:
            seg, i = data[pos + 4 : pos + 2 + length], 0
            while i < len(seg):
                precision, table_id = seg[i] >> 4, seg[i] & 15
                size = 128 if precision else 64
                raw = seg[i + 1 : i + 1 + size]
                if table_id == 0:
                    return list(struct.unpack(">64H", raw)) if precision else list(raw)
                i += 1 + size
        pos += 2 + length
    return None


# A colour JPEG's luma sampling factors (H, V), chroma being 1x1, by the usual name of the subsampling.
_CHROMA_NAMES = {(1, 1): "444", (2, 1): "422", (2, 2): "420", (1, 2): "440", (4, 1): "411"}
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_sampling(data: bytes) -> list[tuple[int, int]] | None:
    """Each component's (horizontal, vertical) sampling factors from the JPEG's frame header, or None."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker == 0xDA:
            return None
        if marker in _SOF_MARKERS:
            count = data[pos + 9] if pos + 9 < len(data) else 0
            fields = data[pos + 10 : pos + 10 + 3 * count]
            if len(fields) < 3 * count:
                return None
            return [(fields[3 * i + 1] >> 4, fields[3 * i + 1] & 15) for i in range(count)]
        pos += 2 + length
    return None


def _reference_picture() -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64]
    smooth = 128 + 60 * np.sin(x / 7.0) * np.cos(y / 9.0)
    return np.clip(smooth[..., None] + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)


@functools.cache
def _jpeg_reference() -> dict[int, list[float]]:
    out = {}
    for q in range(1, 101):
        _, buf = cv2.imencode(".jpg", _reference_picture(), [cv2.IMWRITE_JPEG_QUALITY, q])
        table = _jpeg_luma_table(buf.tobytes())
        if table:
            out[q] = [float(v) for v in table]
    return out


@functools.cache
def _webp_reference() -> dict[int, list[float]]:
    out = {}
    for q in range(1, 101):
        _, buf = cv2.imencode(".webp", _reference_picture(), [cv2.IMWRITE_WEBP_QUALITY, q])
        vp8 = dict(_riff_chunks(buf.tobytes())).get(b"VP8 ")
        mean = _vp8_mean_quantiser(vp8) if vp8 else None
        if mean is not None:
            out[q] = [mean]
    return out


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.append((tag, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return chunks


class _BoolDecoder:
    """VP8's boolean entropy decoder (RFC 6386, section 7), enough to read a key frame's header."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 2
        self.value = int.from_bytes(data[:2].ljust(2, b"\0"), "big")
        self.range, self.bits = 255, 0

    def bool(self, prob: int = 128) -> int:
        split = 1 + (((self.range - 1) * prob) >> 8)
        if self.value >= split << 8:
            bit, self.range, self.value = 1, self.range - split, self.value - (split << 8)
        else:
            bit, self.range = 0, split
        while self.range < 128:
            self.value, self.range, self.bits = self.value << 1, self.range << 1, self.bits + 1
            if self.bits == 8:
                self.bits = 0
                self.value |= self.data[self.pos] if self.pos < len(self.data) else 0
                self.pos += 1
        return bit

    def literal(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bool()
        return value

    def signed(self, n: int) -> int:
        value = self.literal(n)
        return -value if self.bool() else value

    def optional_signed(self, n: int) -> int | None:
        return self.signed(n) if self.bool() else None


def _vp8_mean_quantiser(frame: bytes) -> float | None:
    """The mean luma AC quantiser index (0-127) over the segments of a VP8 key frame, or None."""
    if len(frame) < 11 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    d = _BoolDecoder(frame[10:])
    d.literal(2)  # colour space, clamping
    segment_q: list[int | None] = []
    absolute = False
    if d.bool():  # segmentation enabled
        update_map, update_data = d.bool(), d.bool()
        if update_data:
            absolute = bool(d.bool())
            segment_q = [d.optional_signed(7) for _ in range(4)]
            for _ in range(4):
                d.optional_signed(6)  # loop filter levels
        if update_map:
            for _ in range(3):
                if d.bool():
                    d.literal(8)
    d.literal(1 + 6 + 3)  # filter type, level, sharpness
    if d.bool() and d.bool():  # loop filter deltas, updated
        for _ in range(8):
            d.optional_signed(6)
    d.literal(2)  # partitions
    base = d.literal(7)
    if not segment_q:
        return float(base)
    qs = [(q or 0) if absolute else base + (q or 0) for q in segment_q]
    return float(np.mean(np.clip(qs, 0, 127)))


# -- writing resolution --------------------------------------------------------------------------------------


def tiff_dpi_params(dpi: tuple[float, float] | None) -> list[int]:
    if dpi is None:
        return []
    return [
        cv2.IMWRITE_TIFF_RESUNIT,
        cv2.IMWRITE_TIFF_RESOLUTION_UNIT_INCH,
        cv2.IMWRITE_TIFF_XDPI,
        round(dpi[0]),
        cv2.IMWRITE_TIFF_YDPI,
        round(dpi[1]),
    ]


def with_dpi(data: bytes, dpi: tuple[float, float] | None) -> bytes:
    """``data`` (a PNG, JPEG or BMP as OpenCV wrote it) saying ``dpi``; other formats unchanged."""
    if dpi is None:
        return data
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _png_with_dpi(data, dpi)
    if data[:2] == b"\xff\xd8":
        return _jpeg_with_dpi(data, dpi)
    if data[:2] == b"BM" and len(data) >= 46:
        x, y = (round(v / _INCH) for v in dpi)
        return data[:38] + struct.pack("<ii", x, y) + data[46:]
    return data


def _png_with_dpi(data: bytes, dpi: tuple[float, float]) -> bytes:
    body = struct.pack(">IIB", round(dpi[0] / _INCH), round(dpi[1] / _INCH), 1)
    chunk = struct.pack(">I", len(body)) + b"pHYs" + body + struct.pack(">I", zlib.crc32(b"pHYs" + body))
    out, pos = bytearray(data[:8]), 8
    while pos + 8 <= len(data):
        length, tag = struct.unpack(">I", data[pos : pos + 4])[0], data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if tag != b"pHYs":
            out += data[pos:end]
        if tag == b"IHDR":
            out += chunk
        pos = end
    return bytes(out)


def _jpeg_with_dpi(data: bytes, dpi: tuple[float, float]) -> bytes:
    density = struct.pack(">BHH", 1, min(round(dpi[0]), 65535), min(round(dpi[1]), 65535))
    if data[2:4] == b"\xff\xe0" and data[6:11] == b"JFIF\0":
        return data[:13] + density + data[18:]
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01" + density + b"\0\0"
    return data[:2] + app0 + data[2:]
