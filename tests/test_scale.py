"""Scale-out on a real Ray cluster started here (2 CPUs, workers as separate processes), with the tiny
identity generator saved as a real .safetensors file and media made on the fly.

The cluster is started once for the module (``ray.init(num_cpus=2)``); the driver code finds the connection
and uses it (what ``--ray auto`` does on a cluster made by ``ray start``). The pieces that need no cluster are
in test_scale_units.py.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from conftest import IdentityModel, decode_video, make_image, make_video, save_image, stream_packets
from typer.testing import CliRunner

from deblurtool.config import EncodeConfig, RuntimeConfig
from deblurtool.pipeline import MANIFEST_NAME, run_folder, run_video
from deblurtool.scale.driver import LogJobProgress

LOSSLESS = EncodeConfig(crf=0)  # x264 at crf 0: the joined chunks can be compared frame for frame
VFR_PTS = [int(p) for p in np.cumsum([1 + (i * 7) % 3 for i in range(36)]) - 1]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            raise  # CI installs the extra: a missing Ray there is a failure, not a skip
        pytest.skip('needs Ray: pip install -e ".[test,ray]"')
    return ray


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    ray = _ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


def _spec(weights: Path, encode: EncodeConfig = LOSSLESS) -> Any:
    from deblurtool.scale.run import worker_spec

    return worker_spec(weights, None, RuntimeConfig(device="cpu"), encode)


class Report(LogJobProgress):
    """What the library reports while a job runs (the CLI draws it)."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.failures: list[tuple[Path, str]] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    def failed(self, path: Path, reason: str) -> None:
        self.failures.append((path, reason))


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
        _damage_packet(intact, src / "v" / "damaged.mp4", 12)
        intact.unlink()
        videos["v/damaged.mp4"] = "video"
    return {**dict.fromkeys(files, "image"), **videos}


def _damage_packet(src: Path, dst: Path, index: int) -> None:
    """Copy ``src`` with the length prefix of its ``index``-th video packet broken."""
    with av.open(str(src)) as c:
        packet = [p for p in c.demux(c.streams.video[0]) if p.size][index]
        pos = packet.pos
    data = bytearray(src.read_bytes())
    data[pos : pos + 4] = b"\xff\xff\xff\xff"
    dst.write_bytes(bytes(data))


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


