"""Any name the file system accepts works: 255-byte file names (the usual limit) through `deblurtool folder`
(images, resumed on a rerun) and `deblurtool video`, with a tiny real model. The temporary and lock files
beside such outputs would pass the limit if they repeated the whole name (see ``fsutil``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import decode_video, make_image, make_video, run_cli, save_image

from deblurtool.fsutil import name_max

ENGINE = ("--device", "cpu", "--engine", "torch", "--precision", "fp32", "--no-progress")


def _long(stem_char: str, suffix: str, size: int = 255) -> str:
    """A name of exactly ``size`` bytes: ``stem_char`` repeated (padded with ``_``), then ``suffix``."""
    room = size - len(suffix.encode())
    stem = stem_char * (room // len(stem_char.encode()))
    name = stem + "_" * (room - len(stem.encode())) + suffix
    assert len(os.fsencode(name)) == size
    return name


@pytest.fixture(autouse=True)
def _room_for_long_names(tmp_path: Path) -> None:
    if name_max(tmp_path) < 255:
        pytest.skip("this file system takes names shorter than 255 bytes")


def test_folder_takes_255_byte_image_names_and_resumes(tmp_path: Path, tiny_default: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    names = [_long("p", ".png"), _long("é", ".jpg"), _long("q", ".png", 241)]
    for i, name in enumerate(names):
        save_image(src / name, make_image("u8_rgb", seed=i))
    code, output = run_cli("folder", src, dst, *ENGINE)
    assert code == 0, output
    assert "3 done" in output and "0 failed" in output, output
    assert sorted(p.name for p in dst.iterdir() if not p.name.startswith(".")) == sorted(names)
    # Nothing else is left beside them but the manifest (no temporary or lock file).
    assert [p.name for p in dst.iterdir() if p.name.startswith(".")] == [".deblurtool-done.jsonl"]
    png = dst / names[0]
    import cv2

    assert np.array_equal(cv2.imread(str(png), cv2.IMREAD_UNCHANGED), make_image("u8_rgb", seed=0))
    code, output = run_cli("folder", src, dst, *ENGINE)
    assert code == 0 and "0 done" in output and "3 skipped" in output, output


def test_video_takes_255_byte_names(tmp_path: Path, tiny_default: Path) -> None:
    src = make_video(tmp_path / _long("i", ".mp4"), frames=4).path
    out = tmp_path / _long("o", ".mp4")
    code, output = run_cli("video", src, out, *ENGINE)
    assert code == 0, output
    assert len(decode_video(out)[1]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, out.name])
