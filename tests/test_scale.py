"""Scale-out on a real Ray cluster started here (2 CPUs, workers as separate processes: ``ray_cluster`` in
conftest), with the tiny identity generator saved as a real .safetensors file and media made on the fly: the
"done when" list of issue 12. test_scale_video.py checks that a Ray run keeps what `video` keeps and the
command line on Ray; test_scale_units.py the pieces that need no cluster.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (
    JobReport,
    Recorder,
    damage_packet,
    decode_video,
    make_image,
    make_video,
    save_image,
    stream_packets,
)

from deblurtool.config import EncodeConfig, ModelSpec, RuntimeConfig
from deblurtool.pipeline import MANIFEST_NAME, run_folder, run_video

LOSSLESS = EncodeConfig(crf=0)  # x264 at crf 0: the joined chunks can be compared frame for frame
VFR_PTS = [int(p) for p in np.cumsum([1 + (i * 7) % 3 for i in range(36)]) - 1]


# A fork of a process that has run both a Ray driver and OpenVINO has crashed it (segfault in the dynamic
# loader), so these run in a pytest process of their own: `pytest -m ray` (the README's test command).
pytestmark = pytest.mark.ray


def _spec(weights: Path, encode: EncodeConfig = LOSSLESS) -> Any:
    from deblurtool.scale.run import worker_spec

    return worker_spec(ModelSpec(weights, RuntimeConfig(device="cpu")), encode)


def _tree(src: Path, *, long_name: str = "a_long.mp4", damaged: bool = False) -> dict[str, str]:
    """A mixed tree: images, short videos with audio, one long video (chunked), two broken files (and a long
    video with a damaged packet). Returns {relative path: kind} of the outputs expected."""
    files = {
        "p/rgb8.png": "u8_rgb",
        "p/deep/rgba16.png": "u16_rgba",
        "gray.png": "u8_gray",
        "photo.jpg": "u8_rgb",
    }
    for i, (rel, kind) in enumerate(files.items()):
        save_image(src / rel, make_image(kind, height=40, width=56, seed=i))
    (src / "v").mkdir()
    make_video(src / "v" / "short.mp4", frames=6)
    make_video(src / "v" / "short.mkv", frames=5, pts=[0, 1, 3, 4, 7])
    make_video(src / long_name, frames=36, gop=5, pts=VFR_PTS, rotation=90)
    (src / "broken.png").write_bytes(b"")
    (src / "v" / "not_a_video.mp4").write_text("hello\n" * 50)
    (src / "notes.txt").write_text("ignored")
    videos = dict.fromkeys(["v/short.mp4", "v/short.mkv", long_name], "video")
    if damaged:  # the decoder rejects one packet: its chunk cannot be made exactly, the video runs whole
        intact = make_video(src / "v" / "intact.mp4", frames=30, gop=5).path
        damage_packet(intact, src / "v" / "damaged.mp4", 12)
        intact.unlink()
        videos["v/damaged.mp4"] = "video"
    return {**dict.fromkeys(files, "image"), **videos}


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _same_video(a: Path, b: Path) -> None:
    times_a, frames_a, fmt_a, rot_a = decode_video(a)
    times_b, frames_b, fmt_b, rot_b = decode_video(b)
    assert times_a == times_b and (fmt_a, rot_a) == (fmt_b, rot_b)
    assert len(frames_a) == len(frames_b) and all(map(np.array_equal, frames_a, frames_b))
    assert stream_packets(a, "audio") == stream_packets(b, "audio")


def _model(weights: Path) -> Any:
    from deblurtool.inference import Deblurrer

    return Deblurrer.from_weights(weights, runtime=RuntimeConfig(device="cpu"))


def _no_leftovers(dst: Path) -> None:
    hidden = [f for f in _files(dst) if "/." in f"/{f}" and not f.endswith(MANIFEST_NAME)]
    assert hidden == [], hidden  # no temp file, no chunk, no lock


def _manifest(dst: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (dst / MANIFEST_NAME).read_text().splitlines()]


# -- the "done when" list ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_mixed_tree_matches_the_single_process_run(
    ray_cluster: Any, tmp_path: Path, tiny_weights: Path
) -> None:
    from deblurtool.scale.run import run_ray_folder

    src, one, many = tmp_path / "in", tmp_path / "single", tmp_path / "ray"
    kinds = _tree(src, damaged=True)
    model = _model(tiny_weights)
    run_folder(src, one, model, signature=model.signature, encode=LOSSLESS)
    events, report, said = Recorder(), JobReport(), []
    outcome = run_ray_folder(src, many, _spec(tiny_weights), address="auto", chunk_frames=10, workers=2,
                             progress=report, events=events, say=said.append)  # fmt: skip
    summary = outcome.summary
    assert (summary.images, summary.videos, summary.done, summary.ignored) == (5, 5, 7, 1)
    failed = sorted((p.name, why) for p, why in summary.failed)
    assert [name for name, _ in failed] == ["broken.png", "damaged.mp4", "not_a_video.mp4"]
    assert sorted(report.failures) == sorted(summary.failed)
    assert all("\n" not in why for _, why in failed)
    assert "1 damaged video packet(s) skipped" in failed[1][1]  # as without Ray, the same words
    assert any("damaged.mp4: chunks not usable" in line for line in report.notes)
    assert said[0].startswith("model: device cpu, engine openvino, precision")
    assert _files(one) == _files(many)
    for rel, kind in kinds.items():
        if kind == "image":
            assert (one / rel).read_bytes() == (many / rel).read_bytes(), rel
        else:
            _same_video(one / rel, many / rel)
    inputs = ("path", "size", "mtime_ns", "signature")  # (the outputs' own size and time differ by run)
    assert sorted(json.dumps([e[k] for k in inputs]) for e in _manifest(one)) == sorted(
        json.dumps([e[k] for k in inputs]) for e in _manifest(many)
    )
    assert len(events.names("submit")) >= 4 + 3 + 4 + 1  # the long video went out in 4 chunks
    assert sum("a_long.mp4#" in u for u in events.names("submit")) == 4
    assert len(outcome.workers) == 2 and all("unit(s)" in line for line in outcome.workers)
    _no_leftovers(many)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "encode", "pts"),
    [("vfr.mp4", LOSSLESS, VFR_PTS), ("cfr_bframes.mkv", EncodeConfig(crf=23), None)],
)
def test_long_video_joins_with_the_source_frames_timestamps_and_audio(
    ray_cluster: Any,
    tmp_path: Path,
    tiny_weights: Path,
    name: str,
    encode: EncodeConfig,
    pts: list[int] | None,
) -> None:
    from deblurtool.scale.run import run_ray_video

    spec_src = make_video(tmp_path / f"src_{name}", frames=36, gop=5, pts=pts, rotation=-90)
    dst = tmp_path / "out" / name
    events = Recorder()
    started = time.monotonic()
    outcome = run_ray_video(spec_src.path, dst, _spec(tiny_weights, encode), address="auto", chunk_frames=9,
                            workers=2, events=events)  # fmt: skip
    asks = len(events.names("progress", "in_flight"))  # each is a call to the progress actor
    assert asks <= 2 * (time.monotonic() - started) + 2  # twice a second, not in a loop (a short job: 0)
    chunks = [u for u in events.names("submit") if "#" in u]
    assert len(chunks) >= 3  # (the count is planned from the header: mkv has only a duration)
    times, frames, _, rotation = decode_video(dst)
    assert times == decode_video(spec_src.path)[0]  # (Matroska stores milliseconds)
    assert name.endswith(".mkv") or times == [Fraction(p, 24) for p in spec_src.pts]
    assert len(frames) == 36 == outcome.video.frames and rotation == -90
    assert stream_packets(dst, "audio") == stream_packets(spec_src.path, "audio")
    assert outcome.video.copied_streams == 1
    with_one = tmp_path / f"single_{name}"
    run_video(spec_src.path, with_one, _model(tiny_weights), encode)
    if encode.crf == 0:
        _same_video(with_one, dst)  # lossless: the joined chunks are the frames of the one-piece run
    else:
        assert decode_video(with_one)[0] == times
    assert _files(dst.parent) == [name]


@pytest.mark.slow
def test_worker_killed_mid_job_every_output_exactly_once(
    ray_cluster: Any, tmp_path: Path, tiny_weights: Path
) -> None:
    from deblurtool.scale.run import run_ray_folder

    src, dst = tmp_path / "in", tmp_path / "out"
    kinds = _tree(src)
    events = Recorder()
    killed: list[int] = []

    def kill_first_to_finish(name: str, info: dict[str, Any]) -> None:
        if name == "result" and not killed:  # that worker is already busy with its next unit
            killed.append(events.pids[info["worker"]])
            os.kill(killed[0], signal.SIGKILL)

    events.on = kill_first_to_finish
    outcome = run_ray_folder(src, dst, _spec(tiny_weights), address="auto", chunk_frames=10, workers=2,
                             events=events)  # fmt: skip
    assert killed and events.names("died", "worker") and events.names("retry")
    assert any("death(s) survived" in line for line in outcome.workers)
    assert outcome.summary.done == 7 and len(outcome.summary.failed) == 2
    expected = sorted([*kinds, MANIFEST_NAME])
    assert _files(dst) == expected  # every output once: no temp, no chunk, no duplicate
    paths = [e["path"] for e in _manifest(dst)]
    assert sorted(paths) == sorted(kinds) and len(set(paths)) == len(paths)
    for rel, kind in kinds.items():
        if kind == "image":
            assert _decodes(dst / rel), rel
        else:
            times, _, _, _ = decode_video(dst / rel)
            assert times == decode_video(src / rel)[0], rel


def _decodes(path: Path) -> bool:
    from deblurtool.media.image_io import read_image

    return read_image(path).pages[0].size > 0


@pytest.mark.slow
def test_interrupted_driver_resumes_without_redoing_finished_work(
    ray_cluster: Any, tmp_path: Path, tiny_weights: Path
) -> None:
    from deblurtool.scale.run import run_ray_folder

    src, dst = tmp_path / "in", tmp_path / "out"
    kinds = _tree(src, long_name="m_long.mp4")
    first = Recorder()

    def interrupt(name: str, info: dict[str, Any]) -> None:
        if name == "result" and len([u for u in first.names("result") if "#" in u]) == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises in the driver's loop: here, half-way in a video

    first.on = interrupt
    with pytest.raises(KeyboardInterrupt):
        run_ray_folder(
            src, dst, _spec(tiny_weights), address="auto", chunk_frames=10, workers=2, events=first
        )
    done_first = {info["unit"] for name, info in first.log if name == "result" and info["ok"]}
    chunks_done = {u for u in done_first if "#" in u}
    assert len(chunks_done) == 2 and not (dst / "m_long.mp4").exists()
    assert not (dst / ".deblurtool.lock").exists()  # the driver's lock went with it

    second = Recorder()
    outcome = run_ray_folder(src, dst, _spec(tiny_weights), address="auto", chunk_frames=10, workers=2,
                             events=second)  # fmt: skip
    redone = set(second.names("submit")) & done_first
    assert redone == set()  # finished files skipped, finished chunks reused
    # Every chunk the driver saw finish is reused; a worker may also have finished writing one more chunk in
    # the moment the driver stopped, and a finished chunk on disk is reused too.
    assert outcome.reused_chunks >= len(chunks_done)
    files_done_first = {u for u in done_first if "#" not in u and not u.startswith(("broken", "v/not_a"))}
    assert outcome.summary.skipped_done == len(files_done_first)
    assert outcome.summary.done + outcome.summary.skipped_done == 7
    assert _files(dst) == sorted([*kinds, MANIFEST_NAME])
    times, frames, _, _ = decode_video(dst / "m_long.mp4")
    assert times == decode_video(src / "m_long.mp4")[0] and len(frames) == 36
    _no_leftovers(dst)


_CTRL_C_RUN = """
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (see test_reliability)
from deblurtool.cli import app

