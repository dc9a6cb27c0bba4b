"""Media I/O: the threaded video reader, pixel-format choice, and still images of every mode and depth."""

from __future__ import annotations

import threading
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_image, make_video, save_image, smooth_rgb

from deblurtool.errors import DeblurError, InputError, OutputError
from deblurtool.media import (
    DecodedFrame,
    ImageData,
    VideoReader,
    choose_pix_fmt,
    merge_from_model,
    read_image,
    split_for_model,
    write_image,
)


def _read_all(path: Path) -> tuple[VideoReader, list[DecodedFrame], int]:
    reader = VideoReader(path)
    reader.start(copy_indices=[s.index for s in reader.side_streams])
    frames, packets = [], 0
    for item in reader.items():
        if isinstance(item, DecodedFrame):
            frames.append(item)
        else:
            packets += 1
    reader.close()
    return reader, frames, packets


# -- video reader --------------------------------------------------------------------------------------------


def test_reader_frames_pts_and_audio_packets(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "a.mp4", frames=10)
    reader, frames, packets = _read_all(spec.path)
    info = reader.info
    assert (info.width, info.height, info.pix_fmt, info.bit_depth) == (64, 48, "yuv420p", 8)
    assert info.frames_total == 10 and info.frames_exact
    assert [f.index for f in frames] == list(range(10))
    assert [f.pts * info.time_base for f in frames] == [Fraction(p, 24) for p in spec.pts]
    assert all(f.rgb.shape == (48, 64, 3) and f.rgb.dtype == np.uint8 for f in frames)
    assert np.abs(frames[3].rgb.astype(int) - smooth_rgb(3)).max() <= 6
    assert packets == spec.audio_packets
    assert reader.damage is None


def test_reader_keeps_ten_bit_precision(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "deep.mkv", frames=3, pix_fmt="yuv420p10le", audio=False)
    reader, frames, _ = _read_all(spec.path)
    assert reader.info.bit_depth == 10 and reader.info.pix_fmt == "yuv420p10le"
    assert frames[0].rgb.dtype == np.uint16
    # 10-bit content shows values between the 8-bit steps (256 apart in 16-bit units).
    assert np.any(frames[0].rgb % 256 != frames[0].rgb[0, 0, 0] % 256)
    assert np.abs(frames[0].rgb.astype(np.int64) - smooth_rgb(0, dtype=np.uint16)).max() < 65535 * 0.02


def test_reader_reports_rotation(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "rot.mp4", frames=2, audio=False, rotation=90)
    reader = VideoReader(spec.path)
    assert reader.info.rotation == 90 and reader.info.display_matrix is not None
    reader.close()


def test_reader_rejects_files_without_video(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(InputError, match="not a readable video"):
        VideoReader(text)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError):
        VideoReader(empty)
    with pytest.raises(InputError, match="no such file"):
        VideoReader(tmp_path / "missing.mp4")


def test_reader_rejects_audio_only(tmp_path: Path) -> None:
    import av

    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(a.encode(frame))
        out.mux(a.encode(None))
    with pytest.raises(InputError, match="no video stream"):
        VideoReader(path)


def test_reader_truncated_input_delivers_what_decodes(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "full.mp4", frames=24, faststart=True)
    data = spec.path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    reader, frames, _ = _read_all(cut)
    assert 0 < len(frames) < 24
    assert reader.damage is not None and str(len(frames)) in reader.damage


def test_reader_stops_promptly_when_told(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "a.mp4", frames=24, audio=False)
    stop = threading.Event()
    reader = VideoReader(spec.path, queue_size=1, stop=stop)
    reader.start()
    next(iter(reader.items()))  # the thread is now blocked on the full queue
    stop.set()
    reader.close()
    assert reader._thread is not None and not reader._thread.is_alive()


# -- pixel format choice -------------------------------------------------------------------------------------


def _info(tmp_path: Path, **changes: object) -> object:
    spec = make_video(tmp_path / "i.mp4", frames=1, audio=False)
    reader = VideoReader(spec.path)
    reader.close()
    return replace(reader.info, **changes)


