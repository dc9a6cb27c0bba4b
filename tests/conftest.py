"""Shared fixtures: tiny videos made with PyAV (with audio, subtitles, VFR, 10-bit, rotation), images of every
mode and depth, and a tiny real generator that is the identity, all made inside the tests (no files shipped,
nothing downloaded)."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import av
import cv2
import numpy as np
import pytest
import torch

from deblurtool.models.generator import GeneratorConfig, ResnetGenerator
from deblurtool.models.weights import ENV_WEIGHTS, save_generator
from deblurtool.scale.driver import LogJobProgress

W, H = 64, 48

# Compiled OpenVINO models of the test nets go to one cache folder for the whole session (subprocesses of the
# CLI inherit it): never the user's ~/.cache, and each tiny net is converted once per session, not per test.
_TEST_CACHE = tempfile.mkdtemp(prefix="deblurtool-test-cache-")
os.environ["DEBLURTOOL_CACHE"] = _TEST_CACHE
atexit.register(shutil.rmtree, _TEST_CACHE, ignore_errors=True)


def smooth_rgb(index: int, *, height: int = H, width: int = W, dtype: type = np.uint8) -> np.ndarray:
    """A smooth, moving colour gradient (HxWx3): survives 4:2:0 chroma subsampling nearly exactly, so a
    round trip through an encoder can be compared pixel by pixel."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 0.2 + 0.6 * x / max(width - 1, 1)
    g = 0.2 + 0.6 * y / max(height - 1, 1)
    b = 0.5 + 0.3 * np.sin(index / 3.0 + (x + y) / 40.0)
    rgb = np.stack([r, g, b], axis=2)
    top = 255 if dtype == np.uint8 else 65535
    return np.round(rgb * top).astype(dtype)


@dataclass(frozen=True)
class VideoSpec:
    """What a generated video holds, for the tests to compare against."""

    path: Path
    pts: list[int]
    time_base: Fraction
    audio_packets: int


