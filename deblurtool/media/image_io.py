"""Read and write still images with OpenCV, keeping mode, depth and metadata: the tool's one image reader.

Images are read with ``cv2.IMREAD_UNCHANGED`` so nothing is converted behind our back: 8- or 16-bit, gray
(HxW), gray+alpha (HxWx2), BGR (HxWx3) or BGRA (HxWx4), in OpenCV's channel order. :func:`split_for_model`
turns any of these into the HxWx3 RGB array the model takes (gray replicated), keeping alpha aside untouched;
:func:`merge_from_model` puts the model's output back into the original layout (gray = mean of the three).

EXIF, XMP and ICC metadata are carried from input to output where the format can hold them, so an image
with an EXIF orientation tag still displays upright (the pixels stay in stored orientation, as does the tag),
and colour profiles are kept. OpenCV applies TIFF orientation on reading, so those outputs are stored upright.

A damaged file is one :class:`InputError` line: what libpng, libjpeg and libtiff print on their own while
decoding (straight to file descriptor 2, around our message) is caught and used as the reason instead.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from deblurtool.errors import InputError, OutputError, one_line
from deblurtool.fsutil import write_bytes
from deblurtool.media.image_meta import FileFacts, probe, tiff_dpi_params, with_dpi

# The image formats every command reads (folder inputs, blur/sharp pairs) and writes.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})

# Explicit so outputs do not change when OpenCV's defaults do: near-transparent JPEG quality, fast PNG.
_WRITE_PARAMS: dict[str, list[int]] = {
    ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95],
    ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, 95],
    ".png": [cv2.IMWRITE_PNG_COMPRESSION, 3],
}


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk type and its fixed CRC: every complete PNG ends with it


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log lines (``[ WARN:0@...] ...``) while decoding: a damaged file is reported once,
    as our one-line :class:`InputError`."""
    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


_FD2_LOCK = threading.Lock()


@contextlib.contextmanager
def _codec_messages(messages: list[str]) -> Iterator[None]:
    """Collect into ``messages`` the lines C image libraries write to file descriptor 2 meanwhile (libpng
    prints "libpng error: IDAT: CRC error", libjpeg "Corrupt JPEG data: ..."), instead of letting them reach
    the terminal around our one-line error. Lines with terminal control codes come from another thread (the
    progress bar) and are passed on unchanged."""
    with _FD2_LOCK, tempfile.TemporaryFile() as sink:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable descriptor 2: nothing to protect
            yield
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            others = []
            for line in sink.read().decode("utf-8", "replace").splitlines(keepends=True):
                if "\x1b" in line:
                    others.append(line)
                elif line.strip():
                    messages.append(line.strip())
            if others:
                os.write(2, "".join(others).encode())


@dataclass(frozen=True)
class ImageData:
    """Pixels in OpenCV layout (``pixels``: HxW, HxWx2, HxWx3 BGR or HxWx4 BGRA; uint8 or uint16) plus the
    file's metadata chunks (``metadata_types`` are ``cv2.IMAGE_METADATA_*`` values, one per chunk).

    A multi-page TIFF or an animated WebP has its further pages (frames) in ``extra_pages`` (each in the same
    layouts, sizes may differ); ``frame_durations`` (ms, one per page) and ``loop_count`` describe an
    animation. :attr:`pages` is every page, the first one being ``pixels``. ``facts`` are what OpenCV does
    not keep (resolution, lossy quality, gray+alpha; see :mod:`.image_meta`): :func:`write_image` honours
    them."""

    pixels: np.ndarray
    metadata_types: tuple[int, ...] = ()
    metadata: tuple[np.ndarray, ...] = field(default=(), repr=False)
    extra_pages: tuple[np.ndarray, ...] = field(default=(), repr=False)
    frame_durations: tuple[int, ...] = ()
    loop_count: int = 0
    facts: FileFacts = field(default_factory=FileFacts)

    @property
    def pages(self) -> tuple[np.ndarray, ...]:
        return (self.pixels, *self.extra_pages)

    @property
    def notes(self) -> tuple[str, ...]:
        """``note:`` lines on what the output cannot keep of this file (a CMYK JPEG comes out RGB)."""
        if self.facts.cmyk:
            return ("note: a CMYK JPEG: OpenCV reads it as RGB and cannot write CMYK, so the output is RGB",)
        return ()

    def with_pages(self, pages: Sequence[np.ndarray]) -> ImageData:
        """The same image (metadata and all) holding ``pages`` instead."""
        return replace(self, pixels=pages[0], extra_pages=tuple(pages[1:]))


