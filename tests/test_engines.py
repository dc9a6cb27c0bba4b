"""The CPU engines: OpenVINO fp32/bf16/int8 against PyTorch fp32 on a tiny real generator (whole frames and
tiles, odd sizes, uint16), the compiled-model cache (reuse, corruption), the fall-backs and one-line errors
when an engine is missing, and the engine and precision in the signature and the Ray worker spec.

Tolerances, in PSNR against PyTorch fp32's uint8 output (the numbers a user sees): fp32 engines differ only
in summation order, so at most one 8-bit level anywhere (rounding at a .5 boundary); bf16 keeps 8 mantissa
bits, measured 57 dB here, required 45 (one level of noise is 48 dB); int8 quantises weights and activations
to 256 steps (of ranges calibrated on real GoPro crops, not on these random nets): measured 45 dB, required
38 dB. A broken conversion (wrong layout, padding, upsampling) scores below 20 dB and fails all of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, random_generator
from typer.testing import CliRunner

from deblurtool.config import EncodeConfig, RuntimeConfig, TileConfig
from deblurtool.engines import cache as cache_mod
from deblurtool.engines import openvino_runner
from deblurtool.errors import DeblurError
from deblurtool.inference import Deblurrer
from deblurtool.metrics import psnr

MIN_PSNR = {"fp32": 60.0, "bf16": 45.0, "int8": 38.0}
ODD_TILES = TileConfig(tile_size=32, tile_overlap=8, batch_size=2)


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return random_generator(TINY, seed=3)


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(cache_mod.ENV_CACHE, str(folder))
    return folder


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts models converted from PyTorch (the hook every OpenVINO model is built through)."""
    calls: list[int] = []
    real = openvino_runner.convert

    def counting(body: torch.nn.Module) -> object:
        calls.append(1)
        return real(body)

    monkeypatch.setattr(openvino_runner, "convert", counting)
    return calls


