"""``folder`` when things go wrong: nothing is skipped silently (unreadable folders and files, pages of a
multi-page TIFF), an unwritable output is found before the model runs and every message names its file, and
two jobs never write into one output folder."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import IdentityModel, SlowModel, make_image, run_cli, save_image
from typer.testing import CliRunner

from deblurtool.errors import OutputError
from deblurtool.media import read_image
from deblurtool.pipeline import MANIFEST_NAME, run_folder

runner = CliRunner()
OrdinaryUser = Callable[[], AbstractContextManager[None]]


@pytest.fixture(autouse=True)
def _tiny_model(tiny_default: Path) -> None:
    """Commands load the tiny identity generator as their default weights."""


_cli = run_cli


# -- nothing skipped silently ------------------------------------------------------------------------


def test_unreadable_subfolder_and_file_are_failures(tmp_path: Path, ordinary_user: OrdinaryUser) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    save_image(src / "a.png", make_image("u8_rgb"))
    save_image(src / "locked" / "b.png", make_image("u8_rgb", seed=1))
    save_image(src / "secret.png", make_image("u8_rgb", seed=2))
    os.chmod(src / "locked", 0)
    os.chmod(src / "secret.png", 0)
    try:
        with ordinary_user():
            code, output = _cli("folder", src, dst, "--no-progress")
    finally:
        os.chmod(src / "locked", 0o755)
        os.chmod(src / "secret.png", 0o644)
    assert code == 1, output
    assert f"failed: {src / 'locked'}: cannot list this folder (Permission denied)" in output
    assert f"failed: {src / 'secret.png'}: cannot read (Permission denied)" in output
    assert "1 done, 0 skipped, 2 failed" in output
    assert "error:" in output and "2 of 3" in output


def _write_pages(path: Path, pages: list[np.ndarray]) -> None:
    ok, buf = cv2.imencodemulti(".tiff", pages)
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())


def test_multi_page_tiff_keeps_every_page(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    pages = [make_image("u8_rgb", seed=i, height=12 + i, width=16) for i in range(3)]
    _write_pages(src / "scan.tif", pages)
    model = IdentityModel()
    summary = run_folder(src, dst, model, progress=False)
    assert summary.done == 1 and summary.failed == [] and model.calls == 3
    ok, out_pages = cv2.imdecodemulti(np.fromfile(dst / "scan.tif", np.uint8), cv2.IMREAD_UNCHANGED)
    assert ok and len(out_pages) == 3
    for got, want in zip(out_pages, pages, strict=True):
        np.testing.assert_array_equal(got, want)
    assert len(read_image(src / "scan.tif").pages) == 3


# -- an unwritable output is found before the model runs; messages name their file -------------------


def test_read_only_output_folder_is_refused_before_the_model_runs(
    tmp_path: Path, ordinary_user: OrdinaryUser
) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        save_image(src / f"{i}.png", make_image("u8_rgb", seed=i))
    dst.mkdir()
    os.chmod(dst, 0o555)
    model = IdentityModel()
    try:
        with ordinary_user(), pytest.raises(OutputError, match="cannot write in this folder") as info:
            run_folder(src, dst, model, progress=False)
    finally:
        os.chmod(dst, 0o755)
    assert str(info.value).startswith(f"{dst}: ") and "Permission denied" in str(info.value)
    assert model.calls == 0 and list(dst.iterdir()) == []


def test_write_failures_name_the_output_and_say_why(tmp_path: Path, ordinary_user: OrdinaryUser) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    save_image(src / "sub" / "a.png", make_image("u8_rgb"))
    save_image(src / "sub" / "deeper" / "b.png", make_image("u8_rgb", seed=1))
    (dst / "sub").mkdir(parents=True)
    os.chmod(dst / "sub", 0o555)
    try:
        with ordinary_user():
            summary = run_folder(src, dst, IdentityModel(), progress=False)
    finally:
        os.chmod(dst / "sub", 0o755)
    reasons = dict(summary.failed)
    assert (
        reasons[src / "sub" / "a.png"] == f"output {dst / 'sub' / 'a.png'}: cannot write (Permission denied)"
    )
    deeper = reasons[src / "sub" / "deeper" / "b.png"]
    assert deeper.startswith(f"output {dst / 'sub' / 'deeper' / 'b.png'}: cannot create the folder")
    assert (
        deeper.endswith("(Permission denied)") and "Errno" not in deeper and "PermissionError" not in deeper
    )


# -- one job per output folder -----------------------------------------------------------------------


def test_second_folder_job_into_the_same_output_is_refused(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    for i in range(4):
        save_image(src / f"{i}.png", make_image("u8_rgb", seed=i))
    started = threading.Event()
    first = threading.Thread(
        target=lambda: run_folder(src, dst, SlowModel(started, 0.3), progress=False, signature="A")
    )
    first.start()
    try:
        assert started.wait(30)
        second = IdentityModel()
        with pytest.raises(OutputError, match=rf"another deblurtool job \(pid {os.getpid()}\) is writing"):
            run_folder(src, dst, second, progress=False, signature="A")
        assert second.calls == 0
    finally:
        first.join()
    lines = (dst / MANIFEST_NAME).read_text().splitlines()
    assert len(lines) == 4 and not (dst / ".deblurtool.lock").exists()
    # A lock file left by a job that is gone (no process holds its lock) is stale: the next run goes ahead.
    (dst / ".deblurtool.lock").write_text("999999999 somehost\n")
    assert run_folder(src, dst, IdentityModel(), progress=False, signature="A").skipped_done == 4