def _decode(path: Path, flags: int) -> tuple[np.ndarray, tuple[int, ...], tuple[np.ndarray, ...]]:
    """The one decoder behind both readers: ``(pixels, metadata types, metadata chunks)`` in OpenCV layout.

    The bytes are read by numpy, not ``cv2.imread`` (which returns None for non-ASCII paths); a zero-byte,
    truncated, non-image or unsupported-depth file is one :class:`InputError` line, with the codec's own
    message as the reason where it printed one.
    """
    return _decode_data(_read_bytes(path), path, flags)


def _read_bytes(path: Path) -> np.ndarray:
    try:
        return np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror or e})", path) from None


def _decode_data(
    data: np.ndarray, path: Path, flags: int
) -> tuple[np.ndarray, tuple[int, ...], tuple[np.ndarray, ...]]:
    if data.size == 0:
        raise InputError("empty file (0 bytes)", path)
    if data[:8].tobytes() == _PNG_SIGNATURE and _PNG_END not in data[-4096:].tobytes():
        raise InputError("truncated PNG (its end marker is missing)", path)
    messages: list[str] = []
    try:
        with _quiet_opencv(), _codec_messages(messages):
            pixels, types, chunks = cv2.imdecodeWithMetadata(data, flags)
    except cv2.error:
        pixels, types, chunks = None, (), ()
    if pixels is None or pixels.size == 0:
        reason = f"; {messages[0][:120]}" if messages else ""
        raise InputError(f"not a readable image (damaged, truncated or of another format{reason})", path)
    _check_layout(pixels, path)
    return pixels, tuple(int(t) for t in types), tuple(np.asarray(c) for c in chunks)


def _check_layout(pixels: np.ndarray, path: Path) -> None:
    if pixels.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{pixels.dtype} samples are not supported (8- and 16-bit images are)", path)
    if pixels.ndim == 3 and pixels.shape[2] not in (2, 3, 4):
        raise InputError(f"{pixels.shape[2]} channels are not supported (gray, RGB and RGBA are)", path)


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def _further_pages(path: Path, data: np.ndarray) -> dict[str, object]:
    """``ImageData`` fields for the pages after the first of a multi-page TIFF or an animated WebP (empty for
    any other file): none of them is dropped."""
    head = data[:16].tobytes()
    if head[:4] in _TIFF_MAGIC:
        with _quiet_opencv():
            ok, pages = cv2.imdecodemulti(data, cv2.IMREAD_UNCHANGED)
        if not ok or len(pages) < 2:
            return {}
        for page in pages:
            _check_layout(page, path)
        return {"extra_pages": tuple(pages[1:])}
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and b"ANIM" in data[:4096].tobytes():
        with _quiet_opencv():
            ok, animation = cv2.imdecodeanimation(data)
        if not ok or len(animation.frames) < 2:
            return {}
        return {
            "extra_pages": tuple(animation.frames[1:]),
            "frame_durations": tuple(int(d) for d in animation.durations),
            "loop_count": int(animation.loop_count),
            "first": animation.frames[0],
        }
    return {}


def read_image(path: Path) -> ImageData:
    """Decode ``path`` as stored (``IMREAD_UNCHANGED``: mode, depth and metadata kept) for the folder
    pipeline, every page of a multi-page TIFF and every frame of an animated WebP included; a zero-byte,
    truncated, non-image or unsupported-depth file: :class:`InputError`."""
    data = _read_bytes(path)
    pixels, types, chunks = _decode_data(data, path, cv2.IMREAD_UNCHANGED)
    more = _further_pages(path, data) if path.suffix.lower() in _PAGED else {}
    first = more.pop("first", pixels)
    assert isinstance(first, np.ndarray)
    facts = probe(data.tobytes())
    if facts.gray_alpha and first.ndim == 3 and first.shape[2] == 4:
        first = np.ascontiguousarray(first[:, :, [0, 3]])  # OpenCV made it BGRA; its colours are equal
    return ImageData(first, types, chunks, facts=facts, **more)  # type: ignore[arg-type]


