"""Packaging: one version, every package and imported dependency declared, and a built wheel that deblurs out
of the box (its default weights and model card inside it, found with importlib.resources)."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import make_image, save_image

import deblurtool
from deblurtool.models import weights as W

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SOURCES = ("deblurtool", "trainers")


def test_every_package_is_listed() -> None:
    found = {
        ".".join(p.parent.relative_to(REPO).parts)
        for top in SOURCES
        for p in (REPO / top).rglob("__init__.py")
    }
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == found | {"deblurtool.weights"}
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"deblurtool.weights": "weights"}


def test_one_version() -> None:
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert importlib.metadata.version("deblurtool") == deblurtool.__version__


def _imported_top_modules() -> set[str]:
    names: set[str] = set()
    for top in SOURCES:
        for path in (REPO / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - set(SOURCES)


def test_every_imported_distribution_is_declared() -> None:
    declared = {
        dep.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower()
        for dep in [
            *PYPROJECT["project"]["dependencies"],
            *PYPROJECT["project"]["optional-dependencies"]["ray"],
            *PYPROJECT["project"]["optional-dependencies"]["bench-engines"],
        ]
    }  # (extras: ray imported only with --ray, onnxruntime only by bench)
    owners = importlib.metadata.packages_distributions()
    imported = _imported_top_modules()
    assert {"cv2", "PIL", "torch", "av"} <= imported
    # A module of an extra that is not installed here has no owner: its own name must then be declared.
    missing = {m: owners.get(m) for m in imported if not {d.lower() for d in owners.get(m, [m])} & declared}
    assert missing == {}


def test_calibration_crops_are_package_data_and_small() -> None:
    """The int8 calibration set: 8 real blurry 256x256 crops, none of them a check pair's frame, < 2 MB."""
    from deblurtool.engines.openvino_runner import calibration_batches, calibration_files

    files = calibration_files()
    assert len(files) == 8 and sum(f.stat().st_size for f in files) < 2_000_000
    assert all(b.shape == (1, 3, 256, 256) and b.min() >= -1 and b.max() <= 1 for b in calibration_batches())
    assert not any("000001" in f.name or "sharp" in f.name for f in files)


def test_shipped_weights_are_package_data() -> None:
    import importlib.resources

    card = importlib.resources.files("deblurtool.weights").joinpath(W.CARD_NAME)
    assert Path(str(card)) == W.card_path() and W.card_path().is_file()
    assert (W.weights_dir() / W.DEFAULT_WEIGHTS_NAME).is_file()


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_deblurs(tmp_path: Path) -> None:
    """``pip wheel .`` then ``pip install`` of that wheel (not editable) into a new venv, which borrows this
    environment's dependencies (torch is large) through a .pth file: ``deblurtool folder`` works there with
    the default model, from a folder far from the repository."""
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(REPO)], check=True
    )
    (wheel,) = dist.glob("deblurtool-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"deblurtool-{deblurtool.__version__}.dist-info/METADATA").decode()
    assert {f"deblurtool/weights/{W.DEFAULT_WEIGHTS_NAME}", "deblurtool/weights/README.md"} <= names
    crops = {n for n in names if n.startswith("deblurtool/engines/calibration/") and n.endswith(".png")}
    assert len(crops) == 8 and "deblurtool/engines/calibration/README.md" in names
    assert f"deblurtool-{deblurtool.__version__}.dist-info/licenses/LICENSE" in names
    assert "Requires-Dist: pillow" in metadata and "License-Expression: MIT" in metadata

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", str(wheel)], check=True
    )
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "elsewhere"
    save_image(work / "in" / "photo.png", make_image("u8_rgb", height=40, width=56))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", W.ENV_WEIGHTS)}
    result = subprocess.run(
        [str(venv / "bin" / "deblurtool"), "folder", "in", "out", "--device", "cpu", "--no-progress"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = Path(purelib, "deblurtool", "weights", W.DEFAULT_WEIGHTS_NAME)
    assert f"weights {shipped}" in result.stderr and "1 done, 0 skipped, 0 failed" in result.stdout
    assert (work / "out" / "photo.png").is_file()


def test_public_api_names() -> None:
    from deblurtool import Deblurrer, pipeline, run_folder, run_video
    from deblurtool.inference import Deblurrer as D

    assert Deblurrer is D and run_video is pipeline.run_video and run_folder is pipeline.run_folder
    with pytest.raises(AttributeError):
        deblurtool.nope  # noqa: B018


def test_public_api_takes_str_paths_and_exports_its_settings(tmp_path: Path, tiny_weights: Path) -> None:
    from conftest import IdentityModel, make_video

    from deblurtool import (
        Deblurrer,
        EncodeConfig,
        ModelSpec,
        RuntimeConfig,
        TileConfig,
        run_folder,
        run_video,
    )

    assert {"EncodeConfig", "ModelSpec", "RuntimeConfig", "TileConfig"} <= set(deblurtool.__all__)
    clip = make_video(tmp_path / "in.mp4", frames=2, audio=False).path
    summary = run_video(str(clip), str(tmp_path / "out.mkv"), IdentityModel(), EncodeConfig(codec="ffv1"))
    assert summary.frames == 2 and (tmp_path / "out.mkv").is_file()
    save_image(tmp_path / "pics" / "a.png", make_image("u8_rgb"))
    assert run_folder(str(tmp_path / "pics"), str(tmp_path / "sharp"), IdentityModel()).done == 1
    model = Deblurrer.from_weights(str(tiny_weights), TileConfig(), RuntimeConfig(device="cpu"))
    assert model.weights_path == tiny_weights and ModelSpec().strength == 1.0
