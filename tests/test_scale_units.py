"""Scale-out pieces that need no Ray cluster: chunk planning, exact range decoding, the worker's checks, the
driver's lock, the options without Ray, and the overhead script (which starts its own cluster)."""

from __future__ import annotations

import itertools
import json
import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import load_script, make_image, make_video, save_image
from typer.testing import CliRunner

from deblurtool.config import EncodeConfig, ModelSpec, RuntimeConfig
from deblurtool.errors import OutputError
from deblurtool.fsutil import output_lock
from deblurtool.pipeline import MANIFEST_NAME

VFR_PTS = [int(p) for p in np.cumsum([1 + (i * 7) % 3 for i in range(24)]) - 1]


def _spec(weights: Path, encode: EncodeConfig = EncodeConfig(crf=0)) -> Any:
    from deblurtool.scale.run import worker_spec

    return worker_spec(ModelSpec(weights, RuntimeConfig(device="cpu")), encode)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_ray_option_without_ray_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deblurtool.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    src = make_video(tmp_path / "in.mp4", frames=2).path
    for command in (["video", str(src), str(tmp_path / "o.mp4")], ["folder", str(tmp_path), "out"]):
        result = CliRunner().invoke(app, [*command, "--ray", "local"])
        assert result.exit_code == 2
        assert result.output.strip() == 'error: --ray needs Ray: pip install "deblurtool[ray]"'
    assert _files(tmp_path) == ["in.mp4"]


