"""``deblurtool compare A B OUT``: the labelled before/after view of two videos (A's timing and audio, played
back with PyAV) or two images (with the zoomed crop of the most textured region below), refusals before any
work, and the per-frame pieces ``video --compare`` reuses. Media are made on the fly."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from conftest import H, W, decode_video, make_video, run_cli, save_image

from deblurtool.compare import (
    ZOOM,
    CompareWriter,
    compose,
    copy_packet,
    image_view,
    parse_labels,
    textured_region,
)
from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError
from deblurtool.fsutil import output_lock
from deblurtool.media.image_io import read_rgb_u8
from deblurtool.media.video_reader import DecodedFrame, VideoReader


def _audio_packets(path: Path) -> int:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return 0
        return sum(1 for p in c.demux(c.streams.audio[0]) if p.dts is not None)


def _pts(path: Path) -> list[int | None]:
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def _flat(path: Path, value: int, *, frames: int = 6, audio: bool = False) -> Path:
    """A video whose every frame is flat gray ``value`` (so halves of a view can be told apart)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=24, options={"crf": "0"})
        v.width, v.height, v.pix_fmt = W, H, "yuv444p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), value, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    return path


# -- the per-frame view --------------------------------------------------------------------------------------


def test_side_by_side_puts_a_left_b_right_and_labels_both() -> None:
    a = np.full((H, W, 3), 200, np.uint8)
    b = np.full((H, W, 3), 50, np.uint8)
    view = compose(a, b, ("", ""))
    assert view.shape == (H, 2 * W, 3)
    assert (view[:, :W] == 200).all() and (view[:, W:] == 50).all()
    labelled = compose(a, b, ("before", "after"))
    # A label darkens a box in the top-left corner of each half and writes white text in it.
    assert labelled[:, :W][: H // 2, : W // 2].min() < 200 * 0.5 and labelled[:, :W].max() > 220
    assert labelled[:, W:][: H // 2, : W // 2].min() < 50 and labelled[:, W:].max() > 220
    assert (labelled[-4:] == view[-4:]).all()  # the picture below the labels is untouched


def test_split_is_a_wipe_with_a_divider() -> None:
    a = np.full((H, W, 3), 200, np.uint8)
    b = np.full((H, W, 3), 50, np.uint8)
    view = compose(a, b, ("", ""), "split")
    assert view.shape == (H, W, 3)
    assert (view[:, : W // 2 - 2] == 200).all() and (view[:, W // 2 + 2 :] == 50).all()
    divider = view[:, W // 2 - 1 : W // 2 + 1]
    assert (divider > 200).all()  # a light line between the halves


def test_sixteen_bit_frames_stay_sixteen_bit() -> None:
    a = np.full((H, W, 3), 40000, np.uint16)
    b = np.full((H, W, 3), 100, np.uint8)  # converted to A's depth
    view = compose(a, b, ("a", "b"))
    assert view.dtype == np.uint16 and view.max() > 50000  # white text at 16 bits
    assert view[-1, -1, 0] == 100 * 257


def test_labels_are_parsed_as_two() -> None:
    assert parse_labels(None) == ("before", "after")
    assert parse_labels("blurry, deblurred") == ("blurry", "deblurred")
    with pytest.raises(DeblurError, match="two labels"):
        parse_labels("one")


def test_textured_region_finds_the_detail() -> None:
    rgb = np.full((60, 80, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    rgb[30:45, 50:70] = rng.integers(0, 256, (15, 20, 3), dtype=np.uint8)
    x, y = textured_region(rgb, 20, 15)
    assert abs(x - 50) <= 2 and abs(y - 30) <= 2


# -- videos --------------------------------------------------------------------------------------------------


def test_side_by_side_video_is_playable_with_a_timing_and_audio(tmp_path: Path) -> None:
    a = make_video(tmp_path / "a.mp4", frames=10, pts=[0, 1, 2, 4, 5, 7, 8, 9, 11, 12])  # variable rate
    b = make_video(tmp_path / "b.mp4", frames=10, pts=[0, 1, 2, 4, 5, 7, 8, 9, 11, 12], audio=False)
    out = tmp_path / "view.mp4"
    code, output = run_cli("compare", a.path, b.path, out, "--no-progress")
    assert code == 0, output
    _, frames, _, rotation = decode_video(out)
    assert len(frames) == 10 and frames[0].shape == (H, 2 * W, 3) and rotation == 0
    assert _pts(out) == _pts(a.path)  # every frame at A's time
    assert _audio_packets(out) == _audio_packets(a.path) > 0  # A's audio, copied
    _, originals, _, _ = decode_video(a.path)
    # Below the label box, the left half is A itself (re-encoded: close, not equal).
    assert np.abs(frames[3][H // 2 :, :W].astype(int) - originals[3][H // 2 :].astype(int)).mean() < 3
    assert str(out) in output


def test_split_video_shows_a_left_b_right(tmp_path: Path) -> None:
    a = _flat(tmp_path / "a.mp4", 200)
    b = _flat(tmp_path / "b.mp4", 40)
    out = tmp_path / "wipe.mkv"
    code, output = run_cli("compare", a, b, out, "--layout", "split", "--labels", ",", "--no-progress")
    assert code == 0, output
    _, frames, _, _ = decode_video(out)
    assert len(frames) == 6 and frames[0].shape == (H, W, 3)
    for frame in frames:
        assert abs(int(frame[H // 2, 4, 1]) - 200) <= 3 and abs(int(frame[H // 2, W - 4, 1]) - 40) <= 3


def test_rotated_videos_are_shown_upright(tmp_path: Path) -> None:
    a = make_video(tmp_path / "a.mp4", frames=3, audio=False, rotation=90)
    b = make_video(tmp_path / "b.mp4", frames=3, audio=False, rotation=90)
    out = tmp_path / "view.mp4"
    code, output = run_cli("compare", a.path, b.path, out, "--no-progress", "--labels", ",")
    assert code == 0, output
    _, frames, _, rotation = decode_video(out)
    _, stored, _, _ = decode_video(a.path)
    assert rotation == 0 and frames[0].shape == (W, 2 * H, 3)  # side by side as a viewer sees them
    upright = np.rot90(stored[0], 1)
    assert np.abs(frames[0][:, :H].astype(int) - upright.astype(int)).mean() < 3


def test_different_sizes_are_refused_before_any_work(tmp_path: Path) -> None:
    a = make_video(tmp_path / "a.mp4", frames=4)
    b = make_video(tmp_path / "b.mp4", frames=4, width=32, height=24)
    out = tmp_path / "view.mp4"
    code, output = run_cli("compare", a.path, b.path, out)
    assert code == 2 and not out.exists()
    error = [line for line in output.splitlines() if line.strip()]
    assert len(error) == 1 and "32x24" in error[0] and "64x48" in error[0] and "same size" in error[0]


def test_different_lengths_are_refused_before_any_work(tmp_path: Path) -> None:
    a = make_video(tmp_path / "a.mp4", frames=12)
    b = make_video(tmp_path / "b.mp4", frames=6)
    out = tmp_path / "view.mp4"
    code, output = run_cli("compare", a.path, b.path, out)
    assert code == 2 and not out.exists()
    error = [line for line in output.splitlines() if line.strip()]
    assert len(error) == 1 and "same length" in error[0]
    assert sorted(tmp_path.iterdir()) == sorted([a.path, b.path])  # no temporary or lock file left


def test_a_slice_of_a_compares_with_the_whole_of_b(tmp_path: Path) -> None:
    a = make_video(tmp_path / "a.mp4", frames=24)  # 1 s at 24 fps
    b = make_video(tmp_path / "b.mp4", frames=12)  # 0.5 s
    out = tmp_path / "view.mp4"
    code, output = run_cli(
        "compare", a.path, b.path, out, "--start", "0.25", "--duration", "0.5", "--no-progress"
    )
    assert code == 0, output
    times, frames, _, _ = decode_video(out)
    assert len(frames) == 12 and times[0] == 0
    # Without the slice the lengths differ, and the error says how to compare a slice.
    code, output = run_cli("compare", a.path, b.path, tmp_path / "other.mp4")
    assert code == 2 and "--start" in output


def test_existing_output_is_refused_without_overwrite(tmp_path: Path) -> None:
    a = make_video(tmp_path / "a.mp4", frames=3, audio=False)
    out = tmp_path / "view.mp4"
    out.write_bytes(b"keep me")
    code, output = run_cli("compare", a.path, a.path, out)
    assert code == 2 and "--overwrite" in output and out.read_bytes() == b"keep me"
    code, output = run_cli("compare", a.path, a.path, out, "--overwrite", "--no-progress")
    assert code == 0, output
    assert len(decode_video(out)[1]) == 3


def test_mixed_image_and_video_is_refused(tmp_path: Path) -> None:
    a = make_video(tmp_path / "a.mp4", frames=3, audio=False)
    image = save_image(tmp_path / "b.png", np.zeros((H, W, 3), np.uint8))
    code, output = run_cli("compare", a.path, image, tmp_path / "view.mp4")
    assert code == 2 and "an image" in output and "a video" in output
    assert not (tmp_path / "view.mp4").exists()


def test_compare_writer_takes_frames_and_copied_packets(tmp_path: Path) -> None:
    """The hook ``video --compare`` uses: frames (as decoded) and A's packets in, A's timing and audio out;
    a packet handed here first can still go to another writer (the writer copies it)."""
    a = make_video(tmp_path / "a.mp4", frames=5)
    out = tmp_path / "view.mkv"
    with VideoReader(a.path) as reader:
        writer = CompareWriter.for_reader(out, reader, EncodeConfig(), labels=("in", "out"))
        reader.start(writer.copied_indices)
        writer.start()
        for item in reader.items():
            if isinstance(item, DecodedFrame):
                writer.put(item.rgb, 255 - item.rgb, item.pts)
            else:
                writer.put_packet(item)
                assert copy_packet(item).stream is item.stream  # the original is left to others
        writer.finish()
    _, frames, _, _ = decode_video(out)
    assert len(frames) == 5 and frames[0].shape == (H, 2 * W, 3)
    assert _audio_packets(out) == _audio_packets(a.path)


# -- images --------------------------------------------------------------------------------------------------


def test_two_images_give_a_png_with_the_zoomed_crop(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a = np.full((H, W, 3), 90, np.uint8)
    a[30:42, 40:56] = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)  # the detail to zoom on (BGR)
    b = a.copy()
    b[:, :, 1] = 255 - b[:, :, 1]
    pa, pb = save_image(tmp_path / "a.png", a), save_image(tmp_path / "b.png", b)
    out = tmp_path / "out" / "view.png"
    code, output = run_cli("compare", pa, pb, out, "--labels", "blurry,deblurred")
    assert code == 0, output
    view = read_rgb_u8(out)
    crop_w, crop_h = W // ZOOM, H // ZOOM
    assert view.shape == (H + 2 + crop_h * ZOOM, 2 * W, 3)  # the view, a 2-pixel band, the zoomed crops
    rgb_a = read_rgb_u8(pa)
    x, y = textured_region(rgb_a, crop_w, crop_h)
    assert 40 - crop_w <= x <= 56 and 30 - crop_h <= y <= 42
    zoomed = view[H + 2 :, :W]
    # Nearest-neighbour: each source pixel becomes a ZOOM x ZOOM block (bottom rows: below the label).
    row = crop_h - 1
    expected = np.repeat(rgb_a[y + row, x : x + crop_w], ZOOM, axis=0)
    assert (zoomed[row * ZOOM + ZOOM - 1, : crop_w * ZOOM] == expected).all()
    assert (view[H + 2 :, W:][row * ZOOM + ZOOM - 1, : crop_w * ZOOM, 1] == 255 - expected[:, 1]).all()


def test_image_view_split_layout_keeps_width() -> None:
    a = np.zeros((H, W, 3), np.uint8)
    view = image_view(a, a, ("", ""), "split")
    assert view.shape[1] == W and view.shape[0] == H + 2 + (H // ZOOM) * ZOOM


def test_images_of_different_sizes_are_refused(tmp_path: Path) -> None:
    pa = save_image(tmp_path / "a.png", np.zeros((H, W, 3), np.uint8))
    pb = save_image(tmp_path / "b.png", np.zeros((H, W + 2, 3), np.uint8))
    code, output = run_cli("compare", pa, pb, tmp_path / "view.png")
    assert code == 2 and "same size" in output and len(output.strip().splitlines()) == 1
    assert not (tmp_path / "view.png").exists()


def test_video_options_with_images_are_refused(tmp_path: Path) -> None:
    pa = save_image(tmp_path / "a.png", np.zeros((H, W, 3), np.uint8))
    code, output = run_cli("compare", pa, pa, tmp_path / "view.png", "--start", "1")
    assert code == 2 and "--start" in output


def test_matroska_view_keeps_a_times(tmp_path: Path) -> None:
    """In Matroska too (a millisecond time base), each frame plays at A's time."""
    a = make_video(tmp_path / "a.mkv", frames=4, audio=False)
    out = tmp_path / "view.mkv"
    code, output = run_cli("compare", a.path, a.path, out, "--no-progress")
    assert code == 0, output
    times, _, _, _ = decode_video(out)
    assert times == decode_video(a.path)[0]  # (Matroska rounds 1/24 s to the millisecond, A and view alike)


def test_output_held_by_another_job_is_refused(tmp_path: Path) -> None:
    a = make_video(tmp_path / "a.mp4", frames=3, audio=False)
    out = tmp_path / "view.mp4"
    with output_lock(out):
        code, output = run_cli("compare", a.path, a.path, out)
    assert code == 2 and "another deblurtool job" in output and not out.exists()
