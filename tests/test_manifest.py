"""The folder manifest notices an output changed after it was recorded (overwritten with garbage, truncated,
replaced): such an output is made again on a rerun instead of being skipped as done. Manifests of earlier
versions (no output size or time) still resume, checking what they can (not empty, the format's first
bytes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
from conftest import make_image, run_cli, save_image

from deblurtool.pipeline.manifest import MANIFEST_NAME, Manifest

ENGINE = ("--device", "cpu", "--engine", "torch", "--precision", "fp32", "--no-progress")


def _folder(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "in", tmp_path / "out"
    for i, name in enumerate(["a.png", "b.jpg", "sub/c.png"]):
        save_image(src / name, make_image("u8_rgb", seed=i))
    code, output = run_cli("folder", src, dst, *ENGINE)
    assert code == 0 and "3 done" in output, output
    return src, dst


def _rerun(src: Path, dst: Path) -> str:
    code, output = run_cli("folder", src, dst, *ENGINE)
    assert code == 0, output
    return output


def test_an_output_overwritten_after_it_was_recorded_is_made_again(
    tmp_path: Path, tiny_default: Path
) -> None:
    src, dst = _folder(tmp_path)
    assert "0 done" in _rerun(src, dst)
    (dst / "a.png").write_bytes(b"garbage")
    output = _rerun(src, dst)
    assert "1 done" in output and "2 skipped" in output, output
    assert np.array_equal(cv2.imread(str(dst / "a.png"), cv2.IMREAD_UNCHANGED), make_image("u8_rgb", seed=0))
    assert "0 done" in _rerun(src, dst)  # recorded again, as now written


def test_same_size_garbage_with_a_new_time_is_noticed(tmp_path: Path, tiny_default: Path) -> None:
    src, dst = _folder(tmp_path)
    out = dst / "sub" / "c.png"
    size, mtime = out.stat().st_size, out.stat().st_mtime_ns
    out.write_bytes(b"\0" * size)
    os.utime(out, ns=(mtime + 1_000_000_000, mtime + 1_000_000_000))
    output = _rerun(src, dst)
    assert "1 done" in output, output
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_a_manifest_of_an_earlier_version_still_resumes_and_checks_what_it_can(
    tmp_path: Path, tiny_default: Path
) -> None:
    src, dst = _folder(tmp_path)
    manifest = dst / MANIFEST_NAME
    old_lines = []
    for line in manifest.read_text().splitlines():
        rec = json.loads(line)
        assert {"out_size", "out_mtime_ns"} <= rec.keys()
        old_lines.append(json.dumps({k: rec[k] for k in ("path", "size", "mtime_ns", "signature")}))
    manifest.write_text("\n".join(old_lines) + "\n")
    assert "0 done" in _rerun(src, dst)  # whole outputs: still skipped
    manifest.write_text("\n".join(old_lines) + "\n")
    (dst / "b.jpg").write_bytes(b"garbage")  # not a JPEG any more
    (dst / "a.png").write_bytes(b"")  # empty
    output = _rerun(src, dst)
    assert "2 done" in output and "1 skipped" in output, output


def test_manifest_records_the_output_and_rejects_a_changed_one(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.mp4", tmp_path / "out"
    dst.mkdir()
    src.write_bytes(b"input")
    out = dst / "v.mp4"
    out.write_bytes(b"\0\0\0\x18ftypisom" + b"x" * 100)
    st = src.stat()
    m = Manifest(dst)
    m.add(Path("v.mp4"), st, "sig")
    again = Manifest(dst)  # read back from the file
    assert again.skip(Path("v.mp4"), st, "sig", out, overwrite=False) == "skipped_done"
    assert again.skip(Path("v.mp4"), st, "other", out, overwrite=False) is None
    with out.open("r+b") as f:  # truncated in place
        f.truncate(50)
    assert Manifest(dst).skip(Path("v.mp4"), st, "sig", out, overwrite=False) is None
    # An output missing when recorded is never taken as done.
    m.add(Path("w.mp4"), st, "sig")
    (dst / "w.mp4").write_bytes(b"\0\0\0\x18ftypisom")
    assert Manifest(dst).skip(Path("w.mp4"), st, "sig", dst / "w.mp4", overwrite=False) is None