def _image(height: int, width: int, dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 65535
    yy, xx = np.mgrid[0:height, 0:width]
    smooth = np.stack([xx / width, yy / height, 0.5 + 0.4 * np.sin((xx + yy) / 7)], axis=2)
    return np.clip(top * (0.8 * smooth + 0.2 * rng.random((height, width, 3))), 0, top).astype(dtype)


def _run(
    net: torch.nn.Module, engine: str, precision: str, img: np.ndarray, tile: TileConfig | None
) -> tuple:
    d = Deblurrer.from_model(net, tile, RuntimeConfig("cpu", precision, engine))
    return d(img), d


@pytest.mark.parametrize("precision", ["fp32", "bf16", pytest.param("int8", marks=pytest.mark.slow)])
def test_openvino_agrees_with_pytorch_fp32_whole_and_tiled_on_odd_sizes(
    net: torch.nn.Module, precision: str
) -> None:
    if precision == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("no bf16 on this CPU")
    if precision == "int8":
        pytest.importorskip("nncf", reason='int8 needs NNCF: pip install "nncf>=2.16"')
    for img, tile in ((_image(37, 53), None), (_image(45, 70, seed=1), ODD_TILES), (_image(5, 3), None)):
        want, _ = _run(net, "torch", "fp32", img, tile)
        got, d = _run(net, "openvino", precision, img, tile)
        assert d.engine == "openvino" and d.precision == precision
        assert got.shape == img.shape and got.dtype == np.uint8
        assert psnr(got, want) >= MIN_PSNR[precision], (img.shape, tile, psnr(got, want))
        if precision == "fp32":
            assert np.abs(got.astype(int) - want).max() <= 1


def test_uint16_input_keeps_its_depth_and_matches(net: torch.nn.Module) -> None:
    img = _image(30, 41, np.uint16)
    want, _ = _run(net, "torch", "fp32", img, None)
    got, _ = _run(net, "openvino", "fp32", img, ODD_TILES)
    want_tiled, _ = _run(net, "torch", "fp32", img, ODD_TILES)
    assert got.dtype == np.uint16 and got.shape == img.shape
    assert np.abs(got.astype(int) - want_tiled).max() <= 4  # of 65535: float32 summation order
    assert psnr(got, want, data_range=65535.0) > 40  # tiles against the whole frame: feathered seams


def test_residual_and_clamp_stay_in_fp32(net: torch.nn.Module) -> None:
    """The engine runs only the body: with a zero body the input comes back bit for bit, also 16-bit."""
    zero = random_generator(TINY, seed=3)
    torch.nn.init.zeros_(zero.head.weight)
    torch.nn.init.zeros_(zero.head.bias)
    img = _image(19, 23, np.uint16)
    got, _ = _run(zero, "openvino", "bf16", img, None)
    assert np.array_equal(got, img)


def test_second_deblurrer_reuses_the_cache(
    net: torch.nn.Module, own_cache: Path, conversions: list[int]
) -> None:
    img = _image(24, 40)
    first, d1 = _run(net, "openvino", "fp32", img, None)
    assert len(conversions) == 1 and d1.runner is not None and d1.runner.compilations >= 1  # type: ignore[attr-defined]
    second, d2 = _run(net, "openvino", "fp32", img, None)
    assert len(conversions) == 1 and d2.runner.compilations == 0  # type: ignore[attr-defined]
    assert np.array_equal(first, second)
    names = sorted(p.name.split("-")[0] for p in own_cache.iterdir())
    assert names.count("model") == 1 and names.count("compiled") == 2  # the check's crop and the frame
    assert any("model built from the weights" in n for n in d1.notes) and d2.notes == []
    # Another precision or weights is another entry, never this one.
    _run(net, "openvino", "bf16", img, None)
    _run(random_generator(TINY, seed=4), "openvino", "fp32", img, None)
    assert len(conversions) == 3


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_corrupt_cache_entry_is_rebuilt_and_warned_about(
    net: torch.nn.Module, own_cache: Path, conversions: list[int], damage: str
) -> None:
    img = _image(24, 40)
    want, _ = _run(net, "openvino", "fp32", img, None)
    for entry in own_cache.glob("*.dbc"):
        data = bytearray(entry.read_bytes())
        if damage == "flip":
            data[len(data) // 2] ^= 0xFF
        elif damage == "truncate":
            data = data[: len(data) // 3]
        else:
            data = bytearray(b"not a cache file")
        entry.write_bytes(bytes(data))
    got, d = _run(net, "openvino", "fp32", img, None)
    assert np.array_equal(got, want) and len(conversions) == 2
    warnings = [n for n in d.notes if "corrupt" in n and "rebuilding" in n]
    assert any("model built from the weights" in n for n in d.notes)
    assert len(warnings) == 3, d.notes  # the model and both compiled shapes
    again, d3 = _run(net, "openvino", "fp32", img, None)  # rebuilt entries are trusted again
    assert np.array_equal(again, want) and len(conversions) == 2 and d3.notes == []


def test_entries_are_written_whole_under_their_key(own_cache: Path) -> None:
    key = {"weights": "abc", "shape": [1, 3, 8, 8]}
    path = cache_mod.entry_path("compiled", key)
    warned: list[str] = []
    cache_mod.write_entry(path, key, {"blob": b"x" * 1000, "meta": b"{}"}, warned.append)
    assert cache_mod.read_entry(path, key, warned.append) == {"blob": b"x" * 1000, "meta": b"{}"}
    assert sorted(p.name for p in own_cache.iterdir()) == [cache_mod.MARKER, path.name]  # no temporary left
    assert warned == []
    assert cache_mod.read_entry(path, {**key, "shape": [1, 3, 8, 9]}, warned.append) is None
    assert "another key" in warned[0] and not path.exists()


def test_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(cache_mod.ENV_CACHE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_mod.cache_dir() == tmp_path / "xdg" / "deblurtool"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_mod.cache_dir() == tmp_path / ".cache" / "deblurtool"


def test_cache_command_shows_and_clears(own_cache: Path, net: torch.nn.Module) -> None:
    from deblurtool.cli import app

    _run(net, "openvino", "fp32", _image(8, 8), None)
    shown = CliRunner().invoke(app, ["cache"])
    assert shown.exit_code == 0 and str(own_cache) in shown.output and "3 entries" in shown.output
    cleared = CliRunner().invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 3 entries" in cleared.output
    assert [p.name for p in own_cache.iterdir()] == [cache_mod.MARKER]  # the folder and its marker stay
    assert CliRunner().invoke(app, ["cache", "nope"]).exit_code == 2


# -- missing engines, failing checks -------------------------------------------------------------------------


def test_auto_falls_back_to_pytorch_with_a_note_without_openvino(
    net: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now fails as if not installed
    d = Deblurrer.from_model(net, None, RuntimeConfig("cpu", "fp32", "auto"))
    assert d.engine == "torch" and d.precision == "fp32"
    assert any("OpenVINO is not installed" in n for n in d.notes)
    for precision, engine in (("auto", "openvino"), ("int8", "auto")):
        with pytest.raises(DeblurError, match="needs OpenVINO, which is not installed"):
            Deblurrer.from_model(net, None, RuntimeConfig("cpu", precision, engine))


def test_cli_engine_openvino_without_it_is_one_line_exit_2(
    tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import make_video

    from deblurtool.cli import app

    monkeypatch.setitem(sys.modules, "openvino", None)
    src = make_video(tmp_path / "in.mp4", frames=2).path
    args = ["video", str(src), str(tmp_path / "out.mp4"), "--weights", str(tiny_weights), "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--engine", "openvino"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: --engine openvino needs OpenVINO, which is not installed")
    result = CliRunner().invoke(app, [*args, "--no-progress"])  # auto: PyTorch, with a note
    assert result.exit_code == 0, result.output
    assert "engine torch" in result.output and "note: OpenVINO is not installed" in result.output


def test_int8_without_nncf_is_one_line(tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deblurtool.cli import app

    monkeypatch.setitem(sys.modules, "nncf", None)
    result = CliRunner().invoke(
        app, ["bench", "--weights", str(tiny_weights), "--device", "cpu", "--precision", "int8"]
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        'error: --precision int8 needs NNCF, which is not installed: pip install "nncf>=2.16" '
        "(a dependency of deblurtool, used once per model to quantise it)"
    )


# -- precision auto on OpenVINO: int8 where it keeps quality -------------------------------------------------


@pytest.mark.slow
def test_auto_precision_runs_int8_where_it_passes_and_measures_it_once(
    net: torch.nn.Module, own_cache: Path, conversions: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from deblurtool.engines import select

    monkeypatch.setattr(select, "INT8_MIN_PSNR", 20.0)  # this random net is not the shipped model
    monkeypatch.setattr(select, "INT8_MIN_CORRECTION_DB", -1000.0)
    img = _image(24, 40)
    auto, d1 = _run(net, "auto", "auto", img, None)
    assert (d1.engine, d1.precision) == ("openvino", "int8")
    quality = d1.runner.quality_db  # type: ignore[attr-defined]
    assert quality is not None and 20.0 <= quality < 100.0
    assert any(n.startswith(f"precision auto chose int8 (OpenVINO): {quality:.1f} dB") for n in d1.notes)
    assert d1.signature_fields()["precision"] == "int8"
    named, _ = _run(net, "openvino", "int8", img, None)
    assert np.array_equal(auto, named)  # the same model as --precision int8
    fp32, _ = _run(net, "torch", "fp32", img, None)
    assert psnr(auto, fp32) >= MIN_PSNR["int8"]
    # Quantised and measured once: a second run reads both from the cache and says the same.
    _, d2 = _run(net, "auto", "auto", img, None)
    assert len(conversions) == 1 and d2.runner.quality_db == quality  # type: ignore[attr-defined]
    kept = d1.runner.correction_db  # type: ignore[attr-defined]
    assert kept is not None and d2.runner.correction_db == kept  # type: ignore[attr-defined]
    assert [n for n in d2.notes if "chose int8" in n] == [n for n in d1.notes if "chose int8" in n]


@pytest.mark.slow
def test_int8_that_loses_the_correction_gives_way_to_the_float_model(
    net: torch.nn.Module, own_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deblurtool.engines import select

    monkeypatch.setattr(select, "INT8_MIN_PSNR", 20.0)  # passes the noise bar...
    monkeypatch.setattr(
        select, "INT8_MIN_CORRECTION_DB", 1000.0
    )  # ...but no int8 keeps the correction so well
    _, d = _run(net, "auto", "auto", _image(24, 40), None)
    assert d.engine == "openvino" and d.precision in ("fp32", "bf16")
    assert any(n.startswith("int8 not used (it keeps the fp32 model's correction to ") for n in d.notes), (
        d.notes
    )


def test_int8_check_measures_the_share_of_the_correction_kept() -> None:
    from deblurtool.engines.openvino_runner import calibration_batches, int8_check

    class Shift(torch.nn.Module):  # a residual of constant 0.1: the correction's energy is 0.01 per value
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full_like(x, 0.1)

    def exact(b: np.ndarray) -> np.ndarray:
        return np.asarray(Shift()(torch.from_numpy(b)))

    def half(b: np.ndarray) -> np.ndarray:  # keeps half the correction
        return np.full_like(b, 0.05)

    assert int8_check(Shift(), exact)[1] == float("inf")
    crops = torch.from_numpy(np.concatenate(calibration_batches()))
    want = torch.clamp(crops + 0.1, -1, 1) - crops
    got = torch.clamp(crops + 0.05, -1, 1) - crops
    expect = 10 * np.log10(float((want.double() ** 2).sum()) / float(((want - got).double() ** 2).sum()))
    quality, kept = int8_check(Shift(), half)
    assert kept == pytest.approx(expect, abs=1e-6) and 5.0 < kept < 6.5  # about 10 log10(4)
    assert quality < 40.0


@pytest.mark.slow
def test_int8_below_the_bar_gives_way_to_the_float_model_unless_named(
    net: torch.nn.Module, own_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deblurtool.engines import select

    monkeypatch.setattr(select, "INT8_MIN_PSNR", 1000.0)  # no int8 model can pass now
    img = _image(24, 40)
    out, d = _run(net, "auto", "auto", img, None)
    assert d.engine == "openvino" and d.precision in ("fp32", "bf16") and d.runner is not None
    assert any(n.startswith("int8 not used (") and "below the 1000 dB required" in n for n in d.notes)
    same, _ = _run(net, "openvino", d.precision, img, None)
    assert np.array_equal(out, same)
    _, named = _run(net, "openvino", "int8", img, None)  # asked for by name: runs, with a warning
    assert named.precision == "int8" and any(n.startswith("warning: int8 deblurs") for n in named.notes)


def test_auto_precision_without_nncf_runs_the_float_model_with_a_note(
    net: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "nncf", None)
    d = Deblurrer.from_model(net, None, RuntimeConfig("cpu", "auto", "auto"))
    assert d.engine == "openvino" and d.precision in ("fp32", "bf16")
    assert any(n.startswith("NNCF is not installed, so precision auto runs OpenVINO") for n in d.notes)


def test_int8_is_only_ever_picked_by_auto_for_the_openvino_cpu_path() -> None:
    from deblurtool.engines.select import choose_engine

    cpu = torch.device("cpu")
    assert choose_engine("auto", "auto", cpu).int8_by_auto
    assert not choose_engine("openvino", "int8", cpu).int8_by_auto  # named: no fall-back
    for engine, precision in (("torch", "auto"), ("auto", "fp32"), ("auto", "bf16"), ("openvino", "fp32")):
        choice = choose_engine(engine, precision, cpu)
        assert choice.precision != "int8" and not choice.int8_by_auto


def test_an_engine_failing_its_check_is_never_used(
    net: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deblurtool.engines import select

    monkeypatch.setattr(select, "ENGINE_CHECK_MIN_PSNR", 1000.0)  # no engine can pass now
    d = Deblurrer.from_model(net, None, RuntimeConfig("cpu", "fp32", "auto"))
    assert d.engine == "torch" and any("could not be used" in n and "below" in n for n in d.notes)
    assert np.array_equal(d(_image(9, 9)), _run(net, "torch", "fp32", _image(9, 9), None)[0])
    with pytest.raises(DeblurError, match="--engine openvino, precision fp32: its output is"):
        Deblurrer.from_model(net, None, RuntimeConfig("cpu", "fp32", "openvino"))


def test_bad_combinations_are_refused_before_loading() -> None:
    with pytest.raises(DeblurError, match="int8 runs on OpenVINO"):
        RuntimeConfig("cpu", "int8", "torch")
    with pytest.raises(DeblurError, match="run on the CPU"):
        RuntimeConfig("cuda", "int8", "auto")
    with pytest.raises(DeblurError, match="run on the CPU"):
        RuntimeConfig("cuda:1", "auto", "openvino")
    with pytest.raises(DeblurError, match="--engine must be one of auto, torch, openvino"):
        RuntimeConfig("cpu", "auto", "tensorrt")


# -- identity: signature, Ray -------------------------------------------------------------------------------


def test_signature_changes_with_engine_and_precision(net: torch.nn.Module) -> None:
    def sig(engine: str, precision: str) -> str:
        return Deblurrer.from_model(net, None, RuntimeConfig("cpu", precision, engine)).signature

    base = sig("torch", "fp32")
    assert base == sig("torch", "fp32") and "engine=torch" in base
    others = {sig("openvino", "fp32"), sig("openvino", "bf16"), sig("torch", "bf16")}
    assert base not in others and len(others) == 3
    assert "engine=openvino" in sig("openvino", "fp32") and "precision=bf16" in sig("openvino", "bf16")


def test_ray_worker_spec_carries_engine_and_precision(tiny_weights: Path) -> None:
    from deblurtool.commands.common import model_spec
    from deblurtool.scale.worker import UnitWorker, WorkerSpec

    def ready(engine: str) -> dict[str, object]:
        spec = model_spec(weights=tiny_weights, device="cpu", precision="fp32", engine=engine)
        assert (spec.runtime.engine, spec.runtime.precision) == (engine, "fp32")
        return UnitWorker(WorkerSpec(spec, EncodeConfig(), marker=tiny_weights), 0).ready()

    shown = ready("openvino")
    assert shown["error"] is None
    assert "engine=openvino" in str(shown["signature"]) and "engine openvino" in str(shown["description"])
    assert "engine=torch" in str(ready("torch")["signature"])


# -- every registered architecture, every engine ------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "bf16", pytest.param("int8", marks=pytest.mark.slow)])
def test_nafunet_on_openvino_agrees_with_pytorch_fp32(precision: str, own_cache: Path) -> None:
    """The U-Net (its own padding, LayerNorm, pixel shuffle, global pooling) converts and runs in every
    OpenVINO precision, whole frames of odd sizes and tiles, and passes the engine check."""
    from test_registry import tiny_nafunet

    if precision == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("no bf16 on this CPU")
    if precision == "int8":
        pytest.importorskip("nncf", reason='int8 needs NNCF: pip install "nncf>=2.16"')
    naf = tiny_nafunet(seed=6)
    for img, tile in ((_image(37, 53), None), (_image(45, 70, seed=1), ODD_TILES), (_image(5, 3), None)):
        want, _ = _run(naf, "torch", "fp32", img, tile)
        got, d = _run(naf, "openvino", precision, img, tile)
        assert d.engine == "openvino" and d.precision == precision
        assert psnr(got, want) >= MIN_PSNR[precision], (img.shape, tile, psnr(got, want))
    if precision == "int8":  # the int8 gate measured this architecture too
        assert d.runner.quality_db is not None  # type: ignore[attr-defined]


def test_engine_auto_runs_openvino_for_every_architecture(own_cache: Path) -> None:
    from test_registry import tiny_nafunet

    d = Deblurrer.from_model(tiny_nafunet(seed=7), None, RuntimeConfig("cpu", "fp32", "auto"))
    assert d.engine == "openvino"


@pytest.mark.parametrize("engine", ["torch", "openvino"])
def test_strength_blends_on_every_engine(net: torch.nn.Module, engine: str, own_cache: Path) -> None:
    img = _image(29, 38)
    full, _ = _run(net, engine, "fp32", img, ODD_TILES)
    half = Deblurrer.from_model(net, ODD_TILES, RuntimeConfig("cpu", "fp32", engine), strength=0.5)(img)
    blend = img.astype(np.float64) + 0.5 * (full.astype(np.float64) - img)
    assert np.abs(half - blend).max() <= 1.0  # both rounded to 8 bits once
    none = Deblurrer.from_model(net, ODD_TILES, RuntimeConfig("cpu", "fp32", engine), strength=0.0)(img)
    assert np.array_equal(none, img)
