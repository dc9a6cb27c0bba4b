"""Interlaced input stays interlaced, with its field order, where the encoder codes fields (libx264,
mpeg2video); any other encoder writes progressive pictures, and a note says so (never silently).

Inputs are made here with PyAV; the model is the identity."""

from __future__ import annotations

from pathlib import Path

import av
import av.codec.context
import numpy as np
import pytest
from conftest import IdentityModel

from deblurtool.config import EncodeConfig
from deblurtool.pipeline import run_video

_FIELDS = av.codec.context.Flags.interlaced_dct | av.codec.context.Flags.interlaced_me


def _interlaced(path: Path, order: int) -> Path:
    """Interlaced H.264 with field order ``order`` (AVFieldOrder: 2 top first, 3 bottom first)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25, options={"crf": "10"})
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.codec_context.flags |= _FIELDS
        v.codec_context.field_order = order
        for i in range(6):
            rgb = np.zeros((48, 64, 3), np.uint8)
            rgb[::2] = 40 * i  # the two fields differ, as in camera footage
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    return path


def _fields(path: Path) -> tuple[int, bool]:
    """(the stream's field order, whether its first picture is interlaced)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        first = next(iter(c.decode(stream)))
        return int(stream.codec_context.field_order), bool(first.interlaced_frame)


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_interlaced_input_keeps_its_field_order(tmp_path: Path, suffix: str) -> None:
    src = _interlaced(tmp_path / "in.mkv", 2)
    assert _fields(src) == (2, True)
    summary = run_video(src, tmp_path / f"out{suffix}", IdentityModel(), EncodeConfig(), progress=False)
    assert summary.notes == []
    assert _fields(tmp_path / f"out{suffix}")[1] is True
    if suffix == ".mkv":  # (MP4 has no field-order tag; the H.264 stream itself is coded in fields)
        assert _fields(tmp_path / f"out{suffix}")[0] == 2


def test_an_encoder_without_fields_says_the_output_is_progressive(tmp_path: Path) -> None:
    src = _interlaced(tmp_path / "in.mkv", 2)
    summary = run_video(
        src, tmp_path / "out.mkv", IdentityModel(), EncodeConfig(codec="ffv1"), progress=False
    )
    assert summary.notes == [
        "note: the input is interlaced but ffv1 writes progressive pictures (no field order); "
        "--codec libx264 or mpeg2video keeps it interlaced"
    ]