def make_video(
    path: Path,
    *,
    frames: int = 12,
    width: int = W,
    height: int = H,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rate: int = 24,
    pts: Sequence[int] | None = None,
    audio: bool = True,
    subtitles: Path | None = None,
    rotation: int | None = None,
    faststart: bool = False,
    gop: int | None = None,
) -> VideoSpec:
    """Encode ``frames`` smooth frames. ``pts`` (increasing ints in 1/``rate`` s ticks) makes a variable
    frame rate video; ``subtitles`` is an .srt file remuxed in; ``rotation`` writes a display matrix; ``gop``
    puts an x264 keyframe every ``gop`` frames (B-frames stay on)."""
    frame_pts = list(pts) if pts is not None else list(range(frames))
    deep = "10" in pix_fmt or "12" in pix_fmt or "16" in pix_fmt
    options = {"movflags": "+faststart"} if faststart else {}
    srt = av.open(str(subtitles)) if subtitles is not None else None
    audio_packets = 0
    with av.open(str(path), "w", options=options) as out:
        v = out.add_stream(codec, rate=rate)
        v.width, v.height, v.pix_fmt = width, height, pix_fmt
        v.codec_context.time_base = Fraction(1, rate)
        if codec.startswith("libx26"):
            v.options = {"crf": "1"}
        if gop is not None and codec == "libx264":
            v.options = {**v.options, "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        if rotation is not None:
            v.set_display_rotation(rotation)
        a = out.add_stream("aac", rate=8000, layout="mono") if audio else None
        t = out.add_stream_from_template(srt.streams.subtitles[0]) if srt is not None else None
        for i, p in enumerate(frame_pts):
            rgb = smooth_rgb(i, height=height, width=width, dtype=np.uint16 if deep else np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if deep else "rgb24")
            frame.pts = p
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        if a is not None:
            seconds = (frame_pts[-1] + 1) / rate
            tone = np.sin(np.arange(int(8000 * seconds)) * 2 * np.pi * 440 / 8000).astype(np.float32)
            for k in range(0, tone.size, 1024):
                chunk = np.zeros((1, 1024), np.float32)
                part = tone[k : k + 1024]
                chunk[0, : part.size] = part
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                af.sample_rate, af.pts = 8000, k
                packets = a.encode(af)
                audio_packets += len(packets)
                out.mux(packets)
            packets = a.encode(None)
            audio_packets += len(packets)
            out.mux(packets)
        if srt is not None and t is not None:
            for packet in srt.demux():
                if packet.dts is not None:
                    packet.stream = t
                    out.mux(packet)
    if srt is not None:
        srt.close()
    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
    return VideoSpec(path, frame_pts, tb, audio_packets)


@pytest.fixture
def video_factory(tmp_path: Path) -> Callable[..., VideoSpec]:
    def factory(name: str = "in.mp4", **kwargs: object) -> VideoSpec:
        return make_video(tmp_path / name, **kwargs)  # type: ignore[arg-type]

    return factory


@pytest.fixture
def srt_file(tmp_path: Path) -> Path:
    path = tmp_path / "subs.srt"
    path.write_text("1\n00:00:00,100 --> 00:00:00,300\nhello\n\n2\n00:00:00,350 --> 00:00:00,450\nworld\n")
    return path


def decode_video(path: Path) -> tuple[list[Fraction], list[np.ndarray], str, int]:
    """(presentation times in seconds, RGB frames, pix_fmt, rotation) of the first video stream."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        times, frames, rotation = [], [], 0
        fmt = "rgb24"
        for f in c.decode(v):
            if not frames:
                rotation = int(f.rotation)
                fmt = "rgb24" if max(comp.bits for comp in f.format.components) <= 8 else "rgb48le"
            times.append(f.pts * f.time_base)
            frames.append(f.to_ndarray(format=fmt))
        return times, frames, v.codec_context.pix_fmt or "", rotation


def stream_packets(path: Path, kind: str) -> tuple[str, list[tuple[int, bytes]]]:
    """(codec name, [(pts in seconds*1e6 rounded, payload bytes)]) for the first stream of ``kind``."""
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type == kind]
        if not streams:
            return "", []
        s = streams[0]
        packets = [
            (round(p.pts * p.time_base * 1_000_000), bytes(p)) for p in c.demux(s) if p.dts is not None
        ]
        return s.codec_context.name, packets


class IdentityModel:
    """The fake model: returns its input (a copy), records how many frames it saw."""

    def __init__(self) -> None:
        self.calls = 0

    def deblur_array(self, img: np.ndarray) -> np.ndarray:
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype in (np.uint8, np.uint16)
        self.calls += 1
        return img.copy()


class SlowModel(IdentityModel):
    """The identity, ``delay`` seconds a frame; sets ``started`` at the first frame (a job is under way)."""

    def __init__(self, started: threading.Event, delay: float = 0.2) -> None:
        super().__init__()
        self.started, self.delay = started, delay

    def deblur_array(self, img: np.ndarray) -> np.ndarray:
        self.started.set()
        time.sleep(self.delay)
        return super().deblur_array(img)


def run_cli(*args: str | Path) -> tuple[int, str]:
    """``deblurtool ARGS`` through typer's runner: (exit code, output)."""
    from typer.testing import CliRunner

    from deblurtool.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


class FailingModel(IdentityModel):
    """Raises ``error`` on call number ``at`` (1-based): a crash part-way through a job."""

    def __init__(self, at: int, error: BaseException) -> None:
        super().__init__()
        self.at, self.error = at, error

    def deblur_array(self, img: np.ndarray) -> np.ndarray:
        if self.calls + 1 >= self.at:
            raise self.error
        return super().deblur_array(img)


@pytest.fixture
def identity_model() -> IdentityModel:
    return IdentityModel()


def make_image(kind: str, *, height: int = 20, width: int = 30, seed: int = 0) -> np.ndarray:
    """OpenCV-layout pixels: kind is u8_gray, u8_rgb, u8_rgba, u16_rgb, u16_gray, u16_rgba."""
    rng = np.random.default_rng(seed)
    depth, mode = kind.split("_")
    dtype, top = (np.uint8, 255) if depth == "u8" else (np.uint16, 65535)
    channels = {"gray": 1, "rgb": 3, "rgba": 4}[mode]
    pixels = rng.integers(0, top + 1, size=(height, width, channels), dtype=np.int64).astype(dtype)
    if mode == "rgba":
        pixels[:, :, 3] = np.linspace(0, top, width, dtype=np.float64).astype(dtype)[None, :]
    return pixels[:, :, 0] if channels == 1 else pixels


def save_image(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, pixels)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def random_generator(config: GeneratorConfig, seed: int = 0, scale: float = 0.3) -> ResnetGenerator:
    """A generator (eval mode) with every weight, BN affine parameter and running statistic random, head
    included, so it is far from the identity (the default init is too regular to catch mistakes)."""
    g = torch.Generator().manual_seed(seed)
    model = ResnetGenerator(config)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * scale)
    return model.eval()


