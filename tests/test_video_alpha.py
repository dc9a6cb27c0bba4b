"""Videos with an alpha channel keep it, as images do: the model deblurs the RGB, the alpha is carried through
unchanged, in the codecs and containers that hold it (PNG, QuickTime RLE and ProRes 4444 in MOV, FFV1, VP9's
separate alpha plane in WebM/Matroska, decoded through libvpx). Where the output cannot hold it, the job is
refused before any work, or (the user chose the encoder) done with a note; never silently, and a WebM never
claims an alpha plane (``ALPHA_MODE``) it does not have.

Inputs are made here with PyAV; the model is the identity or a fixed brightening."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from conftest import IdentityModel, run_cli

from deblurtool.config import EncodeConfig
from deblurtool.errors import DeblurError
from deblurtool.media.colour import alpha_array, from_rgb_array
from deblurtool.media.video_reader import DecodedFrame, VideoReader
from deblurtool.pipeline import plan_video, run_video

H, W = 36, 50


@pytest.fixture(autouse=True)
def _tiny_model(tiny_default: Path) -> None:
    """Commands load the tiny identity generator as their default weights."""


def _rgba(i: int) -> np.ndarray:
    """A frame whose alpha is a horizontal ramp (0 on the right), colour varying by frame."""
    y, x = np.mgrid[0:H, 0:W]
    rgba = np.stack([x * 5 % 256, (y * 7 + 30 * i) % 256, (x + y) * 3 % 256, 255 - x * 5], axis=-1)
    return rgba.astype(np.uint8)


def _clip(
    path: Path, codec: str, pix_fmt: str, frames: int = 4, options: dict[str, str] | None = None
) -> Path:
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=24, options=options or {})
        v.width, v.height, v.pix_fmt = W, H, pix_fmt
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_rgba(i), format="rgba")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    return path


def _frames(path: Path) -> list[DecodedFrame]:
    with VideoReader(path) as reader:
        reader.start()
        return [item for item in reader.items() if isinstance(item, DecodedFrame)]


def _alpha_mode(path: Path) -> str | None:
    with av.open(str(path)) as c:
        return {k.lower(): v for k, v in c.streams.video[0].metadata.items()}.get("alpha_mode")


class Brighten(IdentityModel):
    """A model that visibly changes the picture: +10 levels, so RGB is seen to come from the model."""

    def deblur_array(self, img: np.ndarray) -> np.ndarray:
        super().deblur_array(img)
        return np.clip(img.astype(np.int32) + 10, 0, 255).astype(img.dtype)


@pytest.mark.parametrize(("codec", "pix_fmt"), [("png", "rgba"), ("qtrle", "argb")])
def test_mov_alpha_is_carried_through_and_rgb_deblurred(tmp_path: Path, codec: str, pix_fmt: str) -> None:
    src = _clip(tmp_path / "in.mov", codec, pix_fmt)
    summary = run_video(src, tmp_path / "out.mov", Brighten(), EncodeConfig(), progress=False)
    assert summary.notes == [
        f"note: the input has an alpha channel (transparency): written with {codec}, the input's codec, "
        "which keeps it in .mov files"
    ]
    before, after = _frames(src), _frames(tmp_path / "out.mov")
    assert len(after) == 4
    for a, b in zip(before, after, strict=True):
        assert a.alpha is not None and b.alpha is not None
        np.testing.assert_array_equal(b.alpha, a.alpha)  # lossless codec: alpha bit for bit
        np.testing.assert_array_equal(b.rgb, np.clip(a.rgb.astype(int) + 10, 0, 255))  # the model's RGB
    with av.open(str(tmp_path / "out.mov")) as c:
        assert c.streams.video[0].codec_context.name == codec


def test_vp9_alpha_webm_keeps_its_alpha_plane(tmp_path: Path) -> None:
    src = _clip(tmp_path / "in.webm", "libvpx-vp9", "yuva420p", options={"crf": "10", "b": "0"})
    assert _alpha_mode(src) == "1"
    summary = run_video(src, tmp_path / "out.webm", IdentityModel(), EncodeConfig(), progress=False)
    assert summary.notes == [] and summary.pix_fmt == "yuva420p"
    assert _alpha_mode(tmp_path / "out.webm") == "1"
    before, after = _frames(src), _frames(tmp_path / "out.webm")
    for a, b in zip(before, after, strict=True):
        assert a.alpha is not None and b.alpha is not None
        assert a.alpha.min() < 20 and a.alpha.max() > 230  # decoded through libvpx: the ramp, not opaque
        assert np.abs(b.alpha.astype(int) - a.alpha).mean() < 2  # re-encoded by VP9: near, not exact


def test_dropping_alpha_on_request_says_so_and_leaves_no_alpha_mode_tag(tmp_path: Path) -> None:
    src = _clip(tmp_path / "in.webm", "libvpx-vp9", "yuva420p")
    dst = tmp_path / "out.webm"
    summary = run_video(src, dst, IdentityModel(), EncodeConfig(pix_fmt="yuv420p"), progress=False)
    assert summary.notes == [
        "note: the input's alpha channel (transparency) is dropped: --pix-fmt yuv420p has no alpha channel"
    ]
    assert _alpha_mode(dst) is None and _frames(dst)[0].alpha is None
    summary = run_video(
        src, tmp_path / "x.mp4", IdentityModel(), EncodeConfig(codec="libx264"), progress=False
    )
    assert summary.notes == [
        "note: the input's alpha channel (transparency) is dropped: "
        "libx264 (yuv420p) cannot keep alpha in .mp4 files"
    ]


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt"), [("in.webm", "libvpx-vp9", "yuva420p"), ("in.mov", "qtrle", "argb")]
)
def test_an_output_that_cannot_hold_alpha_is_refused_before_work(
    tmp_path: Path, name: str, codec: str, pix_fmt: str
) -> None:
    src = _clip(tmp_path / name, codec, pix_fmt)
    dst = tmp_path / "out.mp4"
    with (
        pytest.raises(
            DeblurError, match=r"alpha channel .* cannot keep alpha in \.mp4 files; --codec ffv1 or png"
        ),
        plan_video(src, dst, EncodeConfig()),
    ):  # what a command runs before it loads the model
        pass
    model = IdentityModel()
    with pytest.raises(DeblurError, match="pass --codec libx264 to drop it"):
        run_video(src, dst, model, EncodeConfig(), progress=False)
    assert model.calls == 0 and sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_cli_refuses_alpha_loss_with_exit_2(tmp_path: Path) -> None:
    src = _clip(tmp_path / "in.mov", "png", "rgba")
    code, output = run_cli("video", src, tmp_path / "out.mkv", "--no-progress")
    assert code == 2, output
    assert "--codec libvpx-vp9, ffv1 or prores_ks keeps it" in output and not (tmp_path / "out.mkv").exists()


def test_prores_4444_keeps_deep_alpha(tmp_path: Path) -> None:
    try:
        av.codec.Codec("prores_ks", "w")
    except (av.error.FFmpegError, ValueError):
        pytest.skip("this FFmpeg has no ProRes encoder")
    src = _clip(tmp_path / "in.mov", "prores_ks", "yuva444p10le")
    summary = run_video(src, tmp_path / "out.mov", IdentityModel(), EncodeConfig(), progress=False)
    assert summary.pix_fmt == "yuva444p10le"
    a, b = _frames(src)[0], _frames(tmp_path / "out.mov")[0]
    assert a.alpha is not None and b.alpha is not None and a.alpha.dtype == b.alpha.dtype == np.uint16
    assert np.abs(b.alpha.astype(int) - a.alpha).max() <= 65535 // 1023  # within one 10-bit step


@pytest.mark.parametrize("pix_fmt", ["yuva420p", "yuva444p10le", "rgba", "argb", "gbrap", "bgra", "rgba64be"])
@pytest.mark.parametrize("deep", [False, True])
def test_alpha_is_written_and_read_as_stored(pix_fmt: str, deep: bool) -> None:
    """No colour matrix, no rounding drift: alpha in, the same alpha out (rescaled only between depths)."""
    rng = np.random.default_rng(1)
    dtype = np.uint16 if deep else np.uint8
    top = int(np.iinfo(dtype).max)
    rgb = rng.integers(0, top + 1, (H + 1, W + 1, 3)).astype(dtype)  # odd sizes: padding and chroma edges
    alpha = rng.integers(0, top + 1, (H + 1, W + 1)).astype(dtype)
    frame = from_rgb_array(rgb, pix_fmt, 1, 1, alpha)
    assert frame.format.name == pix_fmt
    back = alpha_array(frame, dtype)
    assert back is not None
    bits = max(c.bits for c in frame.format.components if c.is_alpha)
    if bits >= np.iinfo(dtype).bits:
        np.testing.assert_array_equal(back, alpha)
    else:  # fewer bits stored: within half a step of the stored depth
        step = top / ((1 << bits) - 1)
        assert np.abs(back.astype(float) - alpha).max() <= step / 2 + 1


def test_ray_chunks_decode_alpha_as_the_reader_does(tmp_path: Path) -> None:
    from deblurtool.scale.chunk import decode_range

    src = _clip(tmp_path / "in.webm", "libvpx-vp9", "yuva420p")
    info = VideoReader(src).info
    chunk = list(decode_range(src, None, None, "rgb24", info.time_base))
    whole = _frames(src)
    assert len(chunk) == len(whole) == 4
    for a, b in zip(chunk, whole, strict=True):
        assert a.alpha is not None and b.alpha is not None
        np.testing.assert_array_equal(a.alpha, b.alpha)