app(prog_name="deblurtool")
"""


@pytest.mark.slow
def test_ctrl_c_on_the_driver_exits_130_and_the_rerun_reuses_its_chunks(
    ray_cluster: Any, tmp_path: Path, tiny_weights: Path
) -> None:
    """A real SIGINT to `deblurtool folder --ray local` (its own cluster, in a subprocess) once a chunk of the
    long video is finished; the rerun (on this module's cluster) reuses that chunk and finishes the job."""
    import subprocess
    import threading

    from deblurtool.pipeline.plan import chunk_dir
    from deblurtool.scale.run import run_ray_folder

    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    make_video(src / "long.mp4", frames=240, gop=12, width=160, height=120)
    save_image(src / "a.png", make_image("u8_rgb"))
    script = tmp_path / "run.py"
    script.write_text(_CTRL_C_RUN)
    args = ["folder", src, dst, "--weights", tiny_weights, "--device", "cpu", "--ray", "local"]
    args += ["--chunk-frames", "20", "--no-progress"]
    proc = subprocess.Popen([sys.executable, str(script), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    guard = threading.Timer(240, proc.kill)  # a hang fails the test instead of blocking the suite
    guard.start()
    try:
        while not list(chunk_dir(dst / "long.mp4").glob("*.json")) and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate()
    finally:
        guard.cancel()
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err and "Traceback" not in err
    assert not (dst / "long.mp4").exists() and not (dst / ".deblurtool.lock").exists()
    outcome = run_ray_folder(src, dst, _spec(tiny_weights, EncodeConfig()), address="auto", chunk_frames=20,
                             workers=2)  # fmt: skip
    assert outcome.reused_chunks >= 1 and outcome.summary.done + outcome.summary.skipped_done == 2
    assert len(decode_video(dst / "long.mp4")[0]) == 240
    _no_leftovers(dst)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_one_worker_death_never_fails_the_job_and_counts_once(
    ray_cluster: Any, tmp_path: Path, tiny_weights: Path, workers: int
) -> None:
    """The only worker (``--ray local`` on a small machine has one) or one of two is killed once, mid-unit:
    the job waits for Ray's restart (or hands the unit to the other worker), finishes every file, and the
    summary counts exactly one death."""
    from deblurtool.scale.run import run_ray_folder

    src, dst = tmp_path / "in", tmp_path / "out"
    for i in range(4):
        save_image(src / f"{i}.png", make_image("u8_rgb", height=40, width=56, seed=i))
    make_video(src / "long.mp4", frames=30, gop=5)
    events = Recorder()
    killed: list[int] = []

    def kill_once(name: str, info: dict[str, Any]) -> None:
        if name == "result" and not killed:  # its next unit is already in flight on that worker
            killed.append(events.pids[info["worker"]])
            os.kill(killed[0], signal.SIGKILL)

    events.on = kill_once
    outcome = run_ray_folder(src, dst, _spec(tiny_weights), address="auto", chunk_frames=10,
                             workers=workers, events=events)  # fmt: skip
    assert killed and len(events.names("died", "worker")) == 1
    assert outcome.summary.done == 5 and outcome.summary.failed == []
    deaths = [line for line in outcome.workers if "death(s) survived" in line]
    assert len(deaths) == 1 and ", 1 death(s) survived" in deaths[0], outcome.workers
    assert _files(dst) == sorted([*(f"{i}.png" for i in range(4)), "long.mp4", MANIFEST_NAME])