TINY = GeneratorConfig(ngf=4, n_blocks=1)


def identity_generator(config: GeneratorConfig = TINY) -> ResnetGenerator:
    """A real generator that returns its input exactly: ResnetGenerator adds its body's output to the input
    (global residual), and its initialisation zeroes the last conv, so the body adds 0 in any precision."""
    torch.manual_seed(0)
    model = ResnetGenerator(config).eval()
    assert not model.head.weight.any(), "the generator's init no longer zeroes its head"
    return model


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real weights file (.safetensors) of the tiny identity generator."""
    path = tmp_path_factory.mktemp("weights") / "tiny-identity.safetensors"
    save_generator(identity_generator(), path, dtype=torch.float32)
    return path


@pytest.fixture
def tiny_default(tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Commands run without --weights load the tiny identity generator (as ``$DEBLURTOOL_WEIGHTS`` would)."""
    monkeypatch.setenv(ENV_WEIGHTS, str(tiny_weights))
    return tiny_weights


@pytest.fixture
def fail_on_call(monkeypatch: pytest.MonkeyPatch) -> Callable[[int, BaseException], Callable[[], None]]:
    """``fail_on_call(n, error)``: the real Deblurrer raises ``error`` from its call number ``n`` on (a crash
    part-way through a job); it returns a function that makes the model work again."""
    from deblurtool.inference import Deblurrer

    real = Deblurrer.deblur_array

    def arm(n: int, error: BaseException) -> Callable[[], None]:
        calls = 0

        def failing(self: Deblurrer, img: np.ndarray) -> np.ndarray:
            nonlocal calls
            calls += 1
            if calls >= n:
                raise error
            return real(self, img)

        monkeypatch.setattr(Deblurrer, "deblur_array", failing)
        return lambda: monkeypatch.setattr(Deblurrer, "deblur_array", real)

    return arm


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` (not a package) as module ``name``; registered in sys.modules first, as
    dataclasses need."""
    path = Path(__file__).parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# -- permissions as an ordinary user sees them ---------------------------------------------------------------

_CAP_V3 = 0x20080522
_DAC_OVERRIDE = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _set_dac_override(on: bool) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(_CAP_V3, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        return False
    if on:
        data[0].effective |= data[0].permitted & _DAC_OVERRIDE
    else:
        data[0].effective &= ~_DAC_OVERRIDE
    return libc.capset(ctypes.byref(header), data) == 0


@contextlib.contextmanager
def _as_ordinary_user() -> Iterator[None]:
    """File permissions apply to this thread as to an ordinary user: root (as in many containers and CI
    jobs) would otherwise read a mode-000 folder and write into a read-only one. Under root the thread drops
    the capabilities that bypass permission checks (files stay owned by root, so the owner bits apply) and
    takes them back afterwards; for any other user this changes nothing."""
    if os.geteuid() != 0:
        yield
        return
    if sys.platform != "linux" or not _set_dac_override(False):
        pytest.skip("running as root without a way to drop the permission-bypassing capabilities")
    try:
        yield
    finally:
        _set_dac_override(True)


@pytest.fixture
def ordinary_user() -> Callable[[], contextlib.AbstractContextManager[None]]:
    """``with ordinary_user(): ...`` runs its body with an ordinary user's view of file permissions."""
    return _as_ordinary_user


# -- Ray (the scale tests) -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A real Ray cluster for the module: 2 CPUs, workers as separate processes. The driver code finds the
    connection and uses it (what ``--ray auto`` does on a cluster made by ``ray start``)."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            raise  # CI installs the extra: a missing Ray there is a failure, not a skip
        pytest.skip('needs Ray: pip install -e ".[test,ray]"')
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


class Recorder:
    """A Ray driver's events, and actions to take on them (kill a worker, interrupt the driver)."""

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


class JobReport(LogJobProgress):
    """What the library reports while a Ray job runs (the CLI draws it): notes and failures."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.failures: list[tuple[Path, str]] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    def failed(self, path: Path, reason: str) -> None:
        self.failures.append((path, reason))


def damage_packet(src: Path, dst: Path, index: int) -> None:
    """Copy ``src`` with the length prefix of its ``index``-th video packet broken."""
    with av.open(str(src)) as c:
        packet = [p for p in c.demux(c.streams.video[0]) if p.size][index]
        pos = packet.pos
    data = bytearray(src.read_bytes())
    data[pos : pos + 4] = b"\xff\xff\xff\xff"
    dst.write_bytes(bytes(data))
