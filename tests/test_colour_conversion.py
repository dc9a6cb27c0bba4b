"""YUV <-> RGB (deblurtool.media.colour, .yuv): the stream's matrix, range and chroma siting, exact rounding,
and a decode -> encode round trip that keeps colour edges at least as well as FFmpeg's own round trip."""

from __future__ import annotations

from pathlib import Path

import av
import av.filter
import numpy as np
import pytest
from av.video.reformatter import Interpolation
from conftest import IdentityModel

from deblurtool.config import EncodeConfig
from deblurtool.media import yuv
from deblurtool.media.colour import chroma_siting, from_rgb_array, to_rgb_array
from deblurtool.pipeline.video import run_video

SITINGS = (1, 2, 3, 4, 5, 6)  # AVChromaLocation: left, center, topleft, top, bottomleft, bottom


def bars(
    source: str, pix_fmt: str, colorspace: int, color_range: int, size: str = "320x240"
) -> av.VideoFrame:
    """One frame of FFmpeg's test pattern ``source`` (colour bars: hard chroma edges) in ``pix_fmt``, tagged
    with ``colorspace`` / ``color_range``."""
    graph = av.filter.Graph()
    src = graph.add(source, f"size={size}:rate=25:duration=1")
    fmt = graph.add("format", pix_fmt)
    sink = graph.add("buffersink")
    src.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    frame = graph.pull()
    assert isinstance(frame, av.VideoFrame)
    frame.colorspace, frame.color_range = colorspace, color_range
    return frame


def planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """Y, U, V of a planar frame as float64 HxW arrays."""
    fmt = yuv.planar(frame.format.name)
    assert fmt is not None
    return [yuv._read_plane(frame.planes[i], fmt.dtype).astype(np.float64) for i in range(3)]


def psnr(a: np.ndarray, b: np.ndarray, top: float) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(top * top / mse)


@pytest.mark.parametrize(
    ("source", "pix_fmt", "colorspace", "color_range", "rgb"),
    [
        ("smptebars", "yuv420p", 5, 1, "rgb24"),  # BT.601, limited: SD bars
        ("smptehdbars", "yuv420p", 1, 1, "rgb24"),  # BT.709, limited: HD bars
        ("smptehdbars", "yuv420p", 1, 2, "rgb24"),  # full range
        ("smptehdbars", "yuv422p", 1, 1, "rgb24"),
        ("smptehdbars", "yuv420p10le", 9, 1, "rgb48le"),  # BT.2020, 10-bit
    ],
)
def test_round_trip_keeps_colour_bars_as_well_as_ffmpeg(
    source: str, pix_fmt: str, colorspace: int, color_range: int, rgb: str
) -> None:
    """decode -> encode of colour bars keeps every plane within a small margin of what FFmpeg's own round
    trip (swscale, the same matrix and range) keeps; the conversion this replaced lost 7-8 dB of U/V here."""
    frame = bars(source, pix_fmt, colorspace, color_range)
    top = float((1 << yuv.planar(pix_fmt).bits) - 1)  # type: ignore[union-attr]
    original = planes(frame)
    ours = from_rgb_array(to_rgb_array(frame, rgb), pix_fmt, colorspace, color_range)
    theirs = frame.reformat(format=rgb).reformat(format=pix_fmt)
    assert (theirs.colorspace, theirs.color_range) == (colorspace, color_range)  # FFmpeg used the tags too
    for name, a, b, c in zip("YUV", original, planes(ours), planes(theirs), strict=True):
        kept, ffmpeg = psnr(a, b, top), psnr(a, c, top)
        assert kept >= ffmpeg - 1.0, f"{name}: {kept:.1f} dB, FFmpeg's own round trip {ffmpeg:.1f} dB"


@pytest.mark.parametrize("colorspace", [5, 1, 9])
@pytest.mark.parametrize("color_range", [1, 2])
def test_matrix_and_range_agree_with_ffmpeg_at_full_chroma_resolution(
    colorspace: int, color_range: int
) -> None:
    """4:4:4 (no chroma resampling): our RGB is swscale's accurately rounded conversion, to within one
    level."""
    rng = np.random.default_rng(colorspace * 10 + color_range)
    frame = av.VideoFrame(32, 16, "yuv444p")
    for plane in frame.planes:
        yuv._write_plane(plane, rng.integers(40, 200, (16, 32), dtype=np.uint8), np.dtype(np.uint8))
    frame.colorspace, frame.color_range = colorspace, color_range
    ours = to_rgb_array(frame, "rgb24").astype(np.int64)
    accurate = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
    theirs = frame.reformat(format="rgb24", interpolation=accurate).to_ndarray().astype(np.int64)
    assert np.abs(ours - theirs).max() <= 1