def test_the_ray_options_are_in_the_help_of_both_commands() -> None:
    from deblurtool.cli import app

    for command in ("video", "folder"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        for option in ("--ray", "--chunk-frames", "--ray-workers", '"deblurtool[ray]"'):
            assert option in result.output, (command, option)


def test_without_ray_option_ray_is_never_imported(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deblurtool.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # any import of Ray would fail the command
    src, dst = tmp_path / "in", tmp_path / "out"
    save_image(src / "a.png", make_image("u8_rgb"))
    make_video(src / "clip.mp4", frames=3)
    args = ["folder", src, dst, "--weights", tiny_weights, "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "1 image(s), 1 video(s): 2 done, 0 skipped, 0 failed" in result.output
    assert _files(dst) == sorted([MANIFEST_NAME, "a.png", "clip.mp4"])


def test_the_driver_takes_the_output_lock(tmp_path: Path, tiny_weights: Path) -> None:
    """A Ray job into an output another job is writing is refused before it connects to any cluster, as
    without Ray (the address would not even be reachable)."""
    from deblurtool.scale.run import run_ray_folder, run_ray_video

    src, dst = tmp_path / "in", tmp_path / "out"
    save_image(src / "a.png", make_image("u8_rgb"))
    video = make_video(tmp_path / "clip.mp4", frames=2).path
    dst.mkdir()
    with output_lock(dst), pytest.raises(OutputError, match="another deblurtool job"):
        run_ray_folder(src, dst, _spec(tiny_weights), address="192.0.2.1:1")
    with output_lock(dst / "v.mp4"), pytest.raises(OutputError, match="another deblurtool job"):
        run_ray_video(video, dst / "v.mp4", _spec(tiny_weights), address="192.0.2.1:1")
    assert _files(dst) == []


def test_worker_that_cannot_see_the_files_fails_them_with_a_reason(
    tmp_path: Path, tiny_weights: Path
) -> None:
    from dataclasses import replace

    from deblurtool.pipeline.plan import Unit
    from deblurtool.scale.worker import UnitWorker

    image = save_image(tmp_path / "in" / "a.png", make_image("u8_rgb"))
    marker = tmp_path / "out" / ".deblurtool.lock"
    worker = UnitWorker(replace(_spec(tiny_weights), marker=marker), 0)
    assert worker.ready()["error"] is None and worker.ready()["description"].startswith("model: device cpu")
    unit = Unit("image", image, tmp_path / "out" / "a.png", Path("a.png"), 1)
    unseen_output = worker.run(unit)
    assert not unseen_output.ok and "shared filesystem" in unseen_output.reason
    marker.parent.mkdir()
    marker.write_text("1 host\n")
    image.unlink()
    unseen_input = worker.run(unit)
    assert not unseen_input.ok and "not visible on node" in unseen_input.reason
    assert not (tmp_path / "out" / "a.png").exists()


def test_worker_spec_leaves_the_gpu_choice_to_ray() -> None:
    from deblurtool.scale.run import worker_spec

    spec = worker_spec(ModelSpec(Path("w.safetensors"), RuntimeConfig(device="cuda:3")), EncodeConfig())
    model = spec.model
    assert model.runtime.device == "cuda" and model.weights is not None and model.weights.is_absolute()


def test_chunk_ranges_cover_every_timestamp_once() -> None:
    from deblurtool.pipeline.plan import VideoProbe, plan_ranges

    probe = VideoProbe(time_base=Fraction(1, 12288), rate=Fraction(30000, 1001), start=-1024, frames=1000)
    ranges = plan_ranges(probe, 300)
    assert len(ranges) == 4 and ranges[0].lo is None and ranges[-1].hi is None
    assert all(a.hi == b.lo for a, b in itertools.pairwise(ranges))
    assert plan_ranges(probe, 1000) == [] and plan_ranges(None, 10) == []
    minute = plan_ranges(VideoProbe(Fraction(1, 90000), Fraction(25), 0, 25 * 150), None)
    assert len(minute) == 3  # default: about a minute of frames each


@pytest.mark.parametrize("name", ["bframes.mp4", "vfr.mp4", "b.mkv", "coarse_seek.ts"])
def test_a_range_decodes_exactly_the_frames_of_a_full_decode(tmp_path: Path, name: str) -> None:
    """Seek to the keyframe before ``lo``, drop what comes before it, stop at ``hi``: for every boundary the
    frames (pixels and pts) are those of one decode from the start."""
    from deblurtool.media.video_reader import DecodedFrame, VideoReader
    from deblurtool.scale.chunk import decode_range

    pts = VFR_PTS if name.startswith("vfr") else None
    spec = make_video(tmp_path / name, frames=24, gop=4, pts=pts)
    with VideoReader(spec.path) as reader:
        reader.start()
        full = [f for f in reader.items() if isinstance(f, DecodedFrame)]
        tb = reader.info.time_base
    for i in range(0, len(full), 2):
        lo, hi = full[i].pts, full[i + 3].pts if i + 3 < len(full) else None
        got = list(decode_range(spec.path, lo, hi, "rgb24", tb))
        want = [f for f in full if f.pts >= lo and (hi is None or f.pts < hi)]
        assert [f.pts for f in got] == [f.pts for f in want], (lo, hi)
        assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(got, want, strict=True)), (lo, hi)
    first = decode_range(spec.path, None, full[2].pts, "rgb24", tb)  # the first range is open below
    assert [f.pts for f in first] == [f.pts for f in full[:2]]


def test_a_chunk_record_survives_a_rerun_only_whole(tmp_path: Path) -> None:
    from deblurtool.scale.units import ChunkRecord, read_record, record_path, write_record

    chunk = tmp_path / "00001-abc.mp4"
    record = ChunkRecord(pts=[3, 4, 6], pix_fmt="yuv420p", notes=["note: x"])
    write_record(chunk, record)
    assert read_record(chunk) is None  # a record without its chunk file is not a finished chunk
    chunk.write_bytes(b"video")
    assert read_record(chunk) == record
    record_path(chunk).write_text('{"pts": [3, 4')  # cut short
    assert read_record(chunk) is None


@pytest.mark.slow
def test_bench_script_compares_the_two_paths(tmp_path: Path, tiny_weights: Path) -> None:
    if not os.environ.get("CI"):  # CI installs the extra: a missing Ray there is a failure, not a skip
        pytest.importorskip("ray")
    bench = load_script("bench_ray")
    out = tmp_path / "bench.json"
    args = ["--frames", "6", "--images", "2", "--size", "64x48", "--chunk-frames", "3", "--repeat", "1"]
    result = bench.main([*args, "--weights", str(tiny_weights), "--json", str(out)])
    assert result["frames"] == 8 and result["single_fps"] > 0 and result["ray_fps"] > 0
    assert json.loads(out.read_text())["ray_vs_single"] == result["ray_vs_single"]
    assert len(result["workers"]) == 1 and "8 frame(s)" in result["workers"][0]


def test_the_job_progress_of_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Ray job's progress comes as counts (frames done of a total that grows) and the workers alive: in a
    log a line with both, in a terminal the tool's bar with the workers after the ETA."""
    from rich.console import Console

    from deblurtool import ui

    with ui.ProgressBar("fps", log_every=0.0).job("archive", 10) as update:
        update(4, 10, "2 worker(s)")
        update(9, 12, "1 worker(s)")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("archive: 4/10, ") and lines[0].endswith(", 2 worker(s)") and "ETA" in lines[0]
    assert lines[1].startswith("archive: 9/12, ") and lines[1].endswith(", 1 worker(s)")
    monkeypatch.setattr(ui, "err", Console(stderr=True, force_terminal=True, width=150, highlight=False))
    with ui.ProgressBar("fps").job("archive", 10) as update:
        update(12, 12, "2 worker(s)")
    err = capsys.readouterr().err
    assert "archive" in err and "12/12" in err and "2 worker(s)" in err
