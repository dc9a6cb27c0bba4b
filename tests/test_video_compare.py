"""``video --compare OUT2``: the before/after view of the input and the result, written in the same run from
the same frames: twice as wide, the result's frame count, timing and audio; refused before any work when it
cannot be written; on failure neither output is left."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import FailingModel, H, IdentityModel, W, make_video, run_cli, smooth_rgb

from deblurtool.config import EncodeConfig
from deblurtool.errors import OutputError
from deblurtool.fsutil import output_lock
from deblurtool.media.time_range import TimeRange
from deblurtool.pipeline import run_video

LOSSLESS = EncodeConfig(codec="ffv1")


class Invert(IdentityModel):
    """A model whose output cannot be mistaken for its input."""

    def deblur_array(self, img: np.ndarray) -> np.ndarray:
        return 255 - super().deblur_array(img)


def _video(path: Path) -> tuple[list[Fraction], list[np.ndarray], int]:
    """(frame times, RGB frames, audio packets) of a video."""
    with av.open(str(path)) as c:
        frames = [(f.pts * f.time_base, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = sum(1 for p in c.demux(audio=0) if p.dts is not None) if c.streams.audio else 0
    return [t for t, _ in frames], [f for _, f in frames], audio


def test_view_has_both_halves_with_the_results_timing_and_audio(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=10).path
    dst, view = tmp_path / "out.mkv", tmp_path / "view.mkv"
    model = Invert()
    summary = run_video(src, dst, model, LOSSLESS, progress=False, compare=view)
    assert model.calls == 10  # each frame deblurred once, for both files
    assert summary.compare == view and f"before/after -> {view}" in summary.line()
    out_times, out_frames, out_audio = _video(dst)
    view_times, view_frames, view_audio = _video(view)
    assert view_times == out_times and len(view_frames) == 10
    assert view_audio == out_audio > 0
    for i, (shown, result) in enumerate(zip(view_frames, out_frames, strict=True)):
        assert shown.shape == (H, 2 * W, 3)
        below = slice(H // 2, H)  # under the labels
        before, after = shown[below, :W].astype(int), shown[below, W:].astype(int)
        assert np.abs(before - smooth_rgb(i)[below]).mean() < 2  # the input on the left
        assert np.abs(after - result[below]).mean() < 2  # the result on the right
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mkv", "view.mkv"]


def test_view_of_a_slice_matches_the_slice(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=24).path  # 1 s at 24 fps
    dst, view = tmp_path / "out.mkv", tmp_path / "view.mkv"
    run_video(src, dst, IdentityModel(), LOSSLESS, progress=False, compare=view,
              time_range=TimeRange(Fraction(1, 4), Fraction(3, 4)))  # fmt: skip
    out_times, _, out_audio = _video(dst)
    view_times, _, view_audio = _video(view)
    assert view_times == out_times and len(out_times) == 12 and out_times[0] == 0
    assert view_audio == out_audio > 0
    # The slice's audio is re-encoded for each file, each with its own decoder: the same sound in both.
    assert np.array_equal(_sound(view), _sound(dst)) and _sound(dst).size > 0


def _sound(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])


def test_a_failure_leaves_neither_output(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=10).path
    with pytest.raises(RuntimeError, match="boom"):
        run_video(src, tmp_path / "out.mkv", FailingModel(4, RuntimeError("boom")), LOSSLESS,
                  progress=False, compare=tmp_path / "sub" / "view.mkv")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]  # no temp, no lock, no folder made


def test_the_view_is_refused_before_any_work(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=4).path
    dst = tmp_path / "out.mp4"
    cases = [
        (src, "is the input file"),
        (dst, "is the output file"),
        (tmp_path / "view.png", "the before/after view is a video"),
        (tmp_path, "is a folder"),
    ]
    for view, message in cases:
        model = IdentityModel()
        with pytest.raises(OutputError, match=message):
            run_video(src, dst, model, EncodeConfig(), progress=False, compare=view)
        assert model.calls == 0 and not dst.exists()
    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"mine")
    with pytest.raises(OutputError, match=r"exists \(use --overwrite"):
        run_video(src, dst, IdentityModel(), EncodeConfig(), progress=False, compare=taken)
    assert taken.read_bytes() == b"mine" and not dst.exists()
    run_video(src, dst, IdentityModel(), EncodeConfig(), progress=False, compare=taken, overwrite=True)
    assert _video(taken)[1][0].shape == (H, 2 * W, 3)


# -- the command line ----------------------------------------------------------------------------------------


@pytest.fixture
def _tiny(tiny_default: Path) -> None:
    """Commands load the tiny identity generator as their default weights."""


@pytest.mark.usefixtures("_tiny")
def test_cli_compare(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=6).path
    dst, view = tmp_path / "out.mkv", tmp_path / "view.mkv"
    code, output = run_cli("video", src, dst, "--compare", view, "--codec", "ffv1", "--no-progress")
    assert code == 0, output
    assert f"before/after -> {view}" in output
    assert _video(view)[0] == _video(dst)[0] and _video(view)[1][0].shape == (H, 2 * W, 3)


@pytest.mark.usefixtures("_tiny")
def test_cli_refuses_the_view_before_the_model_loads(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", frames=4).path
    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"mine")
    locked = tmp_path / "locked.mp4"
    with output_lock(locked):
        for args, message in [
            (["--compare", taken], "exists (use --overwrite to replace it)"),
            (["--compare", src], "is the input file"),
            (["--compare", tmp_path / "out.mp4"], "is the output file"),
            (["--compare", tmp_path / "v.jpg"], "the before/after view is a video"),
            (["--compare", locked], "another deblurtool job"),
            (["--compare", tmp_path / "v.mp4", "--ray", "local"], "--compare runs here, not on Ray"),
            (["--compare", tmp_path / "v.mp4", "--crf", "60"], "--crf"),
        ]:
            code, output = run_cli("video", src, tmp_path / "out.mp4", *args, "--no-progress")
            assert code == 2 and message in " ".join(output.split()), (args, output)
            assert "model:" not in output  # refused before the model loaded
    assert taken.read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "taken.mp4"]
