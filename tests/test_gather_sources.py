"""scripts/gather_sources.py: the table of sources is consistent and its two decoders keep every pixel.

The downloads themselves (pip and apt) are not run here: tests stay offline.
"""

from __future__ import annotations

import bz2
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script
from PIL import Image

gs = load_script("gather_sources")


def test_every_pick_has_a_pinned_package_a_licence_and_its_own_destination() -> None:
    destinations: set[str] = set()
    for pkg in gs.PACKAGES:
        assert pkg.origin in ("pypi", "debian")
        assert pkg.version and not any(c in pkg.version for c in "<>=*~ "), pkg
        for pick in pkg.picks:
            assert pick.licence.strip(), pick
            assert pick.kind in ("photo", "video"), pick
            assert not pick.decode or pick.decode in gs.DECODERS, pick
            dest = f"{pkg.name}/{gs.flat_name(pick)}"
            assert dest not in destinations, f"two picks would both write {dest}"
            destinations.add(dest)
            # synth reads only these formats: anything else would be skipped without a word
            assert Path(dest).suffix.lower() in (".png", ".jpg", ".jpeg", ".mp4", ".avi"), dest


def test_flat_name() -> None:
    plasma = gs.Pick("usr/share/wallpapers/Kite/contents/images/2560x1600.jpg", "GPL-2+")
    assert gs.flat_name(plasma) == "Kite.jpg"
    assert gs.flat_name(gs.Pick("a/b/face.dat", "PD", decode="scipy-face")) == "face.png"
    assert gs.flat_name(gs.Pick("a/b/photo.JPG", "PD")) == "photo.JPG"


def test_scipy_face_decoder_keeps_every_pixel(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    src = tmp_path / "face.dat"
    src.write_bytes(bz2.compress(rgb.tobytes()))
    gs.decode_scipy_face(src, tmp_path / "face.png")
    with Image.open(tmp_path / "face.png") as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert np.array_equal(np.asarray(im), rgb)


def test_scipy_face_decoder_refuses_a_dump_of_the_wrong_size(tmp_path: Path) -> None:
    src = tmp_path / "face.dat"
    src.write_bytes(bz2.compress(b"\0" * (768 * 1024 * 3 - 3)))
    with pytest.raises(ValueError, match="expected"):
        gs.decode_scipy_face(src, tmp_path / "face.png")
    assert not (tmp_path / "face.png").exists()


def test_png_decoder_is_lossless(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "parrot.ppm")
    gs.decode_png(tmp_path / "parrot.ppm", tmp_path / "parrot.tmp")  # the name gather writes first
    with Image.open(tmp_path / "parrot.tmp") as im:
        assert im.format == "PNG"
        assert np.array_equal(np.asarray(im), rgb)


def test_markdown_counts_and_tells_the_download_only_when_measured(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.deb").write_bytes(b"x" * 2_000_000)
    (tmp_path / "pkg" / "b.whl").write_bytes(b"x" * 1_000_000)
    (tmp_path / "pkg" / "x").mkdir()
    (tmp_path / "pkg" / "x" / "unpacked.jpg").write_bytes(b"x" * 5_000_000)  # unpacked, not downloaded
    assert gs.downloaded_bytes(tmp_path) == 3_000_000
    row = {
        "file": "f/a.jpg",
        "kind": "photo",
        "origin": "debian",
        "package": "f",
        "version": "1",
        "path_in_package": "a.jpg",
        "licence": "CC0",
        "note": "",
        "sha256": "0" * 64,
    }
    video = {**row, "file": "f/v.mp4", "kind": "video"}
    md = gs.markdown([row, row, video], 3_000_000, 12.4)
    assert "3 files (2 photographs, 1 real video clips)" in md
    assert "downloaded 3 MB and took 12 s" in md
    assert "downloaded" not in gs.markdown([row])
