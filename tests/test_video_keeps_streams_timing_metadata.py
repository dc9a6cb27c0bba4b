"""``video`` keeps what the input holds besides its pictures: no job fails at its very end for a reason
known at its start (audio the output container cannot hold), a cut-off Matroska/WebM file is reported, every
frame's time survives in every container the tool writes, metadata is kept, and two jobs never write one
output.

Every input is made here with PyAV; the model is the identity (a fake, or the tiny real generator through
the CLI), so these tests check the plumbing."""

from __future__ import annotations

import os
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import IdentityModel, SlowModel, make_video, run_cli, stream_packets
from typer.testing import CliRunner

from deblurtool.config import EncodeConfig
from deblurtool.errors import OutputError
from deblurtool.pipeline import run_video

runner = CliRunner()


@pytest.fixture(autouse=True)
def _tiny_model(tiny_default: Path) -> None:
    """Commands load the tiny identity generator as their default weights."""


_cli = run_cli


def _camcorder_avi(path: Path, codec: str, *, frames: int = 6) -> Path:
    """An AVI as camcorders write them: MJPEG (or H.264) video with 16-bit stereo PCM, which AVI stores with a
    channel count but no channel layout."""
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=24)
        v.width, v.height = 64, 48
        v.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        a = out.add_stream("pcm_s16le", rate=8000, layout="stereo")
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        samples = np.arange(2 * 8000 * frames // 24, dtype=np.int16).reshape(1, -1) % 300
        sound = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        sound.sample_rate, sound.pts = 8000, 0
        out.mux(a.encode(sound))
        out.mux(a.encode(None))
    with av.open(str(path)) as c:  # what makes the MP4 muxer fail at its trailer
        assert c.streams.audio[0].codec_context.layout.name == "2 channels"
    return path


# -- item 1: nothing fails at the end for a reason known at the start ----------------------------------------


@pytest.mark.parametrize("codec", ["mjpeg", "libx264"])
def test_camcorder_avi_with_pcm_audio_to_mp4(tmp_path: Path, codec: str) -> None:
    src = _camcorder_avi(tmp_path / "cam.avi", codec)
    dst = tmp_path / "out.mp4"
    code, output = _cli("video", src, dst, "--no-progress")
    assert code == 0, output
    with av.open(str(dst)) as c:
        audio = c.streams.audio[0]
        assert audio.codec_context.name == "pcm_s16le" and audio.codec_context.layout.name == "stereo"
        assert c.streams.video[0].frames == 6
    # The sound itself is copied untouched.
    assert b"".join(p for _, p in stream_packets(dst, "audio")[1]) == b"".join(
        p for _, p in stream_packets(src, "audio")[1]
    )


def test_audio_the_container_cannot_hold_is_re_encoded_with_a_note(tmp_path: Path) -> None:
    src = _camcorder_avi(tmp_path / "cam.avi", "mjpeg")
    summary = run_video(src, tmp_path / "out.webm", IdentityModel(), EncodeConfig(), progress=False)
    assert any("re-encoded to libopus" in note and "pcm_s16le" in note for note in summary.notes)
    with av.open(str(tmp_path / "out.webm")) as c:
        assert [s.codec_context.name for s in c.streams] == ["vp9", "opus"]
        seconds = sum(f.samples for f in c.decode(audio=0)) / c.streams.audio[0].codec_context.sample_rate
    assert abs(seconds - 0.25) < 0.03  # all of the sound, not a cut


def test_a_stream_that_cannot_be_muxed_is_found_before_the_model_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deblurtool.media import stream_map

    src = _camcorder_avi(tmp_path / "cam.avi", "mjpeg")
    monkeypatch.setattr(stream_map, "_AUDIO_ENCODERS", ())  # nothing to re-encode to: it must be left out
    monkeypatch.setattr(stream_map, "_fix_layout", lambda stream: None)  # the trailer would fail again
    model = IdentityModel()
    summary = run_video(src, tmp_path / "out.mp4", model, EncodeConfig(), progress=False)
    assert model.calls == 6 and summary.copied_streams == 0
    assert any("audio stream #1 (pcm_s16le) not copied" in note for note in summary.notes)


# -- item 4: a cut-off file is reported in every container ---------------------------------------------------


@pytest.mark.parametrize("name", ["in.mkv", "in.webm"])
def test_truncated_matroska_and_webm_are_reported(tmp_path: Path, name: str) -> None:
    kwargs = {"codec": "libvpx-vp9", "audio": False} if name.endswith(".webm") else {}
    spec = make_video(tmp_path / name, frames=12, **kwargs)  # type: ignore[arg-type]
    data = spec.path.read_bytes()
    cut = tmp_path / f"cut{spec.path.suffix}"
    cut.write_bytes(data[: int(len(data) * 0.8)])
    dst = tmp_path / f"out{spec.path.suffix}"
    code, output = _cli("video", cut, dst, "--no-progress")
    assert code == 1, output
    assert "the input is damaged" in output and "of about 12 frames could be decoded" in output
    assert "the video should last 0.50 s" in output and dst.exists()


# -- item 5: every frame's time survives in every container --------------------------------------------------

_VFR = [0, 1, 2, 4, 5, 9, 10, 11]


def _video_times(path: Path) -> tuple[list[Fraction], Fraction]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [f.pts * f.time_base for f in c.decode(stream)], stream.time_base


def _first_audio_after(path: Path, start: Fraction) -> Fraction:
    """Start of the first audio packet still sounding after ``start`` (priming packets end before it; AVI
    reads its first audio packet back with no duration)."""
    with av.open(str(path)) as c:
        for p in c.demux(c.streams.audio[0]):
            if p.pts is not None and (
                p.pts * p.time_base >= start or (p.pts + p.duration) * p.time_base > start
            ):
                return p.pts * p.time_base
    raise AssertionError("no audio")


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv", "avi", "webm"])
@pytest.mark.parametrize("audio", [False, True])
def test_every_frame_time_survives_in_every_container(tmp_path: Path, ext: str, audio: bool) -> None:
    spec = make_video(tmp_path / "in.mp4", pts=_VFR, audio=audio)
    dst = tmp_path / f"out.{ext}"
    run_video(spec.path, dst, IdentityModel(), EncodeConfig(), progress=False)
    want = [Fraction(p, 24) for p in _VFR]
    got, time_base = _video_times(dst)
    assert len(got) == len(want)
    # Matroska and WebM count in milliseconds; a container that cannot store negative times (Matroska) may
    # start the whole file later to fit the audio's priming, keeping every gap and the sync.
    shift = got[0] - want[0] if audio and ext in ("mkv", "webm") else Fraction(0)
    assert shift < Fraction(1, 5)
    for g, w in zip(got, want, strict=True):
        assert abs(g - shift - w) <= time_base / 2, (ext, [float(t) for t in got])
    if audio:  # the sound keeps its place against the pictures (re-encoded for WebM: within Opus's priming)
        offset_in = _first_audio_after(spec.path, want[0]) - want[0]
        tolerance = Fraction(1, 100) if ext == "webm" else Fraction(1, 1000)
        assert abs(_first_audio_after(dst, got[0]) - got[0] - offset_in) <= tolerance


def test_avi_refuses_a_codec_whose_times_it_cannot_keep(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=2, audio=False)
    model = IdentityModel()
    with pytest.raises(OutputError, match=r"\.avi files cannot keep the frame times of libx264"):
        run_video(spec.path, tmp_path / "out.avi", model, EncodeConfig(codec="libx264"), progress=False)
    assert model.calls == 0 and not (tmp_path / "out.avi").exists()


# -- item 8: metadata ----------------------------------------------------------------------------------------

_TAGS = {"title": "Holiday", "creation_time": "2024-05-01T10:20:30.000000Z", "location": "+48.8577+002.2950/"}


def _tagged_video(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        out.metadata.update(_TAGS)
        v = out.add_stream("libx264", rate=24)
        v.width, v.height = 32, 32
        v.metadata.update({"language": "fra", "title": "Main view"})
        a = out.add_stream("aac", rate=8000, layout="mono")
        a.metadata.update({"language": "deu", "title": "Commentary"})
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        sound.sample_rate, sound.pts = 8000, 0
        out.mux(a.encode(sound))
        out.mux(a.encode(None))
    return path


def _tags(path: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    with av.open(str(path)) as c:
        container = {k.lower(): v for k, v in c.metadata.items()}
        streams = [{k.lower(): v for k, v in s.metadata.items()} for s in c.streams]
    for tags in streams:
        tags.setdefault("title", tags.get("name", ""))  # MP4 and MOV read a stream's title back as "name"
    return container, streams


@pytest.mark.parametrize("src_ext", ["mp4", "mkv"])
@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv"])
def test_metadata_is_kept(tmp_path: Path, src_ext: str, ext: str) -> None:
    src = _tagged_video(tmp_path / f"in.{src_ext}")
    dst = tmp_path / f"out.{ext}"
    run_video(src, dst, IdentityModel(), EncodeConfig(), progress=False)
    container, (video, audio) = _tags(dst)
    for key, value in _TAGS.items():
        assert container.get(key) == value, (key, container)
    assert (video.get("language"), video.get("title")) == ("fra", "Main view")
    assert audio.get("title") == "Commentary"
    if ext != "mov":  # MOV keeps audio languages as Macintosh codes, which FFmpeg does not map back for deu
        assert audio.get("language") == "deu"


# -- item 7: one job per output file -------------------------------------------------------------------------


def test_second_video_job_into_the_same_output_is_refused(tmp_path: Path) -> None:
    spec = make_video(tmp_path / "in.mp4", frames=10)
    dst = tmp_path / "out" / "out.mp4"
    started, results = threading.Event(), []
    first = threading.Thread(
        target=lambda: results.append(run_video(spec.path, dst, SlowModel(started, 0.2), EncodeConfig()))
    )
    first.start()
    try:
        assert started.wait(30)
        second = IdentityModel()
        with pytest.raises(OutputError, match=rf"another deblurtool job \(pid {os.getpid()}\) is writing"):
            run_video(spec.path, dst, second, EncodeConfig(), overwrite=True, progress=False)
        assert second.calls == 0
        # Another output in the same folder is another job's business: it goes ahead.
        run_video(spec.path, dst.with_name("other.mp4"), IdentityModel(), EncodeConfig(), progress=False)
    finally:
        first.join()
    assert results and results[0].frames == 10
    assert sorted(p.name for p in dst.parent.iterdir()) == ["other.mp4", "out.mp4"]  # no lock or temp left
