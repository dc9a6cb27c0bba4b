"""MPEG-TS outputs (``.ts``, ``.mts``, ``.m2ts``) keep the input's audio: AAC, AC-3 and MP2 are copied
packet for packet (the muxer wraps AAC in ADTS itself), audio TS has no stream type for (FLAC) is
re-encoded with a note, and a video codec TS would store as unreadable private data is refused before work.

Inputs are made here with PyAV; the model is the identity."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import IdentityModel, run_cli

from deblurtool.config import EncodeConfig
from deblurtool.errors import OutputError
from deblurtool.pipeline import run_video
from deblurtool.pipeline.folder import run_folder


@pytest.fixture(autouse=True)
def _tiny_model(tiny_default: Path) -> None:
    """Commands load the tiny identity generator as their default weights."""


def _clip(path: Path, audio_codec: str, *, frames: int = 12, rate: int = 24) -> Path:
    """H.264 video with a 440 Hz stereo tone in ``audio_codec`` at 48 kHz, lasting as long as the video."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=rate, options={"crf": "10"})
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream(audio_codec, rate=48000, layout="stereo")
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 15 * i % 256, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        size = a.codec_context.frame_size or 1024
        fmt = a.codec_context.format.name
        total = 48000 * frames // rate
        for k in range(0, total, size):
            t = (np.arange(k, k + size) / 48000).astype(np.float32)
            tone = 0.3 * np.sin(2 * np.pi * 440 * t)
            if fmt == "fltp":
                pcm = np.stack([tone, tone])
            else:  # s16, interleaved
                pcm = (np.stack([tone, tone], axis=1).reshape(1, -1) * 32767).astype(np.int16)
            sound = av.AudioFrame.from_ndarray(pcm, format=fmt, layout="stereo")
            sound.sample_rate, sound.pts = 48000, k
            out.mux(a.encode(sound))
        out.mux(a.encode(None))
    return path


def _audio(path: Path) -> tuple[str, int, Fraction, list[bytes]]:
    """(codec, packet count, total packet duration in seconds, payloads) of the first audio stream."""
    with av.open(str(path)) as c:
        assert c.streams.audio, f"{path.name} has no audio"
        stream = c.streams.audio[0]
        packets = [p for p in c.demux(stream) if p.dts is not None]
        duration = sum((p.duration * p.time_base for p in packets), Fraction(0))
        return stream.codec_context.codec.canonical_name, len(packets), duration, [bytes(p) for p in packets]


def _audio_lead(path: Path) -> Fraction:
    """How long before the first picture the audio starts (s)."""
    with av.open(str(path)) as c:
        picture = next(iter(c.decode(video=0)))
        first = picture.pts * picture.time_base
    with av.open(str(path)) as c:
        audio = next(p for p in c.demux(audio=0) if p.dts is not None)
        return first - audio.pts * audio.time_base


@pytest.mark.parametrize("suffix", [".ts", ".mts", ".m2ts"])
@pytest.mark.parametrize(("audio_codec", "src_suffix"), [("aac", ".mp4"), ("ac3", ".mkv"), ("mp2", ".mkv")])
def test_mpegts_output_keeps_audio_by_stream_copy(
    tmp_path: Path, suffix: str, audio_codec: str, src_suffix: str
) -> None:
    src = _clip(tmp_path / f"in{src_suffix}", audio_codec)
    dst = tmp_path / f"out{suffix}"
    summary = run_video(src, dst, IdentityModel(), EncodeConfig(), progress=False)
    assert summary.notes == [] and summary.copied_streams == 1
    name, count, duration, payloads = _audio(dst)
    src_name, src_count, src_duration, src_payloads = _audio(src)
    assert (name, count) == (src_name, src_count) == (audio_codec, src_count)
    assert abs(duration - src_duration) < Fraction(1, 1000)
    # The same packets (AAC framed in ADTS headers by the TS muxer, as TS carries it)
    header = 7 if audio_codec == "aac" else 0
    assert [p[header:] for p in payloads] == src_payloads
    assert abs(_audio_lead(dst) - _audio_lead(src)) < Fraction(1, 1000)  # in sync with the pictures
    with av.open(str(dst)) as c:
        assert c.format.name == "mpegts" and c.streams.video[0].codec_context.name == "h264"
    if suffix == ".m2ts":  # Blu-ray's 192-byte packets (a 4-byte time code before each TS sync byte)
        data = dst.read_bytes()
        assert len(data) % 192 == 0 and data[4] == data[196] == 0x47


def test_audio_mpegts_has_no_stream_type_for_is_re_encoded_with_a_note(tmp_path: Path) -> None:
    src = _clip(tmp_path / "in.mkv", "flac")
    summary = run_video(src, tmp_path / "out.ts", IdentityModel(), EncodeConfig(), progress=False)
    assert summary.notes == ["note: audio stream #1 (flac) re-encoded to aac (.ts files cannot hold flac)"]
    name, _, duration, _ = _audio(tmp_path / "out.ts")
    assert name == "aac" and abs(duration - _audio(src)[2]) < Fraction(1, 20)  # all of it, not a cut


def test_a_video_codec_mpegts_would_store_as_data_is_refused_before_work(tmp_path: Path) -> None:
    src = _clip(tmp_path / "in.mp4", "aac")
    model = IdentityModel()
    with pytest.raises(OutputError, match="cannot hold libvpx-vp9 video"):
        run_video(src, tmp_path / "out.ts", model, EncodeConfig(codec="libvpx-vp9"), progress=False)
    assert model.calls == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_cli_video_and_folder_into_mpegts_keep_audio(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _clip(src / "cam.mts", "ac3")
    code, output = run_cli("video", src / "cam.mts", tmp_path / "one.mts", "--no-progress")
    assert code == 0, output
    assert "cannot hold" not in output and _audio(tmp_path / "one.mts")[0] == "ac3"
    summary = run_folder(src, tmp_path / "out", IdentityModel(), progress=False)
    assert summary.failed == [] and summary.done == 1
    assert _audio(tmp_path / "out" / "cam.mts")[:2] == _audio(src / "cam.mts")[:2]