@pytest.mark.parametrize(
    ("colorspace", "weights"), [(1, (0.2126, 0.0722)), (5, (0.299, 0.114)), (9, (0.2627, 0.0593))]
)
def test_primary_colours_encode_to_the_standard_values(colorspace: int, weights: tuple[float, float]) -> None:
    """Pure red in limited range: Y = 16 + 219 Kr, Cr = 128 + 112 exactly (BT.601 / BT.709 / BT.2020)."""
    kr, kb = weights
    red = np.zeros((4, 4, 3), np.uint8)
    red[:, :, 0] = 255
    frame = from_rgb_array(red, "yuv420p", colorspace, 1)
    luma, cb, cr = planes(frame)
    assert np.all(luma == round(16 + 219 * kr))
    assert np.all(cr == 240)
    assert np.all(cb == round(128 - 112 * kr / (1 - kb)))
    assert (frame.colorspace, frame.color_range) == (colorspace, 1)


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv422p", "yuv411p", "yuv410p", "yuv440p", "yuv444p"])
@pytest.mark.parametrize("siting", SITINGS)
@pytest.mark.parametrize(("width", "height"), [(17, 9), (16, 8), (5, 3), (1, 1)])
def test_upsampling_is_the_reference_and_downsampling_inverts_it(
    pix_fmt: str, siting: int, width: int, height: int
) -> None:
    """OpenCV's upsampling equals the reference definition (_up along each axis), for every subsampling,
    siting and odd size; the least-squares downsampling gives back the chroma it was upsampled from."""
    fmt = yuv.planar(pix_fmt)
    assert fmt is not None
    h_sub, w_sub = -(-height >> fmt.log2_h), -(-width >> fmt.log2_w)
    chroma = np.random.default_rng(0).uniform(16, 240, (2, h_sub, w_sub)).astype(np.float32)
    fast = yuv.upsample(chroma, width, height, fmt, siting)
    where_x, where_y = yuv._SITING[siting]
    slow = chroma
    if fmt.log2_h:
        slow = yuv._up(slow, yuv._axis(height, h_sub, fmt.log2_h, where_y))
    if fmt.log2_w:
        slow = yuv._up(yuv._across(slow), yuv._axis(width, w_sub, fmt.log2_w, where_x)).transpose(0, 2, 1)
    assert fast.shape == (2, height, width)
    np.testing.assert_allclose(fast, slow, atol=1e-3)
    back = yuv.downsample(np.ascontiguousarray(fast), w_sub, h_sub, fmt, siting)
    np.testing.assert_allclose(back, chroma, atol=1e-2)


def test_siting_places_chroma_where_the_codec_says() -> None:
    """A horizontal ramp of chroma: co-sited ("left", MPEG-2/H.264) chroma sample j is at luma 2j, centred
    (JPEG) chroma sample j half-way between luma 2j and 2j + 1."""
    fmt = yuv.planar("yuv422p")
    assert fmt is not None
    ramp = np.tile(np.arange(8, dtype=np.float32), (1, 4, 1))
    left = yuv.upsample(ramp, 16, 4, fmt, yuv.SITING_LEFT)[0, 0]
    center = yuv.upsample(ramp, 16, 4, fmt, yuv.SITING_CENTER)[0, 0]
    np.testing.assert_allclose(left[0:14:2], np.arange(7), atol=1e-4)
    np.testing.assert_allclose(left[1:14:2], np.arange(7) + 0.5, atol=1e-4)
    np.testing.assert_allclose(center[2:14:2], np.arange(1, 7) - 0.25, atol=1e-4)
    assert chroma_siting("h264", "yuv420p") == chroma_siting("hevc", "yuv420p10le") == yuv.SITING_LEFT
    assert chroma_siting("mjpeg", "yuvj420p") == chroma_siting(None, "yuvj422p") == yuv.SITING_CENTER


