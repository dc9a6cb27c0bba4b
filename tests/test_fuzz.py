"""Property tests: malformed bytes fed to the image reader, the video reader and the whole video pipeline end
in a valid result or a clean one-line :class:`InputError` naming the file, never in another exception, a crash
or a hang.

The bytes are random, or real files (made here) cut short, or real files with random bytes overwritten, or a
real file's first bytes followed by random ones (so the parsers get past the signature). Each read runs in a
thread and must finish within ``_HANG_S``; hypothesis is derandomized (same examples on every run) and keeps
no database, so CI is deterministic.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from conftest import IdentityModel, make_image, make_video, save_image
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError, InputError
from deblurtool.media import DecodedFrame, VideoReader, read_image, split_for_model
from deblurtool.pipeline import run_video

T = TypeVar("T")

_HANG_S = 10.0

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _bounded(fn: Callable[[], T]) -> T:
    """``fn()`` in a thread: its result or its exception, or a test failure if it takes over ``_HANG_S``."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the test thread, which re-raises it
            box["error"] = e

    thread = threading.Thread(target=target, name="fuzz-read", daemon=True)
    thread.start()
    thread.join(_HANG_S)
    if thread.is_alive():
        pytest.fail(f"still reading after {_HANG_S} s: a hang")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


class Seeds(dict[str, bytes]):
    """Real files by name; a short repr, since hypothesis prints the arguments of a failing example."""

    def __repr__(self) -> str:
        return f"Seeds({sorted(self)})"


@pytest.fixture(scope="module")
def image_seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("image_seeds")
    made = {
        "rgb8.png": "u8_rgb",
        "rgba16.png": "u16_rgba",
        "gray8.jpg": "u8_gray",
        "rgb8.jpg": "u8_rgb",
        "rgba8.webp": "u8_rgba",
        "gray16.tif": "u16_gray",
        "rgb8.bmp": "u8_rgb",
    }
    return Seeds(
        (name, save_image(folder / name, make_image(kind, height=16, width=24)).read_bytes())
        for name, kind in made.items()
    )


@pytest.fixture(scope="module")
def video_seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("video_seeds")
    specs = [
        make_video(folder / "h264_aac.mp4", frames=8, width=32, height=24, faststart=True),
        make_video(folder / "h264_aac.mkv", frames=8, width=32, height=24),
        make_video(folder / "ten_bit.mkv", frames=6, width=32, height=24, pix_fmt="yuv420p10le", audio=False),
    ]
    return Seeds((spec.path.name, spec.path.read_bytes()) for spec in specs)


def _damaged(data: st.DataObject, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """(a file name whose extension the bytes pretend to have, the bytes)."""
    name = data.draw(st.sampled_from(sorted(seeds)), label="seed")
    real = seeds[name]
    how = data.draw(st.sampled_from(["random", "truncated", "flipped", "signature"]), label="how")
    event(f"bytes: {how}")
    if how == "random":
        return name, data.draw(st.binary(max_size=2048), label="bytes")
    if how == "truncated":
        return name, real[: data.draw(st.integers(0, len(real) - 1), label="cut at")]
    if how == "signature":
        head = data.draw(st.integers(1, 64), label="kept")
        return name, real[:head] + data.draw(st.binary(min_size=1, max_size=2048), label="tail")
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, len(real) - 1), st.integers(0, 255)), min_size=1, max_size=16),
        label="flips",
    )
    damaged = bytearray(real)
    for index, value in flips:
        damaged[index] = value
    return name, bytes(damaged)


def _check_clean(error: DeblurError, path: Path) -> None:
    text = str(error)
    assert text.startswith(f"{path}: ") and "\n" not in text, text


@settings(FUZZ, suppress_health_check=[*FUZZ.suppress_health_check, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_image_reader_never_crashes(
    image_seeds: dict[str, bytes], capfd: pytest.CaptureFixture[str], data: st.DataObject
) -> None:
    capfd.readouterr()
    name, content = _damaged(data, image_seeds)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{Path(name).suffix}"
        path.write_bytes(content)
        try:
            image = _bounded(lambda: read_image(path))
        except InputError as e:
            _check_clean(e, path)
            event("image: refused")
            return
        finally:  # the C libraries' own complaints are caught, never printed around our line
            assert capfd.readouterr().err == ""
    event("image: decoded")
    # Decoded anyway (a flipped byte inside pixel data): it must be a picture the model can take.
    assert image.pixels.dtype in (np.uint8, np.uint16) and image.pixels.size > 0
    rgb, _ = split_for_model(image.pixels)
    assert rgb.ndim == 3 and rgb.shape[2] == 3


def _read_all(path: Path) -> tuple[int, str | None]:
    with VideoReader(path) as reader:
        reader.start([s.index for s in reader.side_streams])
        frames = 0
        for item in reader.items():
            if isinstance(item, DecodedFrame):
                assert item.rgb.ndim == 3 and item.rgb.shape[2] == 3
                assert item.rgb.dtype in (np.uint8, np.uint16)
                frames += 1
        return frames, reader.damage


@FUZZ
@given(data=st.data())
def test_video_reader_never_crashes(video_seeds: dict[str, bytes], data: st.DataObject) -> None:
    name, content = _damaged(data, video_seeds)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{Path(name).suffix}"
        path.write_bytes(content)
        try:
            frames, damage = _bounded(lambda: _read_all(path))
        except InputError as e:
            _check_clean(e, path)
            event("video: refused")
            return
    event(f"video: decoded, {'damage reported' if damage else 'clean'}")
    assert frames >= 1  # the reader refuses, in its constructor, a file with no decodable frame
    assert damage is None or "\n" not in damage


@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_video_pipeline_never_crashes(video_seeds: dict[str, bytes], data: st.DataObject) -> None:
    name, content = _damaged(data, video_seeds)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src, dst = folder / f"fuzz{Path(name).suffix}", folder / "out" / "out.mkv"
        src.write_bytes(content)
        try:
            summary = _bounded(
                lambda: run_video(src, dst, IdentityModel(), EncodeConfig(codec="ffv1"), progress=False)
            )
        except DeblurError as e:  # InputError, or a size change part-way (also an InputError)
            _check_clean(e, src)
            event("pipeline: refused")
            assert sorted(p.name for p in folder.rglob("*")) == [src.name]  # nothing left behind
            return
        event(f"pipeline: written, {'damage reported' if summary.damage else 'clean'}")
        assert dst.is_file() and summary.frames >= 1
        assert sorted(p.name for p in folder.rglob("*")) == sorted([src.name, "out", "out.mkv"])
