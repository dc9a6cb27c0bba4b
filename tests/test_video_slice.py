"""A slice of a video (``--start``/``--duration``/``--end``): only its frames are deblurred and written, with
their timestamps shifted to start at 0; audio and subtitles are cut to the same span and shifted alike
(copied whole where the edges fall on packet boundaries, else re-encoded and cut to the sample, with a note);
a slice outside the video is refused before any work.

Inputs are made here with PyAV; each frame has its own brightness so the frames written can be named."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import IdentityModel

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError, InputError
from deblurtool.media.time_range import TimeRange, parse_time
from deblurtool.media.video_reader import VideoReader
from deblurtool.pipeline import run_video

RATE = 25
LOSSLESS = EncodeConfig(codec="ffv1")


def _clip(path: Path, *, frames: int = 50, audio: str = "aac", subtitles: Path | None = None) -> Path:
    """Frame ``i`` is flat gray ``5 * i``; a 48 kHz mono tone in ``audio`` (PCM in 40 ms packets: one per
    frame) lasting as long as the video; ``subtitles`` an .srt remuxed in."""
    srt = av.open(str(subtitles)) if subtitles is not None else None
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=RATE, options={"crf": "0"})
        v.width, v.height, v.pix_fmt = 32, 24, "yuv444p"
        a = out.add_stream(audio, rate=48000, layout="mono")
        t = out.add_stream_from_template(srt.streams.subtitles[0]) if srt is not None else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 5 * i, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        size = a.codec_context.frame_size or 48000 // RATE
        total = 48000 * frames // RATE
        fmt = a.codec_context.format.name
        for k in range(0, total, size):
            tone = np.sin(np.arange(k, k + size) * 2 * np.pi * 440 / 48000).astype(np.float32)[None, :]
            data = tone if fmt == "fltp" else (tone * 30000).astype(np.int16)
            sound = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
            sound.sample_rate, sound.pts = 48000, k
            out.mux(a.encode(sound))
        out.mux(a.encode(None))
        if srt is not None and t is not None:
            for packet in srt.demux():
                if packet.dts is not None:
                    packet.stream = t
                    out.mux(packet)
    if srt is not None:
        srt.close()
    return path


def _frames(path: Path) -> tuple[list[Fraction], list[int]]:
    """(presentation times, frame numbers read back from the brightness) of the video."""
    with av.open(str(path)) as c:
        decoded = list(c.decode(video=0))
    return [f.pts * f.time_base for f in decoded], [
        round(f.to_ndarray(format="gray").mean() / 5) for f in decoded
    ]


def _audio_span(path: Path) -> tuple[Fraction, Fraction]:
    """(first sample's time, end of the last sample) of the decoded audio, in seconds."""
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
    first = frames[0].pts * frames[0].time_base
    last = frames[-1].pts * frames[-1].time_base + Fraction(frames[-1].samples, frames[-1].sample_rate)
    return first, last


# -- parsing -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("12", 12), ("0.2", Fraction(1, 5)), (".5", Fraction(1, 2)), ("1:02.5", Fraction(125, 2)),
     ("01:02:03.250", 3723 + Fraction(1, 4)), ("0:00", 0)],
)  # fmt: skip
def test_times_parse_as_exact_seconds(text: str, seconds: Fraction) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["-1", "", "abc", "1:60", "1:61:00", "1e3", "1:2:3:4", "5s"])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(DeblurError, match="--start"):
        parse_time(text, "--start")


def test_range_options() -> None:
    assert TimeRange.from_options() is None
    assert TimeRange.from_options("1", "2") == TimeRange(Fraction(1), Fraction(3))
    assert TimeRange.from_options(end="0:03") == TimeRange(Fraction(0), Fraction(3))
    assert TimeRange.from_options("2") == TimeRange(Fraction(2), None)
    with pytest.raises(DeblurError, match="not both"):
        TimeRange.from_options("1", "2", "3")
    with pytest.raises(DeblurError, match="more than 0"):
        TimeRange.from_options("1", "0")
    with pytest.raises(DeblurError, match="empty"):
        TimeRange.from_options("3", end="2")


# -- the slice -----------------------------------------------------------------------------------------------


