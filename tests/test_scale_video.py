"""A Ray run keeps what `video` keeps (the container's rules, the stream map's decisions and notes, metadata),
and the command line on Ray, on a real 2-CPU cluster with the tiny identity generator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from conftest import (
    IdentityModel,
    JobReport,
    Recorder,
    damage_packet,
    decode_video,
    make_image,
    make_video,
    save_image,
    stream_packets,
)
from typer.testing import CliRunner

from deblurtool.config import EncodeConfig, ModelSpec, RuntimeConfig
from deblurtool.pipeline import run_video

# A fork of a process that has run both a Ray driver and OpenVINO has crashed it (segfault in the dynamic
# loader), so these run in a pytest process of their own: `pytest -m ray` (the README's test command).
pytestmark = pytest.mark.ray

VFR_PTS = [int(p) for p in np.cumsum([1 + (i * 7) % 3 for i in range(30)]) - 1]


def _spec(weights: Path, encode: EncodeConfig) -> Any:
    from deblurtool.scale.run import worker_spec

    return worker_spec(ModelSpec(weights, RuntimeConfig(device="cpu")), encode)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


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
    ray_cluster: Any, tmp_path: Path, tiny_weights: Path, suffix: str
) -> None:
    """The container's rules and the stream map decide as in `video`: WebM re-encodes the PCM audio (with the
    same note) and writes VP9, AVI counts frames at one rate with MPEG-4 Part 2; metadata is carried over."""
    from deblurtool.scale.run import run_ray_video

    src = _camcorder_mkv(tmp_path / "cam.mkv", 30)
    dst, alone = tmp_path / f"ray{suffix}", tmp_path / f"alone{suffix}"
    events, report = Recorder(), JobReport()
    outcome = run_ray_video(src, dst, _spec(tiny_weights, EncodeConfig()), address="auto", chunk_frames=10,
                            workers=2, progress=report, events=events)  # fmt: skip
    assert sum("#" in u for u in events.names("submit")) >= 3  # (planned from the duration: VFR gaps)
    assert not any("chunks not" in n for n in report.notes)
    from deblurtool.inference import Deblurrer

    model = Deblurrer.from_weights(tiny_weights, runtime=RuntimeConfig(device="cpu"))
    single = run_video(src, alone, model, EncodeConfig())
    assert outcome.video.notes == single.notes == report.notes
    if suffix == ".webm":
        assert single.notes == [
            "note: audio stream #1 (pcm_s16le) re-encoded to libopus (.webm files cannot hold pcm_s16le)"
        ]
    assert (outcome.video.frames, outcome.video.pix_fmt) == (single.frames, single.pix_fmt) == (30, "yuv420p")
    assert _tags(dst) == _tags(alone) and _tags(dst)[0] == {"title": "Holiday", "comment": "shaky"}
    times, frames, _, _ = decode_video(dst)
    assert times == decode_video(alone)[0] and len(frames) == 30
    assert stream_packets(dst, "audio")[0] == stream_packets(alone, "audio")[0]
    assert len(stream_packets(dst, "audio")[1]) == len(stream_packets(alone, "audio")[1])
    assert _files(tmp_path) == sorted(["cam.mkv", dst.name, alone.name])


# -- the command line ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_folder_on_ray_prints_summary_and_workers(
    ray_cluster: Any, tmp_path: Path, tiny_weights: Path
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
    ray_cluster: Any, tmp_path: Path, tiny_weights: Path
) -> None:
    """A chunk of a damaged video cannot be made exactly: the video runs as one unit, in a worker, while the
    driver holds the output's lock; the command reports the damage as `video` does."""
    from deblurtool.cli import app

    intact = make_video(tmp_path / "intact.mp4", frames=30, gop=5).path
    damage_packet(intact, tmp_path / "damaged.mp4", 12)
    dst = tmp_path / "out.mp4"
    args = ["video", tmp_path / "damaged.mp4", dst, "--ray", "auto", "--chunk-frames", "10"]
    args += ["--weights", tiny_weights, "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert "chunks not usable" in result.output and "1 damaged video packet(s) skipped" in result.output
    alone = run_video(tmp_path / "damaged.mp4", tmp_path / "alone.mp4", IdentityModel(), EncodeConfig())
    assert alone.damage is not None and alone.damage in result.output
    assert len(decode_video(dst)[0]) == alone.frames and not (tmp_path / ".out.mp4.deblurtool.lock").exists()