def test_choose_pix_fmt(tmp_path: Path) -> None:
    info = _info(tmp_path)
    assert choose_pix_fmt("libx264", None, info) == "yuv420p"
    assert (
        choose_pix_fmt("libx264", None, replace(info, pix_fmt="yuv420p10le", bit_depth=10)) == "yuv420p10le"
    )
    # mpeg4 has no 10-bit format: falls back to yuv420p
    assert choose_pix_fmt("mpeg4", None, replace(info, pix_fmt="yuv420p10le", bit_depth=10)) == "yuv420p"
    assert choose_pix_fmt("libx264", "yuv444p", info) == "yuv444p"
    assert choose_pix_fmt("libx264", None, replace(info, width=63)) == "yuv444p"  # odd width: no 4:2:0
    with pytest.raises(DeblurError, match="not a pixel format"):
        choose_pix_fmt("libx264", "yuv999p", info)
    with pytest.raises(DeblurError, match="not supported by libx264"):
        choose_pix_fmt("libx264", "rgb24", info)
    with pytest.raises(DeblurError, match="not an encoder"):
        choose_pix_fmt("no-such-codec", None, info)
    with pytest.raises(DeblurError, match="audio encoder"):
        choose_pix_fmt("aac", None, info)


# -- images --------------------------------------------------------------------------------------------------

KINDS = ["u8_gray", "u8_rgb", "u8_rgba", "u16_rgb", "u16_gray", "u16_rgba"]


@pytest.mark.parametrize("kind", KINDS)
def test_split_merge_round_trip(kind: str) -> None:
    pixels = make_image(kind)
    rgb, alpha = split_for_model(pixels)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == pixels.dtype
    assert (alpha is not None) == kind.endswith("rgba")
    np.testing.assert_array_equal(merge_from_model(rgb, alpha, pixels), pixels)


def test_split_is_rgb_order_and_gray_is_mean() -> None:
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 10  # blue
    bgr[..., 2] = 200  # red
    rgb, _ = split_for_model(bgr)
    assert rgb[0, 0].tolist() == [200, 0, 10]
    gray = np.zeros((2, 2), np.uint8)
    out = merge_from_model(np.dstack([np.full((2, 2), v, np.uint8) for v in (30, 60, 91)]), None, gray)
    assert out.shape == (2, 2) and out[0, 0] == 60  # round((30 + 60 + 91) / 3)


def test_merge_rejects_wrong_model_output() -> None:
    with pytest.raises(ValueError, match="does not match"):
        merge_from_model(np.zeros((4, 4, 3), np.uint8), None, np.zeros((4, 4, 3), np.uint16))


@pytest.mark.parametrize(
    ("kind", "ext"),
    [(k, e) for k in KINDS for e in (".png", ".tif")]
    + [("u8_gray", ".jpg"), ("u8_rgb", ".jpg"), ("u8_rgb", ".bmp"), ("u8_rgba", ".webp")],
)
def test_read_write_keeps_mode_and_depth(tmp_path: Path, kind: str, ext: str) -> None:
    pixels = make_image(kind)
    src = save_image(tmp_path / f"in{ext}", pixels)
    image = read_image(src)
    assert image.pixels.dtype == pixels.dtype and image.pixels.shape == pixels.shape
    dst = tmp_path / f"out{ext}"
    write_image(dst, image)
    again = read_image(dst).pixels
    assert again.dtype == pixels.dtype and again.shape == pixels.shape
    if ext in (".png", ".tif", ".bmp"):  # lossless formats: exactly equal
        np.testing.assert_array_equal(again, pixels)
    if kind.endswith("rgba"):
        np.testing.assert_array_equal(again[:, :, 3], pixels[:, :, 3])
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_exif_orientation_is_carried_over(tmp_path: Path) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[274] = 6  # rotate 90 CW for display
    src = tmp_path / "phone.jpg"
    Image.fromarray(smooth_rgb(0)).save(src, exif=exif.tobytes())
    dst = tmp_path / "out.jpg"
    write_image(dst, read_image(src))
    with Image.open(dst) as out:
        assert out.getexif().get(274) == 6
        assert out.size == (64, 48)  # stored orientation unchanged, so the tag still applies


@pytest.mark.parametrize("content", [b"", b"not an image at all", "truncated"])
def test_read_image_rejects_bad_files(tmp_path: Path, content: bytes | str) -> None:
    path = tmp_path / "bad.png"
    if content == "truncated":
        _, buf = cv2.imencode(".png", make_image("u8_rgb"))
        content = buf.tobytes()[:200]
    path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(InputError) as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_write_image_refuses_to_overwrite(tmp_path: Path) -> None:
    dst = save_image(tmp_path / "out.png", make_image("u8_rgb"))
    before = dst.read_bytes()
    with pytest.raises(OutputError, match="exists"):
        write_image(dst, ImageData(make_image("u8_rgb", seed=1)))
    assert dst.read_bytes() == before
    write_image(dst, ImageData(make_image("u8_rgb", seed=1)), overwrite=True)
    assert dst.read_bytes() != before