def test_only_the_slice_is_deblurred_rebased_to_zero(tmp_path: Path) -> None:
    src = _clip(tmp_path / "in.mp4")
    model = IdentityModel()
    rng = TimeRange(Fraction(1, 5), Fraction(3, 5))  # --start 0.2 --duration 0.4
    summary = run_video(src, tmp_path / "out.mkv", model, LOSSLESS, progress=False, time_range=rng)
    times, numbers = _frames(tmp_path / "out.mkv")
    assert numbers == list(range(5, 15)) and model.calls == summary.frames == 10  # 0.2 <= t < 0.6
    assert times == [Fraction(i, RATE) for i in range(10)]
    assert summary.damage is None  # a slice is short by design, not a truncated file


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_aac_is_re_encoded_and_cut_to_the_slice_with_a_note(tmp_path: Path, suffix: str) -> None:
    src = _clip(tmp_path / "in.mp4")
    dst = tmp_path / f"out{suffix}"
    rng = TimeRange(Fraction(7, 25), Fraction(27, 25))  # edges 280 and 1080 ms: not on AAC's 21.3 ms grid
    summary = run_video(src, dst, IdentityModel(), EncodeConfig(), progress=False, time_range=rng)
    assert summary.notes == [
        "note: audio stream #1 (aac) re-encoded to aac to cut it at the slice's edges "
        "(its packets do not begin and end at the slice's edges)"
    ]
    first, last = _audio_span(dst)
    assert abs(first) <= Fraction(1, 1000)  # with the first frame (Matroska keeps milliseconds)
    # 0.8 s of sound, the slice's, not its neighbours' (AAC pads its last 1024-sample frame with silence)
    assert Fraction(4, 5) <= last <= Fraction(4, 5) + Fraction(1024, 48000)


def test_audio_whose_packets_fit_the_slice_is_copied_packet_for_packet(tmp_path: Path) -> None:
    src = _clip(tmp_path / "in.mkv", audio="pcm_s16le")  # one 40 ms packet per frame
    dst = tmp_path / "out.mkv"
    rng = TimeRange(Fraction(2, 5), Fraction(6, 5))
    summary = run_video(src, dst, IdentityModel(), LOSSLESS, progress=False, time_range=rng)
    assert summary.notes == [] and summary.copied_streams == 1
    with av.open(str(src)) as c:
        wanted = [
            bytes(p)
            for p in c.demux(audio=0)
            if p.dts is not None and Fraction(2, 5) <= p.pts * p.time_base < Fraction(6, 5)
        ]
    with av.open(str(dst)) as c:
        got = [(p.pts * p.time_base, bytes(p)) for p in c.demux(audio=0) if p.dts is not None]
    assert [b for _, b in got] == wanted and len(wanted) == 20
    assert got[0][0] == 0


def test_subtitles_are_cut_and_shifted(tmp_path: Path, srt_file: Path) -> None:
    # hello 0.1-0.3 s, world 0.35-0.45 s; slice 0.2-0.4: "hello" shortened to 0-0.1, "world" 0.15-0.2
    src = _clip(tmp_path / "in.mkv", audio="pcm_s16le", subtitles=srt_file)
    dst = tmp_path / "out.mkv"
    run_video(
        src,
        dst,
        IdentityModel(),
        LOSSLESS,
        progress=False,
        time_range=TimeRange(Fraction(1, 5), Fraction(2, 5)),
    )
    with av.open(str(dst)) as c:
        cues = [
            (p.pts * p.time_base, (p.pts + p.duration) * p.time_base)
            for p in c.demux(subtitles=0)
            if p.dts is not None
        ]
    assert cues == [(0, Fraction(1, 10)), (Fraction(15, 100), Fraction(1, 5))]


def test_a_slice_outside_the_video_is_refused_before_any_work(tmp_path: Path) -> None:
    src = _clip(tmp_path / "in.mp4")  # 2 s
    with VideoReader(src) as reader:
        assert reader.length == 2
        with pytest.raises(InputError, match=r"--start 2 s is at or past the video's end \(2 s\)"):
            reader.check_slice(TimeRange(Fraction(2)))
        with pytest.raises(InputError, match=r"--end 3 s .* past the video's end"):
            reader.check_slice(TimeRange(Fraction(1), Fraction(3)))
        reader.check_slice(TimeRange(Fraction(1), Fraction(2)))  # to the end: fine
    model = IdentityModel()
    with pytest.raises(InputError, match="no frame in the slice"):
        run_video(
            src,
            tmp_path / "out.mp4",
            model,
            EncodeConfig(),
            progress=False,
            time_range=TimeRange(Fraction(5)),
        )
    assert model.calls == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


# -- the command line ----------------------------------------------------------------------------------------


@pytest.fixture
def _tiny(tiny_default: Path) -> None:
    """Commands load the tiny identity generator as their default weights."""


@pytest.mark.usefixtures("_tiny")
def test_cli_slice(tmp_path: Path) -> None:
    from conftest import run_cli

    src = _clip(tmp_path / "in.mp4")
    code, output = run_cli("video", src, tmp_path / "out.mkv", "--start", "0.2", "--duration", "0:00.4",
                           "--codec", "ffv1", "--no-progress")  # fmt: skip
    assert code == 0, output
    assert _frames(tmp_path / "out.mkv")[1] == list(range(5, 15)) and "10 frames" in output
    for args, message in [
        (["--start", "5"], "--start 5 s is at or past the video's end (2 s)"),
        (["--duration", "1", "--end", "2"], "give --duration or --end, not both"),
        (["--start", "1:75"], "below 60"),
    ]:
        code, output = run_cli("video", src, tmp_path / "x.mp4", *args, "--no-progress")
        assert code == 2 and message in output, output
        assert "model:" not in output  # refused before the model loaded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mkv"]