@pytest.mark.parametrize(
    ("pix_fmt", "rgb"), [("yuv420p", "rgb24"), ("yuv420p10le", "rgb48le"), ("yuv422p", "rgb24")]
)
def test_in_gamut_round_trip_is_exact(pix_fmt: str, rgb: str) -> None:
    """Away from the edges of the RGB cube (nothing clipped), decode -> encode returns every sample of a
    random picture to within one level: nothing is lost but the rounding of RGB."""
    fmt = yuv.planar(pix_fmt)
    assert fmt is not None
    unit = 1 << (fmt.bits - 8)
    rng = np.random.default_rng(1)
    frame = av.VideoFrame(37, 21, pix_fmt)
    for i, plane in enumerate(frame.planes[:3]):
        low, high = (100, 140) if i == 0 else (120, 136)  # mid grey +- a little colour: inside the cube
        values = rng.integers(low * unit, high * unit, (plane.height, plane.width))
        yuv._write_plane(plane, values, fmt.dtype)
    frame.colorspace, frame.color_range = 1, 1
    back = from_rgb_array(to_rgb_array(frame, rgb), pix_fmt, 1, 1)
    for a, b in zip(planes(frame), planes(back), strict=True):
        assert np.abs(a - b).max() <= (1 if fmt.bits == 8 else 2)


@pytest.mark.parametrize(
    ("packed", "twin"), [("nv12", "yuv420p"), ("p010le", "yuv420p10le"), ("yuyv422", "yuv422p")]
)
def test_semi_planar_and_packed_formats_convert_as_their_planar_twins(packed: str, twin: str) -> None:
    frame = bars("smptehdbars", twin, 1, 1, size="64x32")
    rgb_format = "rgb24" if "10" not in twin else "rgb48le"
    as_twin = to_rgb_array(frame, rgb_format)
    as_packed = to_rgb_array(frame.reformat(format=packed), rgb_format)
    assert np.array_equal(as_packed, as_twin)
    written = from_rgb_array(as_twin, packed, 1, 1)
    assert written.format.name == packed
    assert np.array_equal(
        written.reformat(format=twin).to_ndarray(), from_rgb_array(as_twin, twin, 1, 1).to_ndarray()
    )


def test_alpha_formats_without_alpha_are_written_opaque() -> None:
    rgb = np.full((8, 8, 3), 128, np.uint8)
    frame = from_rgb_array(rgb, "yuva420p", 1, 1)
    assert np.all(yuv._read_plane(frame.planes[3], np.dtype(np.uint8)) == 255)


def test_video_round_trip_through_the_pipeline_keeps_chroma_edges(tmp_path: Path) -> None:
    """`video` with a model that changes nothing, into a lossless output: the colour bars come back with
    their chroma edges (the conversion this replaced blurred them on every pass)."""
    frame = bars("smptebars", "yuv420p", 5, 1)
    src = tmp_path / "bars.mkv"
    with av.open(str(src), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
        stream.codec_context.colorspace, stream.codec_context.color_range = 5, 1
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    dst = tmp_path / "out.mkv"
    run_video(src, dst, IdentityModel(), EncodeConfig(codec="ffv1"), progress=False)
    with av.open(str(dst)) as container:
        out = next(container.decode(video=0))
    kept = [psnr(a, b, 255) for a, b in zip(planes(frame), planes(out), strict=True)]
    assert kept[0] > 45 and kept[1] > 50 and kept[2] > 50, kept  # (U and V were about 40 dB)


@pytest.mark.slow
def test_real_footage_round_trip() -> None:
    """The sample GoPro clip, decoded, encoded (lossless) and decoded again, stays within rounding of
    itself in every plane."""
    src = Path(__file__).resolve().parents[1] / "samples" / "GOPR0384_11_00_blur.mp4"
    if not src.exists():
        pytest.skip("the sample clip is not in this checkout")
    with av.open(str(src)) as container:
        frames = [f for _, f in zip(range(3), container.decode(video=0), strict=False)]
    for frame in frames:
        back = from_rgb_array(
            to_rgb_array(frame, "rgb24"), frame.format.name, frame.colorspace, frame.color_range
        )
        for a, b in zip(planes(frame), planes(back), strict=True):
            assert psnr(a, b, 255) > 65
