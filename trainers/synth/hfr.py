"""Blur/sharp pairs made the way GoPro made them: the mean of N consecutive frames of a high-frame-rate clip.

Nah et al. (CVPR 2017) filmed at 240 fps and averaged 7-13 consecutive sharp frames into one blurry frame,
with the middle frame as its ground truth: a real camera's real motion, integrated over a real exposure.
``blur`` averages the stored (sRGB) values as GoPro's ``blur`` folder does; ``linear=True`` averages in linear
light (gamma 2.2 out, average, gamma 2.2 back in), as GoPro's ``blur_gamma`` folder does.

A clip is held in memory as a TxHxWx3 uint8 array (``Clip``). A window of N frames starting at t0 gives one
pair: ``blur`` = mean of frames t0 .. t0+N-1 (rounded to uint8), ``sharp`` = frame t0 + N // 2.
The window length is drawn from an exposure range in seconds converted at the clip's capture rate: GoPro's
7-13 frames at 240 fps are 29-54 ms, which is 29-54 frames at 1000 fps. ``scale`` resizes the frames first
(area filter) so that blur lengths in pixels can be matched to another camera's (a 2048-wide clip shrunk to
1280 wide has blur 0.625 times as long).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from deblurtool.errors import InputError
from deblurtool.media.colour import to_rgb_u8
from deblurtool.media.image_io import IMAGE_SUFFIXES, read_rgb_u8

GOPRO_FPS = 240.0
GOPRO_FRAMES = (7, 13)  # GoPro's window lengths at 240 fps (Nah et al., 2017)
GAMMA = 2.2
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".y4m", ".gif"}
)


@dataclass(frozen=True)
class Clip:
    """Consecutive sharp frames (TxHxWx3 uint8 RGB) captured at ``fps`` frames a second."""

    name: str
    frames: np.ndarray
    fps: float

    def __post_init__(self) -> None:
        f = self.frames
        if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
            raise ValueError(f"clip frames must be TxHxWx3 uint8, got {f.shape} {f.dtype}")
        if not self.fps > 0:
            raise ValueError(f"capture rate must be > 0, got {self.fps}")


def window_range(fps: float, exposure_s: tuple[float, float] | None = None) -> tuple[int, int]:
    """Smallest and largest window length (frames) for an exposure range at capture rate ``fps``.

    Default exposure: GoPro's, 7-13 frames at 240 fps. At least 2 frames (one frame is no blur)."""
    lo_s, hi_s = exposure_s or (GOPRO_FRAMES[0] / GOPRO_FPS, GOPRO_FRAMES[1] / GOPRO_FPS)
    if not 0 < lo_s <= hi_s:
        raise ValueError(f"exposure range must satisfy 0 < lo <= hi, got {(lo_s, hi_s)}")
    return max(2, round(lo_s * fps)), max(2, round(hi_s * fps))


def _resize(rgb_u8: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return rgb_u8
    h, w = rgb_u8.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(rgb_u8, size, interpolation=interp)


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir() if p.is_file())


