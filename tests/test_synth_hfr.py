"""trainers.synth.hfr and `deblurtool synth --fps`: GoPro-style pairs from clips of known motion."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import typer
from shared_layout import BAR_W, bar_coverage, moving_bar, write_lossless_video, write_png
from typer.testing import CliRunner

from deblurtool.errors import InputError, OutputError
from deblurtool.pairs import find_pairs, read_pair
from trainers.synth.hfr import (
    Clip,
    average_frames,
    draw_window,
    find_clips,
    iter_frames,
    make_pair,
    read_clip,
    spaced_windows,
    stream_windows,
    window_range,
    write_pairs,
)
from trainers.synth.hfr_dataset import HfrSettings, make_hfr_dataset


def test_window_range_converts_gopro_exposure_between_capture_rates() -> None:
    assert window_range(240.0) == (7, 13)
    assert window_range(1000.0) == (29, 54)  # 7/240 s and 13/240 s at 1000 fps
    assert window_range(30.0) == (2, 2)  # never below two frames: one frame is no blur
    assert window_range(1000.0, (0.005, 0.033)) == (5, 33)
    with pytest.raises(ValueError):
        window_range(240.0, (0.05, 0.01))


@pytest.mark.parametrize("n", [5, 7, 9])
def test_mean_of_a_moving_bar_is_the_exact_box_blur(n: int) -> None:
    """A bar of 255 moving 1 px a frame, averaged over n frames: each column is 255 * frames covering it / n
    (n odd: never a tie to round), and the target is the middle frame."""
    clip = Clip("bar", moving_bar(16), 240.0)
    blur, sharp = make_pair(clip, 2, n)
    cover = bar_coverage(2, n, clip.frames.shape[2])
    expected = np.rint(255.0 * cover / n).astype(np.uint8)
    assert np.array_equal(blur[0, :, 0], expected) and np.array_equal(blur[:, :, 1], blur[:, :, 0])
    assert np.array_equal(sharp, clip.frames[2 + n // 2])
    assert int(blur[0].astype(int).sum()) == pytest.approx(255 * BAR_W * 3, abs=3 * n)  # energy kept


def test_linear_light_average_follows_the_gamma_curve_and_is_brighter() -> None:
    frames = moving_bar(7)
    srgb, lin = average_frames(frames), average_frames(frames, linear=True)
    cover = bar_coverage(0, 7, frames.shape[2])
    expected = 255.0 * (cover / 7) ** (1 / 2.2)
    assert np.abs(lin[0, :, 0].astype(float) - expected).max() <= 0.5 + 1e-3
    partial = (cover > 0) & (cover < 7)
    assert (lin[0, partial, 0] > srgb[0, partial, 0]).all()
    assert np.array_equal(lin[0, cover == 7, 0], srgb[0, cover == 7, 0])  # full cover: 255 either way


def test_read_clip_from_a_video_and_from_a_frame_folder(tmp_path: Path) -> None:
    frames = moving_bar(9)
    video = write_lossless_video(tmp_path / "bar.mkv", frames)
    folder = tmp_path / "frames"
    for k, f in enumerate(frames):
        write_png(folder / f"{k:04d}.png", f)
    for src in (video, folder):
        clip = read_clip(src, fps=1000.0)
        assert clip.fps == 1000.0 and np.array_equal(clip.frames, frames)
    assert read_clip(video, fps=240.0, max_frames=4).frames.shape[0] == 4
    assert read_clip(folder, fps=240.0, scale=0.5).frames.shape == (9, 12, 24, 3)
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(InputError, match=r"bad\.mp4"):
        read_clip(tmp_path / "bad.mp4", fps=240.0)
    write_png(folder / "9999.png", np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(InputError, match="different sizes"):
        list(iter_frames(folder))


def test_draw_and_spaced_windows_stay_inside_the_clip() -> None:
    clip = Clip("c", moving_bar(20), 240.0)
    rng = np.random.default_rng(0)
    draws = [draw_window(rng, clip, (7, 13)) for _ in range(200)]
    assert {n for _, n in draws} == set(range(7, 14))
    assert all(t0 >= 0 and t0 + n <= 20 for t0, n in draws)
    assert draw_window(rng, Clip("short", moving_bar(5), 240.0), (7, 13)) == (0, 5)
    assert spaced_windows(clip, 9, 3) == [0, 6, 11]


def test_write_pairs_layout_names_and_atomic_files(tmp_path: Path) -> None:
    clips = [Clip("bar", moving_bar(20), 240.0), Clip("bar2", moving_bar(16), 480.0)]
    n = write_pairs(clips, tmp_path / "out", per_clip=4, linear=True, seed=1)
    assert n == 8
    for clip in clips:
        pairs = find_pairs(tmp_path / "out" / clip.name, blur_dir="blur_gamma")
        assert len(pairs) == 4
        for p in pairs:
            t0, n_frames = (int(v) for v in p.name.split("/")[-1].split("_avg"))
            lo, hi = window_range(clip.fps)
            assert lo <= n_frames <= min(hi, len(clip.frames))
            blur, sharp = read_pair(p)
            expected_blur, expected_sharp = make_pair(clip, t0, n_frames, linear=True)
            assert np.array_equal(blur, expected_blur) and np.array_equal(sharp, expected_sharp)
    names = [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert all(not n.startswith(".") and ".tmp" not in n for n in names)


def test_stream_windows_walk_the_clip_without_holding_it() -> None:
    frames = moving_bar(40)
    windows = list(stream_windows(iter(frames), np.random.default_rng(3), (3, 5)))
    starts = [w.t0 for w in windows]
    assert starts[0] == 0 and all(b.t0 == a.t0 + a.n for a, b in itertools.pairwise(windows))
    assert windows[-1].t0 + windows[-1].n <= 40 < windows[-1].t0 + windows[-1].n + 5 + 1
    clip = Clip("bar", frames, 240.0)
    for w in windows:
        blur, sharp = make_pair(clip, w.t0, w.n)
        assert np.array_equal(w.blur_u8, blur) and np.array_equal(w.sharp_u8, sharp)
    overlapping = list(stream_windows(iter(frames), np.random.default_rng(3), (4, 4), step=1, limit=5))
    assert [(w.t0, w.n) for w in overlapping] == [(i, 4) for i in range(5)]
    assert not list(stream_windows(iter(frames[:2]), np.random.default_rng(0), (3, 3)))


def _cli() -> typer.Typer:
    from deblurtool.commands.synth import synth

    app = typer.Typer()
    app.command()(synth)
    return app


def test_synth_command_from_clips(tmp_path: Path) -> None:
    src = tmp_path / "clips"
    write_lossless_video(src / "bar.mkv", moving_bar(30))
    for k, f in enumerate(moving_bar(20, level=200)):
        write_png(src / "frames" / f"{k:03d}.png", f)
    out = tmp_path / "out"
    runner = CliRunner()
    args = [str(src), str(out), "--fps", "240", "--seed", "2"]
    r = runner.invoke(_cli(), args)
    assert r.exit_code == 0, r.output
    assert "pairs from 2 clip(s)" in r.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["window_frames"] == [7, 13] and sorted(manifest["entries"]) == ["bar", "frames"]
    for rec in manifest["samples"]:
        assert 7 <= rec["n"] <= 13 and rec["sharp"] == rec["t0"] + rec["n"] // 2
        blur, sharp = read_pair(find_pairs(out / rec["clip"])[0])
        assert blur.shape == sharp.shape
    bar = next(r for r in manifest["samples"] if r["clip"] == "bar")
    stem = f"{bar['t0']:06d}_avg{bar['n']}"
    blur = read_pair(next(p for p in find_pairs(out / "bar") if p.name.endswith(stem)))
    expected = np.rint(255.0 * bar_coverage(bar["t0"], bar["n"], 48) / bar["n"])
    assert np.abs(blur[0][0, :, 0] - expected).max() <= 1  # (n may be even: a tie rounds either way)
    before = {p: p.read_bytes() for p in out.rglob("*.png")}
    r = runner.invoke(_cli(), args)
    assert r.exit_code == 2 and "overwrite" in r.output
    r = runner.invoke(_cli(), [*args, "--overwrite"])
    assert r.exit_code == 0
    assert {p: p.read_bytes() for p in out.rglob("*.png")} == before  # same seed, same bytes

    lin = tmp_path / "lin"
    r = runner.invoke(_cli(), [str(src / "bar.mkv"), str(lin), "--fps", "1000", "--exposure", "3,4",
                                "--linear", "--scale", "0.5", "--count", "2"])  # fmt: skip
    assert r.exit_code == 0, r.output
    pairs = find_pairs(lin / "bar", blur_dir="blur_gamma")
    assert len(pairs) == 2 and read_pair(pairs[0])[0].shape == (12, 24, 3)
    assert all(p.name.split("/")[-1].endswith(("_avg3", "_avg4")) for p in pairs)


def test_synth_command_refuses_mixed_modes_and_a_clip_without_fps(tmp_path: Path) -> None:
    video = write_lossless_video(tmp_path / "bar.mp4", moving_bar(12))
    runner = CliRunner()
    r = runner.invoke(_cli(), [str(video), str(tmp_path / "o")])
    assert r.exit_code == 2 and "--fps" in r.output
    r = runner.invoke(_cli(), [str(video), str(tmp_path / "o"), "--fps", "240", "--size", "64"])
    assert r.exit_code == 2 and "--size" in r.output
    r = runner.invoke(_cli(), [str(tmp_path), str(tmp_path / "o"), "--linear"])
    assert r.exit_code == 2 and "--linear" in r.output
    assert not (tmp_path / "o").exists()


def test_bad_clips_are_skipped_and_a_failed_run_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "clips"
    write_lossless_video(src / "a_good.mkv", moving_bar(20))
    (src / "b_broken.mp4").parent.mkdir(exist_ok=True)
    (src / "b_broken.mp4").write_bytes(b"\x00" * 100)
    write_lossless_video(src / "c_short.mkv", moving_bar(3))
    out = tmp_path / "out"
    r = CliRunner().invoke(_cli(), [str(src), str(out), "--fps", "240"])
    assert r.exit_code == 1, r.output
    assert "b_broken.mp4" in r.stderr and "c_short.mkv" in r.stderr and "too short" in r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["entries"] == ["a_good"] and len(manifest["skipped"]) == 2
    assert not (out / "b_broken").exists()

    # A run that fails half-way (here: the disk "fills" after some files) leaves no dataset behind,
    # and the rerun needs no --overwrite.
    out2 = tmp_path / "out2"
    calls = {"n": 0}
    import trainers.synth.hfr_dataset as hd

    real = hd.write_bytes

    def failing(path: Path, data: bytes, **kw: object) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(28, "No space left on device")
        real(path, data)

    with monkeypatch.context() as m:
        m.setattr(hd, "write_bytes", failing)
        with pytest.raises(OSError):
            make_hfr_dataset(src, out2, HfrSettings(fps=240.0), warn=lambda _: None)
    assert not out2.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out2")]
    result = make_hfr_dataset(src, out2, HfrSettings(fps=240.0), warn=lambda _: None)
    assert result.pairs > 0 and (out2 / "manifest.json").is_file()


def test_dataset_never_replaces_files_it_did_not_write(tmp_path: Path) -> None:
    src = tmp_path / "clips"
    write_lossless_video(src / "bar.mkv", moving_bar(20))
    out = tmp_path / "out"
    (out / "bar").mkdir(parents=True)
    (out / "bar" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="bar"):
        make_hfr_dataset(src, out, HfrSettings(fps=240.0), overwrite=True, warn=lambda _: None)
    assert (out / "bar" / "notes.txt").read_text() == "mine"
    assert find_clips(src / "bar.mkv") == [src / "bar.mkv"]
    with pytest.raises(InputError):
        find_clips(tmp_path / "missing")
    stale = tmp_path / f".out.synth-{2**22 + 12345}-0123abcd"  # a killed run's folder (no such process)
    stale.mkdir()
    (out / "bar" / "notes.txt").unlink()
    (out / "bar").rmdir()
    make_hfr_dataset(src, out, HfrSettings(fps=240.0), warn=lambda _: None)
    assert not stale.exists() and os.listdir(out)
