"""run_video / run_folder with an identity fake model: fidelity, timing, streams, atomicity, resume."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import (
    FailingModel,
    IdentityModel,
    decode_video,
    make_image,
    make_video,
    save_image,
    stream_packets,
)

from deblurtool.config import EncodeConfig
from deblurtool.errors import InputError, OutputError
from deblurtool.pipeline import MANIFEST_NAME, LogProgress, run_folder, run_video

LOSSLESS = EncodeConfig(codec="libx264", crf=0)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


# -- video ---------------------------------------------------------------------------------------------------


def test_video_round_trip_keeps_frames_timing_audio(tmp_path: Path, identity_model: IdentityModel) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=16)
    dst = tmp_path / "out.mp4"
    summary = run_video(spec.path, dst, identity_model, LOSSLESS, progress=False)
    assert summary.frames == 16 and identity_model.calls == 16 and summary.damage is None
    assert summary.copied_streams == 1
    in_times, in_frames, in_fmt, _ = decode_video(spec.path)
    out_times, out_frames, out_fmt, _ = decode_video(dst)
    assert out_times == in_times and len(out_frames) == 16
    assert out_fmt == in_fmt == "yuv420p"
    assert out_frames[0].shape == (48, 64, 3)
    signed = np.stack(out_frames).astype(int) - np.stack(in_frames)
    assert np.abs(signed).max() <= 4 and np.abs(signed).mean() < 1  # only RGB<->YUV 4:2:0 resampling
    # No drift: swscale's default 4:2:0 -> RGB path darkened each round trip by ~1.2 levels on average.
    assert abs(signed.mean()) < 0.2
    in_codec, in_audio = stream_packets(spec.path, "audio")
    out_codec, out_audio = stream_packets(dst, "audio")
    assert out_codec == in_codec == "aac"
    assert out_audio == in_audio  # same packets, same bytes, same times: copied, not re-encoded
    assert _leftovers(tmp_path) == []


def test_variable_frame_rate_pts_survive(tmp_path: Path, identity_model: IdentityModel) -> None:
    irregular = [0, 1, 3, 4, 9, 10, 11, 17, 18, 30]
    spec = make_video(tmp_path / "vfr.mp4", pts=irregular, rate=24)
    dst = tmp_path / "out.mp4"
    run_video(spec.path, dst, identity_model, EncodeConfig(), progress=False)
    out_times, _, _, _ = decode_video(dst)
    assert out_times == [Fraction(p, 24) for p in irregular]


def test_lossless_ffv1_in_mkv(tmp_path: Path, identity_model: IdentityModel) -> None:
    spec = make_video(tmp_path / "in.mkv", frames=6)
    dst = tmp_path / "out.mkv"
    run_video(spec.path, dst, identity_model, EncodeConfig(codec="ffv1"), progress=False)
    in_times, in_frames, _, _ = decode_video(spec.path)
    out_times, out_frames, out_fmt, _ = decode_video(dst)
    assert out_fmt == "yuv420p" and out_times == in_times
    signed = np.stack(out_frames).astype(int) - np.stack(in_frames)
    assert np.abs(signed).max() <= 4 and abs(signed.mean()) < 0.2


def test_ten_bit_input_gives_ten_bit_output(tmp_path: Path, identity_model: IdentityModel) -> None:
    spec = make_video(tmp_path / "in.mkv", frames=4, pix_fmt="yuv420p10le", audio=False)
    dst = tmp_path / "out.mkv"
    summary = run_video(spec.path, dst, identity_model, EncodeConfig(crf=0), progress=False)
    assert summary.pix_fmt == "yuv420p10le"
    _, in_frames, _, _ = decode_video(spec.path)
    _, out_frames, out_fmt, _ = decode_video(dst)
    assert out_fmt == "yuv420p10le" and out_frames[0].dtype == np.uint16
    signed = np.stack(out_frames).astype(np.int64) - np.stack(in_frames)
    # 4:2:0 rounding at 10 bits: a few 10-bit steps at most, and no drift (units: 1/65535)
    assert np.abs(signed).max() < 65535 * 0.02 and abs(signed.mean()) < 65535 * 0.0005


def test_rotated_input_plays_with_the_same_orientation(tmp_path: Path, identity_model: IdentityModel) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=3, audio=False, rotation=90)
    dst = tmp_path / "out.mp4"
    run_video(spec.path, dst, identity_model, EncodeConfig(), progress=False)
    _, in_frames, _, in_rot = decode_video(spec.path)
    _, out_frames, _, out_rot = decode_video(dst)
    assert in_rot == out_rot == 90
    assert out_frames[0].shape == in_frames[0].shape == (48, 64, 3)  # stored orientation, tag copied


def test_subtitles_copied_where_the_container_allows(
    tmp_path: Path, identity_model: IdentityModel, srt_file: Path
) -> None:
    spec = make_video(tmp_path / "in.mkv", frames=12, subtitles=srt_file)
    to_mkv = run_video(spec.path, tmp_path / "out.mkv", identity_model, EncodeConfig(), progress=False)
    assert to_mkv.copied_streams == 2 and to_mkv.notes == []
    assert stream_packets(tmp_path / "out.mkv", "subtitle") == stream_packets(spec.path, "subtitle")
    to_mp4 = run_video(spec.path, tmp_path / "out.mp4", identity_model, EncodeConfig(), progress=False)
    assert to_mp4.copied_streams == 1
    assert len(to_mp4.notes) == 1 and "subtitle" in to_mp4.notes[0] and "not copied" in to_mp4.notes[0]
    assert stream_packets(tmp_path / "out.mp4", "audio")[1] == stream_packets(spec.path, "audio")[1]


def test_truncated_video_writes_what_decoded(tmp_path: Path, identity_model: IdentityModel) -> None:
    spec = make_video(tmp_path / "full.mp4", frames=24, faststart=True)
    data = spec.path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    dst = tmp_path / "out.mp4"
    summary = run_video(cut, dst, identity_model, EncodeConfig(), progress=False)
    assert summary.damage is not None and 0 < summary.frames < 24
    assert len(decode_video(dst)[1]) == summary.frames


def test_unusable_inputs_write_nothing(tmp_path: Path, identity_model: IdentityModel) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video " * 100)
    with pytest.raises(InputError):
        run_video(text, tmp_path / "out.mp4", identity_model, EncodeConfig(), progress=False)
    with pytest.raises(InputError, match="no such file"):
        run_video(
            tmp_path / "missing.mp4", tmp_path / "out.mp4", identity_model, EncodeConfig(), progress=False
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp4"]


def test_refused_outputs(tmp_path: Path, identity_model: IdentityModel) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=2, audio=False)
    with pytest.raises(OutputError, match="is the input"):
        run_video(spec.path, tmp_path / "." / "in.mp4", identity_model, EncodeConfig(), progress=False)
    existing = tmp_path / "out.mp4"
    existing.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="exists"):
        run_video(spec.path, existing, identity_model, EncodeConfig(), progress=False)
    assert existing.read_bytes() == b"keep me" and identity_model.calls == 0
    run_video(spec.path, existing, identity_model, EncodeConfig(), overwrite=True, progress=False)
    assert len(decode_video(existing)[1]) == 2


@pytest.mark.parametrize("error", [RuntimeError("model exploded"), KeyboardInterrupt()])
def test_failure_part_way_leaves_nothing(tmp_path: Path, error: BaseException) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=20)
    dst = tmp_path / "out" / "out.mp4"
    model = FailingModel(at=8, error=error)
    with pytest.raises(type(error)):
        run_video(spec.path, dst, model, EncodeConfig(), progress=False)
    assert not dst.exists()
    assert _leftovers(tmp_path) == []
    assert model.calls == 7


def test_wrong_model_output_is_an_error(tmp_path: Path) -> None:
    class Shrinking(IdentityModel):
        def deblur_array(self, img: np.ndarray) -> np.ndarray:
            return img[:-2]

    spec = make_video(tmp_path / "in.mp4", frames=3, audio=False)
    with pytest.raises(Exception, match="the model returned"):
        run_video(spec.path, tmp_path / "out.mp4", Shrinking(), EncodeConfig(), progress=False)
    assert not (tmp_path / "out.mp4").exists() and _leftovers(tmp_path) == []


def test_progress_bar_runs(
    tmp_path: Path,
    identity_model: IdentityModel,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.console import Console

    from deblurtool import ui
    from deblurtool.ui import ProgressBar

    monkeypatch.setattr(ui, "err", Console(stderr=True, force_terminal=True, highlight=False))
    spec = make_video(tmp_path / "in.mp4", frames=3, audio=False)
    summary = run_video(
        spec.path, tmp_path / "out.mp4", identity_model, EncodeConfig(), progress=ProgressBar("fps")
    )
    assert summary.frames == 3 and summary.fps > 0
    out, err = capsys.readouterr()
    assert out == "" and "in.mp4" in err and "3/3" in err  # the bar is drawn on stderr, to the true count


def test_the_library_prints_nothing(
    tmp_path: Path, identity_model: IdentityModel, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=2, audio=False)
    run_video(spec.path, tmp_path / "out.mp4", identity_model, EncodeConfig(), progress=True)  # 0.1's bool
    src = tmp_path / "in"
    save_image(src / "a.png", make_image("u8_rgb"))
    (src / "bad.png").write_bytes(b"")
    assert run_folder(src, tmp_path / "out", identity_model).failed
    assert capsys.readouterr() == ("", "")


# -- folder --------------------------------------------------------------------------------------------------

FOLDER_CASES = {
    "gray8.png": "u8_gray",
    "rgb8.png": "u8_rgb",
    "rgba8.png": "u8_rgba",
    "rgb16.png": "u16_rgb",
    "gray16.tif": "u16_gray",
    "nested/deeper/photo.jpg": "u8_rgb",
    "nested/scan.tiff": "u16_rgb",
    "nested/UPPER.PNG": "u8_rgba",
}


def _fill(src: Path) -> dict[str, np.ndarray]:
    made = {}
    for i, (rel, kind) in enumerate(FOLDER_CASES.items()):
        made[rel] = make_image(kind, seed=i)
        save_image(src / rel, made[rel])
    (src / "nested" / "readme.txt").write_text("not an image")
    return made


def test_folder_mirrors_paths_modes_and_depths(tmp_path: Path, identity_model: IdentityModel) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    made = _fill(src)
    summary = run_folder(src, dst, identity_model, progress=False)
    assert (summary.done, summary.skipped, summary.failed, summary.ignored) == (len(made), 0, [], 1)
    for rel, pixels in made.items():
        out = cv2.imdecode(np.fromfile(dst / rel, np.uint8), cv2.IMREAD_UNCHANGED)
        assert out.dtype == pixels.dtype and out.shape == pixels.shape, rel
        if not rel.endswith(".jpg"):
            np.testing.assert_array_equal(out, pixels)  # lossless formats, identity model: exact
    assert not (dst / "nested" / "readme.txt").exists()
    assert _leftovers(dst) == []


def test_folder_broken_file_fails_alone(tmp_path: Path, identity_model: IdentityModel) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    made = _fill(src)
    (src / "nested" / "zero.png").write_bytes(b"")
    good = (src / "rgb8.png").read_bytes()
    (src / "cut.png").write_bytes(good[: len(good) // 2])
    summary = run_folder(src, dst, identity_model, progress=False)
    assert summary.done == len(made)
    assert sorted(p.name for p, _ in summary.failed) == ["cut.png", "zero.png"]
    assert all("\n" not in reason for _, reason in summary.failed)
    assert not (dst / "cut.png").exists() and _leftovers(dst) == []


def test_folder_resume(tmp_path: Path, identity_model: IdentityModel) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    made = _fill(src)
    run_folder(src, dst, identity_model, progress=False, signature="A")
    calls = identity_model.calls
    again = run_folder(src, dst, identity_model, progress=False, signature="A")
    assert (again.done, again.skipped_done, identity_model.calls) == (0, len(made), calls)

    # An input changed since: redone. A leftover temp of a killed run: removed and redone.
    os.utime(src / "rgb8.png", ns=(1, 1))
    (dst / "gray8.png").unlink()
    stale = dst / f".gray8.png.{os.getpid() + 1}.tmp.png"
    stale.write_bytes(b"half")
    third = run_folder(src, dst, identity_model, progress=False, signature="A")
    assert (third.done, third.skipped_done) == (2, len(made) - 2)
    assert not stale.exists()

    # Other settings: everything is redone. A foreign file in the way is kept unless overwrite.
    foreign = dst / "new.png"
    save_image(src / "new.png", make_image("u8_rgb", seed=99))
    foreign.write_bytes(b"someone else's")
    fourth = run_folder(src, dst, identity_model, progress=False, signature="B")
    assert (fourth.done, fourth.skipped_existing) == (len(made), 1)
    assert foreign.read_bytes() == b"someone else's"
    fifth = run_folder(src, dst, identity_model, progress=False, signature="B", overwrite=True)
    assert fifth.done == len(made) + 1 and foreign.read_bytes() != b"someone else's"
    assert "1 existing output(s) kept" in fourth.line()


def test_folder_manifest_tolerates_a_cut_line(tmp_path: Path, identity_model: IdentityModel) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    save_image(src / "a.png", make_image("u8_rgb"))
    run_folder(src, dst, identity_model, progress=False, signature="A")
    with (dst / MANIFEST_NAME).open("a") as f:
        f.write('{"path": "b.png", "si')
    assert run_folder(src, dst, identity_model, progress=False, signature="A").skipped_done == 1


def test_folder_refuses_output_inside_input(tmp_path: Path, identity_model: IdentityModel) -> None:
    src = tmp_path / "in"
    save_image(src / "a.png", make_image("u8_rgb"))
    for dst in (src, src / "out", src / "x" / ".." / "y"):
        with pytest.raises(OutputError, match="inside the input folder"):
            run_folder(src, dst, identity_model, progress=False)
    with pytest.raises(InputError):
        run_folder(src / "a.png", tmp_path / "out", identity_model, progress=False)
    assert identity_model.calls == 0


def test_folder_interrupt_leaves_no_partial_file(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    _fill(src)
    with pytest.raises(KeyboardInterrupt):
        run_folder(src, dst, FailingModel(at=3, error=KeyboardInterrupt()), progress=False)
    assert len([p for p in dst.rglob("*") if p.is_file() and p.name != MANIFEST_NAME]) == 2
    assert _leftovers(dst) == []


def test_folder_takes_videos_too(tmp_path: Path, identity_model: IdentityModel) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    save_image(src / "a.png", make_image("u8_rgb"))
    (src / "clips").mkdir()
    make_video(src / "clips" / "one.mp4", frames=5, rotation=90)
    make_video(src / "clips" / "two.mkv", frames=4, pts=[0, 2, 3, 7])
    (src / "clips" / "fake.mov").write_text("not a video\n" * 20)
    summary = run_folder(src, dst, identity_model, progress=False, signature="A", encode=LOSSLESS)
    assert (summary.images, summary.videos, summary.done) == (1, 3, 3)
    assert [p.name for p, _ in summary.failed] == ["fake.mov"]
    assert "not a readable video" in summary.failed[0][1]
    assert summary.line().startswith("1 image(s), 3 video(s): 3 done, 0 skipped, 1 failed")
    for name in ("one.mp4", "two.mkv"):  # the same as `video` makes, in the same relative path
        alone = tmp_path / f"alone_{name}"
        run_video(src / "clips" / name, alone, IdentityModel(), LOSSLESS, progress=False)
        times, frames, fmt, rotation = decode_video(dst / "clips" / name)
        want = decode_video(alone)
        assert (times, fmt, rotation) == (want[0], want[2], want[3])
        assert len(frames) == len(want[1]) and all(map(np.array_equal, frames, want[1]))
        assert stream_packets(dst / "clips" / name, "audio") == stream_packets(src / "clips" / name, "audio")
    records = [line for line in (dst / MANIFEST_NAME).read_text().splitlines() if "one.mp4" in line]
    assert "encode=libx264/0/auto" in records[0]  # a video's record names its encoder settings
    again = run_folder(src, dst, identity_model, progress=False, signature="A", encode=LOSSLESS)
    assert (again.done, again.skipped_done) == (0, 3)
    other = EncodeConfig(codec="libx264", crf=20)
    redone = run_folder(src, dst, identity_model, progress=False, signature="A", encode=other)
    assert (redone.done, redone.skipped_done) == (2, 1)  # new encoder settings: the videos are redone
    assert _leftovers(dst) == [] and not list(dst.rglob("*.lock"))


class _Notes(LogProgress):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


def test_folder_video_notes_name_the_file(tmp_path: Path, identity_model: IdentityModel) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    make_video(src / "clip.avi", frames=3, audio=False)
    report = _Notes()
    summary = run_folder(src, dst, identity_model, progress=report, encode=EncodeConfig(crf=20))
    assert summary.done == 1 and summary.videos == 1
    assert report.notes == [
        f"note: {src / 'clip.avi'}: --crf 20 ignored: mpeg4 has no constant-quality setting"
    ]