def iter_frames(path: Path, *, scale: float = 1.0, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """The frames of a video (anything PyAV decodes) or of a folder of numbered images (sorted by name), one
    at a time as HxWx3 uint8 RGB, resized by ``scale``: a long clip never has to fit in memory.

    Raises InputError naming ``path`` when it cannot be decoded or its frames change size."""
    path = Path(path)
    shape: tuple[int, ...] | None = None

    def checked(rgb_u8: np.ndarray) -> np.ndarray:
        nonlocal shape
        if shape is None:
            shape = rgb_u8.shape
        elif rgb_u8.shape != shape:
            raise InputError("frames of different sizes", path)
        return rgb_u8

    count = 0
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        for p in files[:max_frames]:
            yield checked(_resize(read_rgb_u8(p), scale))
        return
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield checked(_resize(to_rgb_u8(frame), scale))
                count += 1
                if max_frames is not None and count >= max_frames:
                    break
    except (av.FFmpegError, IndexError, UnicodeDecodeError) as e:
        raise InputError(f"cannot decode video: {e}", path) from None


def read_clip(
    path: Path, fps: float, *, scale: float = 1.0, max_frames: int | None = None, name: str | None = None
) -> Clip:
    """A video (anything PyAV decodes) or a folder of numbered images, as a ``Clip`` at capture rate ``fps``.

    The container's own frame rate is ignored: high-speed footage is usually stored at a playback rate
    (X4K1000FPS clips say 25 fps), so the capture rate must be given."""
    path = Path(path)
    frames = list(iter_frames(path, scale=scale, max_frames=max_frames))
    if len(frames) < 2:
        raise InputError(f"need at least 2 frames to average, found {len(frames)}", path)
    return Clip(name or path.stem, np.stack(frames), fps)


def find_clips(src: Path) -> list[Path]:
    """The clips ``src`` names: a video file or a folder of numbered frames is one clip; any other folder
    holds clips (its video files and its sub-folders of frames, sorted by name)."""
    src = Path(src)
    if not src.exists():
        raise InputError("not found", src)
    if src.is_file() or _is_frame_folder(src):
        return [src]
    clips = [
        p
        for p in sorted(src.iterdir())
        if (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES) or _is_frame_folder(p)
    ]
    if not clips:
        raise InputError("no videos or folders of frames found", src)
    return clips


def average_frames(frames_u8: np.ndarray, *, linear: bool = False) -> np.ndarray:
    """The mean of NxHxWx3 uint8 frames as HxWx3 uint8 (rounded), in stored values or in linear light."""
    f = frames_u8.astype(np.float32) / 255.0
    mean = np.power(np.power(f, GAMMA).mean(axis=0), 1.0 / GAMMA) if linear else f.mean(axis=0)
    return np.clip(np.rint(mean * 255.0), 0, 255).astype(np.uint8)


def make_pair(
    clip: Clip,
    t0: int,
    n: int,
    *,
    linear: bool = False,
    region: tuple[int, int, int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(blur, sharp) of the window ``t0 .. t0+n-1``, optionally only in ``region`` = (y, x, h, w)."""
    if n < 1 or t0 < 0 or t0 + n > len(clip.frames):
        raise ValueError(f"window {t0}..{t0 + n - 1} outside a clip of {len(clip.frames)} frames")
    window = clip.frames[t0 : t0 + n]
    if region is not None:
        y, x, h, w = region
        window = window[:, y : y + h, x : x + w]
    return average_frames(window, linear=linear), window[n // 2].copy()


def draw_window(rng: np.random.Generator, clip: Clip, n_range: tuple[int, int]) -> tuple[int, int]:
    """A random (t0, n): n uniform in ``n_range`` (capped at the clip's length), t0 uniform where it fits."""
    n_max = min(n_range[1], len(clip.frames))
    n_min = min(n_range[0], n_max)
    n = int(rng.integers(n_min, n_max + 1))
    t0 = int(rng.integers(0, len(clip.frames) - n + 1))
    return t0, n


def spaced_windows(clip: Clip, n: int, count: int) -> list[int]:
    """``count`` start frames of length-``n`` windows spread evenly over the clip (fixed evaluation sets)."""
    n = min(n, len(clip.frames))
    last = len(clip.frames) - n
    if count <= 1:
        return [last // 2]
    return sorted({round(i * last / (count - 1)) for i in range(count)})


def write_pairs(
    clips: Sequence[Clip],
    out: Path,
    *,
    per_clip: int,
    n_range: tuple[int, int] | None = None,
    linear: bool = False,
    seed: int = 0,
) -> int:
    """Write ``per_clip`` random windows of every clip as ``OUT/<clip>/{blur,sharp}/<t0>_avg<n>.png`` pairs
    (the GOPRO_Large sequence layout; ``blur_gamma`` instead of ``blur`` when ``linear``). Returns the count.

    Each PNG is written to a temporary name and renamed when complete."""
    from deblurtool.fsutil import atomic_write

    rng = np.random.default_rng(seed)
    blur_dir = "blur_gamma" if linear else "blur"
    written = 0
    for clip in clips:
        rng_n = n_range or window_range(clip.fps)
        seen: set[tuple[int, int]] = set()
        for _ in range(per_clip * 4):
            if len(seen) >= per_clip:
                break
            t0, n = draw_window(rng, clip, rng_n)
            if (t0, n) in seen:
                continue
            seen.add((t0, n))
            blur, sharp = make_pair(clip, t0, n, linear=linear)
            stem = f"{t0:06d}_avg{n}"
            for sub, img in ((blur_dir, blur), ("sharp", sharp)):
                ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                if not ok:
                    raise RuntimeError("PNG encoding failed")
                path = out / clip.name / sub / f"{stem}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_write(path) as tmp:
                    tmp.write_bytes(buf.tobytes())
            written += 1
    return written


@dataclass(frozen=True)
class Window:
    """One pair of a stream: frames ``t0 .. t0+n-1`` averaged (``blur``), frame ``t0 + n // 2`` (sharp)."""

    t0: int
    n: int
    blur_u8: np.ndarray
    sharp_u8: np.ndarray

    @property
    def stem(self) -> str:
        """The file name of the pair (without suffix), as ``write_pairs`` names it."""
        return f"{self.t0:06d}_avg{self.n}"


def stream_windows(
    frames: Iterable[np.ndarray],
    rng: np.random.Generator,
    n_range: tuple[int, int],
    *,
    step: int = 0,
    linear: bool = False,
    limit: int = 0,
) -> Iterator[Window]:
    """Consecutive windows through a stream of frames, each ``n`` frames long with ``n`` drawn uniformly from
    ``n_range``; the next window starts ``step`` frames after the last one's start (0: right after its last
    frame, GoPro's way: no frame in two pairs). Holds at most one window of frames. ``limit``: stop after
    that many pairs (0: at the end of the stream)."""
    lo, hi = n_range
    if not 1 <= lo <= hi:
        raise ValueError(f"window lengths must satisfy 1 <= lo <= hi, got {n_range}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")

    def draw() -> int:
        return int(rng.integers(lo, hi + 1))

    t0, n = 0, draw()
    buf: deque[tuple[int, np.ndarray]] = deque()
    made = 0
    for i, frame in enumerate(frames):
        if i < t0:
            continue
        buf.append((i, frame))
        while buf and i >= t0 + n - 1:
            window = np.stack([f for j, f in buf if t0 <= j < t0 + n])
            yield Window(t0, n, average_frames(window, linear=linear), window[n // 2].copy())
            made += 1
            if limit and made >= limit:
                return
            t0 += step or n
            n = draw()
            while buf and buf[0][0] < t0:
                buf.popleft()
