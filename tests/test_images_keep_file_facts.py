"""Images keep what the inputs were beyond their pixels: resolution (DPI), gray+alpha (no colour tint), a
lossy JPEG's or WebP's quality (and lossiness), a JPEG's chroma subsampling; palette and 1-bit inputs become
what the README says, and a CMYK JPEG comes out RGB with a note."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import IdentityModel
from PIL import Image

from deblurtool.media.image_meta import probe
from deblurtool.pipeline import run_folder


def _photo(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    smooth = 120 + 60 * np.sin(x / 6.0)[..., None] * np.cos(y / 8.0)[..., None]
    return np.clip(smooth + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)


def _run(src: Path, dst: Path, model: object | None = None) -> None:
    summary = run_folder(src, dst, model or IdentityModel(), progress=False)  # type: ignore[arg-type]
    assert summary.failed == [], summary.failed


@pytest.mark.parametrize(
    ("ext", "dpi"), [(".png", (300, 300)), (".jpg", (300, 150)), (".tif", (200, 200)), (".bmp", (96, 120))]
)
def test_resolution_is_kept(tmp_path: Path, ext: str, dpi: tuple[int, int]) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(_photo()).save(src / f"a{ext}", dpi=dpi)
    _run(src, dst)
    with Image.open(src / f"a{ext}") as original, Image.open(dst / f"a{ext}") as out:
        want, got = original.info.get("dpi"), out.info.get("dpi")
    assert want is not None and np.allclose([float(v) for v in want], dpi, atol=0.02)  # BMP: whole px/m
    assert got is not None and np.allclose([float(v) for v in got], [float(v) for v in want], atol=0.01), got


class _TintingModel(IdentityModel):
    """Brightens red a little more than green and blue, as a real model's channels differ slightly."""

    def deblur_array(self, img: np.ndarray) -> np.ndarray:
        out = super().deblur_array(img).astype(np.int32)
        out[:, :, 0] += 6
        return np.clip(out, 0, 255).astype(img.dtype)


def test_gray_alpha_stays_gray_alpha_without_tint(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    gray = _photo()[:, :, 0]
    alpha = np.linspace(0, 255, gray.shape[1]).astype(np.uint8)[None, :].repeat(gray.shape[0], 0)
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(src / "a.png", dpi=(72, 72))
    _run(src, dst, _TintingModel())
    with Image.open(dst / "a.png") as out:
        assert out.mode == "LA"
        pixels = np.asarray(out)
    np.testing.assert_array_equal(pixels[:, :, 1], alpha)  # alpha untouched
    assert np.abs(pixels[:, :, 0].astype(int) - (gray.astype(int) + 2)).max() <= 1  # the mean: +6 / 3


def test_palette_and_one_bit_become_rgb_and_gray(tmp_path: Path) -> None:
    """What the README says they become: a palette image RGB (RGBA with transparency), 1-bit 8-bit gray."""
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(_photo()).quantize(16).save(src / "palette.png")
    Image.fromarray(_photo()).quantize(16).save(src / "palette_t.png", transparency=0)
    Image.fromarray(_photo()[:, :, 0] > 128).save(src / "bits.png")
    _run(src, dst)
    modes = {}
    for name in ("palette.png", "palette_t.png", "bits.png"):
        with Image.open(dst / name) as out:
            modes[name] = out.mode
    assert modes == {"palette.png": "RGB", "palette_t.png": "RGBA", "bits.png": "L"}


@pytest.mark.parametrize("quality", [40, 75])
def test_jpeg_quality_follows_the_input(tmp_path: Path, quality: int) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(_photo(96, 128)).save(src / "a.jpg", quality=quality)
    _run(src, dst)
    facts = probe((dst / "a.jpg").read_bytes())
    assert facts.quality is not None and abs(facts.quality - quality) <= 1, facts


def test_lossy_webp_stays_lossy_at_its_quality(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(_photo(96, 128)).save(src / "lossy.webp", quality=60)
    Image.fromarray(_photo(96, 128, seed=1)).save(src / "lossless.webp", lossless=True)
    _run(src, dst)
    estimate = probe((src / "lossy.webp").read_bytes()).quality
    assert estimate is not None and abs(estimate - 60) <= 6
    assert probe((dst / "lossy.webp").read_bytes()).lossless is False
    assert probe((dst / "lossless.webp").read_bytes()).lossless is True
    # About the input's size, not several times it, as a lossless copy of a lossy picture would be.
    ratio = (dst / "lossy.webp").stat().st_size / (src / "lossy.webp").stat().st_size
    assert 0.5 < ratio < 1.5, ratio
    with Image.open(io.BytesIO((dst / "lossless.webp").read_bytes())) as out:
        np.testing.assert_array_equal(np.asarray(out.convert("RGB")), _photo(96, 128, seed=1))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize(("subsampling", "name"), [(0, "444"), (1, "422"), (2, "420")])
def test_jpeg_chroma_subsampling_follows_the_input(tmp_path: Path, subsampling: int, name: str) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    picture = _photo(96, 128)
    picture[:, ::2, 0] = 250  # fine colour detail: what 4:2:0 would smear
    Image.fromarray(picture).save(src / "a.jpg", quality=95, subsampling=subsampling)
    assert probe((src / "a.jpg").read_bytes()).chroma == name
    _run(src, dst)
    assert probe((dst / "a.jpg").read_bytes()).chroma == name
    with Image.open(src / "a.jpg") as a, Image.open(dst / "a.jpg") as b:
        before, after = np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))
    assert _psnr(after, before) > 40  # the identity model's output: the input again, not its colour smeared


def test_cmyk_jpeg_comes_out_rgb_with_a_note(tmp_path: Path) -> None:
    from deblurtool.media.image_io import read_image

    Image.fromarray(_photo()).convert("CMYK").save(tmp_path / "print.jpg", quality=90)
    image = read_image(tmp_path / "print.jpg")
    assert image.facts.cmyk and image.pixels.shape[2] == 3
    assert image.notes == (
        "note: a CMYK JPEG: OpenCV reads it as RGB and cannot write CMYK, so the output is RGB",
    )
    assert read_image_facts_of_rgb(tmp_path) == ()


def read_image_facts_of_rgb(tmp_path: Path) -> tuple[str, ...]:
    from deblurtool.media.image_io import read_image

    Image.fromarray(_photo()).save(tmp_path / "rgb.jpg", quality=90)
    return read_image(tmp_path / "rgb.jpg").notes


def test_folder_names_the_cmyk_jpeg_it_writes_as_rgb(tmp_path: Path) -> None:
    from conftest import JobReport

    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(_photo()).convert("CMYK").save(src / "print.jpg", quality=90)
    report = JobReport()
    summary = run_folder(src, dst, IdentityModel(), progress=report)
    assert summary.failed == [] and summary.done == 1
    assert any("print.jpg" in n and "CMYK JPEG" in n and "output is RGB" in n for n in report.notes), (
        report.notes
    )
    with Image.open(dst / "print.jpg") as out:
        assert out.mode == "RGB"