def read_rgb_u8(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB, for scoring and training: gray replicated, alpha dropped, 16-bit
    scaled to 8 bits and the EXIF orientation applied (OpenCV's ``IMREAD_COLOR``).

    Errors as :func:`read_image`'s, said as ``cannot read this image: <reason>``.
    """
    try:
        bgr, _, _ = _decode(path, cv2.IMREAD_COLOR)
    except InputError as e:
        raise InputError(f"cannot read this image: {one_line(e)}", path) from None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def split_for_model(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """OpenCV-layout pixels -> (``rgb`` HxWx3 same dtype, ``alpha`` HxW or None). Gray is replicated to three
    channels because the model is trained on colour; alpha is not image content and must not be deblurred."""
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2), None
    channels = pixels.shape[2]
    if channels == 2:  # gray + alpha
        return np.repeat(pixels[:, :, :1], 3, axis=2), pixels[:, :, 1].copy()
    rgb = np.ascontiguousarray(pixels[:, :, 2::-1])  # BGR(A) -> RGB
    alpha = pixels[:, :, 3].copy() if channels == 4 else None
    return rgb, alpha


def merge_from_model(rgb: np.ndarray, alpha: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    """Inverse of :func:`split_for_model`: ``rgb`` HxWx3 (dtype of ``like``) back into ``like``'s layout."""
    if rgb.shape != (*like.shape[:2], 3) or rgb.dtype != like.dtype:
        raise ValueError(
            f"model output {rgb.dtype} {rgb.shape} does not match the input {like.dtype} {like.shape}"
        )
    has_alpha = like.ndim == 3 and like.shape[2] in (2, 4)
    if has_alpha and alpha is None:
        raise ValueError(f"the input {like.shape} has alpha: pass it back (split_for_model kept it)")
    if like.ndim == 2 or like.shape[2] == 2:
        total = rgb.astype(np.uint32).sum(axis=2)
        gray = ((total + 1) // 3).astype(like.dtype)  # rounded mean: equal channels come back exactly
        return np.dstack([gray, alpha]) if alpha is not None else gray
    bgr = rgb[:, :, ::-1]
    return np.ascontiguousarray(np.dstack([bgr, alpha]) if alpha is not None else bgr)


def write_image(path: Path, image: ImageData, *, overwrite: bool = False) -> None:
    """Encode ``image`` in the format of ``path``'s extension and write it temp-then-rename, so ``path`` only
    ever holds a complete file. Metadata is kept where the format can hold it; without it otherwise."""
    if path.exists() and not overwrite:
        raise OutputError("exists (use --overwrite to replace it)", path)
    ext = path.suffix.lower()
    params = _write_params(ext, image.facts)
    if image.pixels.ndim == 3 and image.pixels.shape[2] == 2 and ext == ".png" and not image.extra_pages:
        data = gray_alpha_png(image)
    else:
        data = with_dpi(_encode(ext, image, params, path), image.facts.dpi)
    try:
        write_bytes(path, data)
    except OSError as e:  # the disk filled up while writing (creating and renaming are OutputErrors already)
        raise OutputError(f"cannot write ({e.strerror or e})", path) from None


_PAGED = frozenset({".tif", ".tiff", ".webp"})

_SAMPLING_FACTORS = {
    "444": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    "422": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    "420": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    "440": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440,
    "411": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411,
}


def _write_params(ext: str, facts: FileFacts) -> list[int]:
    """OpenCV's parameters for ``ext``: the input's quality for a lossy JPEG or WebP (a lossless WebP stays
    lossless), its resolution for a TIFF."""
    params = list(_WRITE_PARAMS.get(ext, []))
    if ext in (".jpg", ".jpeg") and facts.quality is not None:
        params = [cv2.IMWRITE_JPEG_QUALITY, facts.quality]
    if ext in (".jpg", ".jpeg") and facts.chroma is not None:  # as quality: what the source kept of colour
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, _SAMPLING_FACTORS[facts.chroma]]
    elif ext == ".webp" and facts.lossless is False:
        params = [cv2.IMWRITE_WEBP_QUALITY, facts.quality or 90]
    elif ext in (".tif", ".tiff"):
        params += tiff_dpi_params(facts.dpi)
    return params


def _encode(ext: str, image: ImageData, params: list[int], path: Path) -> bytes:
    pixels = image.pixels
    if pixels.ndim == 3 and pixels.shape[2] == 2:  # gray+alpha that only PNG (8-bit) holds: gray as BGR
        pixels = np.dstack([pixels[:, :, 0]] * 3 + [pixels[:, :, 1]])
    ok, buf = False, None
    if image.extra_pages:
        ok, buf = _encode_pages(ext, image, params, path)
    elif image.metadata_types:
        with contextlib.suppress(cv2.error):
            ok, buf = cv2.imencodeWithMetadata(
                ext, pixels, list(image.metadata_types), list(image.metadata), params
            )
    if not ok and not image.extra_pages:
        try:
            ok, buf = cv2.imencode(ext, pixels, params)
        except cv2.error as e:
            raise OutputError(f"cannot encode as {ext} ({e.err or e})", path) from None
    if not ok or buf is None:
        raise OutputError(f"cannot encode a {pixels.dtype} {pixels.shape} image as {ext}", path)
    return bytes(buf.tobytes())


def gray_alpha_png(image: ImageData) -> bytes:
    """An 8-bit gray+alpha PNG (which OpenCV cannot write) with the image's EXIF, XMP, ICC profile and
    resolution, through Pillow; 16-bit gray+alpha goes to OpenCV as BGRA with equal colours (no tint)."""
    from PIL import Image, PngImagePlugin

    pixels = image.pixels
    if pixels.dtype != np.uint8:
        return with_dpi(_encode(".png", image, list(_WRITE_PARAMS[".png"]), Path("x.png")), image.facts.dpi)
    chunks = dict(zip(image.metadata_types, image.metadata, strict=False))
    options: dict[str, object] = {"compress_level": 3}
    if cv2.IMAGE_METADATA_EXIF in chunks:
        options["exif"] = chunks[cv2.IMAGE_METADATA_EXIF].tobytes()
    if cv2.IMAGE_METADATA_ICCP in chunks:
        options["icc_profile"] = chunks[cv2.IMAGE_METADATA_ICCP].tobytes()
    if cv2.IMAGE_METADATA_XMP in chunks:
        info = PngImagePlugin.PngInfo()
        info.add_itxt(
            "XML:com.adobe.xmp", chunks[cv2.IMAGE_METADATA_XMP].tobytes().decode("utf-8", "replace")
        )
        options["pnginfo"] = info
    if image.facts.dpi is not None:
        options["dpi"] = image.facts.dpi
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "LA").save(out, format="PNG", **options)
    return out.getvalue()


def _encode_pages(
    ext: str, image: ImageData, params: list[int], path: Path
) -> tuple[bool, np.ndarray | None]:
    """Every page into one file: a multi-page TIFF, or an animated WebP with the input's frame timing."""
    try:
        if ext == ".webp" and image.frame_durations:
            animation = cv2.Animation()
            animation.frames = list(image.pages)
            animation.durations = list(image.frame_durations)
            animation.loop_count = image.loop_count
            return cv2.imencodeanimation(ext, animation, params)
        if ext in (".tif", ".tiff"):
            return cv2.imencodemulti(ext, list(image.pages), params)
    except cv2.error as e:
        raise OutputError(f"cannot encode {len(image.pages)} pages as {ext} ({e.err or e})", path) from None
    raise OutputError(f"{ext} files hold one page; the input has {len(image.pages)}", path)