class Recorder:
    """The driver's events, and actions to take on them (kill a worker, interrupt the driver)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.pids: dict[int, int] = {}
        self.on: Any = None

    def __call__(self, name: str, info: dict[str, Any]) -> None:
        self.log.append((name, info))
        if name == "ready":
            self.pids[info["worker"]] = info["pid"]
        if self.on is not None:
            self.on(name, info)

    def names(self, event: str, key: str = "unit") -> list[str]:
        return [info[key] for name, info in self.log if name == event]


def _no_leftovers(dst: Path) -> None:
    hidden = [f for f in _files(dst) if "/." in f"/{f}" and not f.endswith(MANIFEST_NAME)]
    assert hidden == [], hidden  # no temp file, no chunk, no lock


def _manifest(dst: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (dst / MANIFEST_NAME).read_text().splitlines()]


# -- the "done when" list ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_mixed_tree_matches_the_single_process_run(cluster: Any, tmp_path: Path, tiny_weights: Path) -> None:
    from deblurtool.scale.run import run_ray_folder

    src, one, many = tmp_path / "in", tmp_path / "single", tmp_path / "ray"
    kinds = _tree(src, damaged=True)
    model = _model(tiny_weights)
    run_folder(src, one, model, signature=model.signature, encode=LOSSLESS)
    events, report, said = Recorder(), Report(), []
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
    assert said[0].startswith("model: device cpu, precision")
    assert _files(one) == _files(many)
    for rel, kind in kinds.items():
        if kind == "image":
            assert (one / rel).read_bytes() == (many / rel).read_bytes(), rel
        else:
            _same_video(one / rel, many / rel)
    assert sorted(map(json.dumps, _manifest(one))) == sorted(map(json.dumps, _manifest(many)))
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
    cluster: Any, tmp_path: Path, tiny_weights: Path, name: str, encode: EncodeConfig, pts: list[int] | None
) -> None:
    from deblurtool.scale.run import run_ray_video

    spec_src = make_video(tmp_path / f"src_{name}", frames=36, gop=5, pts=pts, rotation=-90)
    dst = tmp_path / "out" / name
    events = Recorder()
    started = time.monotonic()
    outcome = run_ray_video(spec_src.path, dst, _spec(tiny_weights, encode), address="auto", chunk_frames=9,
                            workers=2, events=events)  # fmt: skip
    asks = len(events.names("progress", "in_flight"))  # each is a call to the progress actor
    assert 0 < asks <= 2 * (time.monotonic() - started) + 2  # twice a second, not in a loop
    chunks = [u for u in events.names("submit") if "#" in u]
    assert len(chunks) >= 3  # (the count is planned from the header: mkv has only a duration)
    times, frames, _, rotation = decode_video(dst)
    assert times == decode_video(spec_src.path)[0]  # (Matroska stores milliseconds)
    assert name.endswith(".mkv") or times == [Fraction(p, 24) for p in spec_src.pts]
    assert len(frames) == 36 == outcome.summary.frames and rotation == -90
    assert stream_packets(dst, "audio") == stream_packets(spec_src.path, "audio")
    assert outcome.summary.copied_streams == 1
    with_one = tmp_path / f"single_{name}"
    run_video(spec_src.path, with_one, _model(tiny_weights), encode)
    if encode.crf == 0:
        _same_video(with_one, dst)  # lossless: the joined chunks are the frames of the one-piece run
    else:
        assert decode_video(with_one)[0] == times
    assert _files(dst.parent) == [name]


def _camcorder_mkv(path: Path, frames: int) -> Path:
    """H.264 with B-frames, 16-bit PCM audio (which WebM cannot hold) and metadata, at 24 fps."""
    with av.open(str(path), "w") as out:
        out.metadata.update(title="Holiday", comment="shaky")
        v = out.add_stream("libx264", rate=24, options={"crf": "1", "x264-params": "keyint=6:scenecut=0"})
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.metadata["language"] = "fra"
        a = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        a.metadata["language"] = "eng"
        for i in range(frames):
            rgb = np.full((48, 64, 3), (7 * i) % 250, np.uint8)
            rgb[:, : 8 + i] = 200
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = VFR_PTS[i]
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        samples = (np.arange(8000 * (VFR_PTS[frames - 1] + 1) // 24, dtype=np.int16) % 500).reshape(1, -1)
        sound = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        sound.sample_rate, sound.pts = 8000, 0
        out.mux(a.encode(sound))
        out.mux(a.encode(None))
    return path


def _tags(path: Path) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    with av.open(str(path)) as c:
        streams = [(s.type, s.codec_context.name, s.metadata.get("language", "")) for s in c.streams]
        return {k.lower(): v for k, v in c.metadata.items() if k.lower() in ("title", "comment")}, streams


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".webm", ".avi"])
def test_a_joined_video_keeps_what_video_keeps(
    cluster: Any, tmp_path: Path, tiny_weights: Path, suffix: str
) -> None:
    """The container's rules and the stream map decide as in `video`: WebM re-encodes the PCM audio (with the
    same note) and writes VP9, AVI counts frames at one rate with MPEG-4 Part 2; metadata is carried over."""
    from deblurtool.scale.run import run_ray_video

    src = _camcorder_mkv(tmp_path / "cam.mkv", 30)
    dst, alone = tmp_path / f"ray{suffix}", tmp_path / f"alone{suffix}"
    events, report = Recorder(), Report()
    outcome = run_ray_video(src, dst, _spec(tiny_weights, EncodeConfig()), address="auto", chunk_frames=10,
                            workers=2, progress=report, events=events)  # fmt: skip
    assert sum("#" in u for u in events.names("submit")) >= 3  # (planned from the duration: VFR gaps)
    assert not any("chunks not" in n for n in report.notes)
    single = run_video(src, alone, _model(tiny_weights), EncodeConfig())
    assert outcome.summary.notes == single.notes == report.notes
    if suffix == ".webm":
        assert single.notes == [
            "note: audio stream #1 (pcm_s16le) re-encoded to libopus (.webm files cannot hold pcm_s16le)"
        ]
    assert (
        (outcome.summary.frames, outcome.summary.pix_fmt)
        == (single.frames, single.pix_fmt)
        == (30, "yuv420p")
    )
    assert _tags(dst) == _tags(alone) and _tags(dst)[0] == {"title": "Holiday", "comment": "shaky"}
    times, frames, _, _ = decode_video(dst)
    assert times == decode_video(alone)[0] and len(frames) == 30
    assert stream_packets(dst, "audio")[0] == stream_packets(alone, "audio")[0]
    assert len(stream_packets(dst, "audio")[1]) == len(stream_packets(alone, "audio")[1])
    assert _files(tmp_path) == sorted(["cam.mkv", dst.name, alone.name])


@pytest.mark.slow
def test_worker_killed_mid_job_every_output_exactly_once(
    cluster: Any, tmp_path: Path, tiny_weights: Path
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
    cluster: Any, tmp_path: Path, tiny_weights: Path
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
    assert outcome.reused_chunks == len(chunks_done)
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
    cluster: Any, tmp_path: Path, tiny_weights: Path
) -> None:
    """A real SIGINT to `deblurtool folder --ray local` (its own cluster, in a subprocess) once a chunk of the
    long video is finished; the rerun (on this module's cluster) reuses that chunk and finishes the job."""
    import subprocess
    import threading

    from deblurtool.scale.run import run_ray_folder
    from deblurtool.scale.units import chunk_dir

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


# -- the command line ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_folder_on_ray_prints_summary_and_workers(
    cluster: Any, tmp_path: Path, tiny_weights: Path
) -> None:
    from deblurtool.cli import app

    src, dst = tmp_path / "in", tmp_path / "out"
    save_image(src / "a.png", make_image("u8_rgb"))
    make_video(src / "clip.mp4", frames=4)
    args = [
        "folder",
        src,
        dst,
        "--ray",
        "auto",
        "--weights",
        tiny_weights,
        "--device",
        "cpu",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "1 image(s), 1 video(s): 2 done, 0 skipped, 0 failed" in result.output
    assert "worker 0 on" in result.output and "model: device cpu" in result.output


@pytest.mark.slow
def test_cli_video_on_ray_with_a_damaged_input_runs_it_whole_and_exits_1(
    cluster: Any, tmp_path: Path, tiny_weights: Path
) -> None:
    """A chunk of a damaged video cannot be made exactly: the video runs as one unit, in a worker, while the
    driver holds the output's lock; the command reports the damage as `video` does."""
    from deblurtool.cli import app

    intact = make_video(tmp_path / "intact.mp4", frames=30, gop=5).path
    _damage_packet(intact, tmp_path / "damaged.mp4", 12)
    dst = tmp_path / "out.mp4"
    args = ["video", tmp_path / "damaged.mp4", dst, "--ray", "auto", "--chunk-frames", "10"]
    args += ["--weights", tiny_weights, "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert "chunks not usable" in result.output and "1 damaged video packet(s) skipped" in result.output
    alone = run_video(tmp_path / "damaged.mp4", tmp_path / "alone.mp4", IdentityModel(), EncodeConfig())
    assert alone.damage is not None and alone.damage in result.output
    assert len(decode_video(dst)[0]) == alone.frames and not (tmp_path / ".out.mp4.deblurtool.lock").exists()
