"""Deblurrer: BN folding, precision, tiling, array dtypes, strength, OOM back-off, weights round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_generator
from torch import nn

from deblurtool import devices
from deblurtool.config import RuntimeConfig, TileConfig
from deblurtool.errors import DeblurError, InputError, WeightsError
from deblurtool.inference import Deblurrer
from deblurtool.models import weights as W
from deblurtool.models.fold import fold_batchnorm
from deblurtool.models.generator import GeneratorConfig, ResnetGenerator

torch.set_num_threads(1)
TINY = GeneratorConfig(ngf=4, n_blocks=1)
CPU32 = RuntimeConfig(device="cpu", precision="fp32")
CPU_BF16 = RuntimeConfig(device="cpu", precision="bf16")
WHOLE = TileConfig(tile_size=0, tile_overlap=0, batch_size=1)


def _random_generator(seed: int = 0, config: GeneratorConfig = TINY, scale: float = 0.3) -> ResnetGenerator:
    return random_generator(config, seed, scale)


def _image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """3 x h x w in [-1, 1]: smooth gradients plus texture, like a photo more than like noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    base = torch.stack([xx, yy, xx * yy]) * 0.6
    return (base + 0.3 * torch.rand(3, h, w, generator=g) - 0.15).clamp(-1, 1)


def test_fold_batchnorm_matches_and_leaves_caller_alone() -> None:
    model = _random_generator(config=GeneratorConfig(ngf=8, n_blocks=2)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert model.training, "the caller's mode must not change"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert not folded.training
    x = _image(36, 52)[None]
    with torch.no_grad():
        ref = model.eval()(x)
        out = folded(x)
    assert (ref - x).abs().mean() > 0.05, (
        "the random net should change the image, else the test proves nothing"
    )
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_fold_only_touches_sequential_pairs() -> None:
    class NotSequential(nn.Module):  # conv registered before bn but bn applied first: must not be folded
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.bn(x))

    m = NotSequential().eval()
    m.bn.running_mean.fill_(0.5)
    folded = fold_batchnorm(m)
    assert isinstance(folded.bn, nn.BatchNorm2d)
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(folded(x), m(x))


def test_fused_bf16_close_to_unfused_fp32() -> None:
    """bf16 keeps 8 mantissa bits (relative error ~2e-3 per rounding); through ~8 layers of a small random
    net, errors of a few 1e-3 on average and a few 1e-2 at worst are expected, far below one 8-bit level
    (2/255 = 0.0078) on average. The float32 global residual keeps the input itself exact."""
    model = _random_generator(seed=1)
    x = _image(48, 64)
    with torch.no_grad():
        ref = model(x[None])[0]
    out = Deblurrer.from_model(model, WHOLE, CPU_BF16).deblur_tensor(x)
    assert (ref - x).abs().mean() > 0.05
    diff = (out - ref).abs()
    # Measured: mean 0.0025, max 0.015 against a mean correction of 0.35.
    assert diff.mean() < 0.01 and diff.max() < 0.1, (diff.mean().item(), diff.max().item())
    out32 = Deblurrer.from_model(model, WHOLE, CPU32).deblur_tensor(x)
    torch.testing.assert_close(out32, ref, atol=1e-4, rtol=0)


def test_whole_frame_and_tiles_agree() -> None:
    """With BN folded (no per-tile statistics) tiles differ from the whole frame only where a tile's border
    padding reaches into the blend; feathering keeps that small for a net making modest corrections."""
    model = _random_generator(seed=2, scale=0.15)
    x = _image(100, 140, seed=3)
    whole = Deblurrer.from_model(model, WHOLE, CPU32).deblur_tensor(x)
    tiled_d = Deblurrer.from_model(model, TileConfig(tile_size=64, tile_overlap=24, batch_size=3), CPU32)
    tiled = tiled_d.deblur_tensor(x)
    assert (whole - x).abs().mean() > 0.02
    diff = (whole - tiled).abs()
    # Measured: mean 2e-5, max 8e-4 against a mean correction of 0.11; the bounds leave ~25x headroom.
    assert diff.mean() < 1e-3 and diff.max() < 0.02, (diff.mean().item(), diff.max().item())


@pytest.mark.parametrize("runtime", [CPU32, CPU_BF16])
def test_zero_head_generator_is_exact_identity(runtime: RuntimeConfig) -> None:
    """The shipped init is the identity; with the residual in float32 it stays exact even in bf16."""
    d = Deblurrer.from_model(ResnetGenerator(TINY), TileConfig(32, 8, 2), runtime)
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    u16 = rng.integers(0, 65536, (37, 45, 3), dtype=np.uint16)
    f32 = rng.random((37, 45, 3), dtype=np.float32)
    assert np.array_equal(d(u8), u8)
    assert np.array_equal(d(u16), u16)
    out = d(f32)
    assert out.dtype == np.float32 and np.abs(out - f32).max() < 1e-6
    y = d.deblur_tensor(torch.zeros(3, 8, 8))
    y.add_(1.0)  # an ordinary tensor, not an inference-mode one: callers may modify it in place


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(1, 1, 3), (17, 9, 3), (40, 70, 3)])
def test_deblur_array_keeps_shape_and_dtype(dtype: type, shape: tuple[int, int, int]) -> None:
    d = Deblurrer.from_model(_random_generator(seed=4), TileConfig(16, 4, 4), CPU32)
    peak = 1.0 if dtype == np.float32 else np.iinfo(dtype).max
    img = (np.random.default_rng(1).random(shape) * peak).astype(dtype)
    out = d.deblur_array(img)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert out.min() >= 0 and out.max() <= peak
    assert np.array_equal(img, (np.random.default_rng(1).random(shape) * peak).astype(dtype)), (
        "input modified"
    )


def test_bad_inputs() -> None:
    d = Deblurrer.from_model(ResnetGenerator(TINY), WHOLE, CPU32)
    with pytest.raises(InputError):
        d.deblur_array(np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError):
        d.deblur_array(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(InputError):
        d.deblur_array(np.zeros((8, 8, 3), np.float64))
    with pytest.raises(InputError):
        d.deblur_tensor(torch.zeros(1, 3, 8, 8))


def test_deblurrer_does_not_touch_the_model() -> None:
    model = _random_generator(seed=5).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Deblurrer.from_model(model, WHOLE, CPU_BF16).deblur_tensor(_image(16, 16))
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).dtype == torch.float32


def test_auto_tile_follows_the_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cpu_whole_frame_max_pixels", lambda: 40 * 40)
    d = Deblurrer.from_model(ResnetGenerator(TINY), None, CPU32)
    d.deblur_tensor(_image(20, 30))
    assert d.tile.tile_size == 0
    d.deblur_tensor(_image(50, 60))
    assert d.tile == devices.CPU_TILES


class FakeOOMRunner:
    """A runner whose residual is zero (the identity) that raises CUDA's out-of-memory error when a call
    exceeds a pixel budget."""

    engine, precision, device, multiple = "torch", "fp32", torch.device("cpu"), 1

    def __init__(self, budget: int, message: str | None = None) -> None:
        self.budget, self.message = budget, message
        self.calls: list[tuple[int, ...]] = []
        self.raised = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        if x.shape[0] * x.shape[2] * x.shape[3] > self.budget:
            self.raised += 1
            if self.message:
                raise RuntimeError(self.message)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.zeros_like(x)


@pytest.mark.parametrize("message", [None, "CUDA error: out of memory"])
def test_oom_backs_off_batch_then_tile_and_remembers(message: str | None) -> None:
    fake = FakeOOMRunner(budget=2 * 128 * 128, message=message)
    d = Deblurrer(fake, TileConfig(tile_size=256, tile_overlap=32, batch_size=8))
    x = _image(300, 520)
    out = d.deblur_tensor(x)
    assert torch.equal(out, x), "every tile of the frame must come back (nothing dropped)"
    assert d.tile == TileConfig(tile_size=128, tile_overlap=16, batch_size=1)
    # 6 tiles: batch 8 (in effect 6) -> 3 -> 1, then tile 256 -> 128.
    assert d.runner.raised == 3
    assert any("out of memory" in n for n in d.notes)
    d.runner.calls.clear()
    assert torch.equal(d.deblur_tensor(_image(300, 520, seed=1)), _image(300, 520, seed=1))
    assert d.runner.raised == 3, "later frames start from the backed-off settings"
    assert {c[1:] for c in d.runner.calls} == {(3, 128, 128)}


def test_oom_from_whole_frame_goes_to_tiles() -> None:
    d = Deblurrer(FakeOOMRunner(budget=200 * 200), TileConfig(0, 0, 4))
    x = _image(300, 520)
    assert torch.equal(d.deblur_tensor(x), x)
    assert d.tile.tile_size == 128 and 0 < d.tile.tile_overlap < 64  # 520 -> 260 -> 128
    assert d.runner.raised == 2  # one whole-frame tile: no pointless batch halving first


def test_oom_at_the_floor_is_a_clear_error() -> None:
    d = Deblurrer(FakeOOMRunner(budget=60 * 60), TileConfig(256, 32, 2))
    with pytest.raises(DeblurError, match="out of memory") as e:
        d.deblur_tensor(_image(200, 200))
    assert "64-pixel tiles" in str(e.value) and "\n" not in str(e.value)


def test_other_runtime_errors_propagate() -> None:
    class Broken(FakeOOMRunner):
        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("shape mismatch somewhere")

    d = Deblurrer(Broken(budget=0), WHOLE)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        d.deblur_tensor(_image(16, 16))
    assert d.tile == WHOLE


def test_from_weights_round_trip_and_tamper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "weights").mkdir()
    monkeypatch.setattr(W, "REPO_ROOT", tmp_path)
    monkeypatch.delenv(W.ENV_WEIGHTS, raising=False)
    model = _random_generator(seed=6)
    path = tmp_path / "weights" / W.DEFAULT_WEIGHTS_NAME
    digest = W.save_generator(model, path, dtype=torch.float32)
    (tmp_path / "weights" / "README.md").write_text(f"```\nsha256 {digest}  {path.name}\n```\n")
    x = _image(24, 40)
    d = Deblurrer.from_weights(None, WHOLE, CPU32)
    torch.testing.assert_close(d.deblur_tensor(x), Deblurrer.from_model(model, WHOLE, CPU32).deblur_tensor(x))
    data = bytearray(path.read_bytes())
    data[-9] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt or altered"):
        Deblurrer.from_weights(None, WHOLE, CPU32)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_close_to_cpu_fp32() -> None:
    model = _random_generator(seed=7)
    x = _image(96, 128)
    ref = Deblurrer.from_model(model, WHOLE, CPU32).deblur_tensor(x)
    d = Deblurrer.from_model(model, TileConfig(64, 16, 4), RuntimeConfig(device="cuda", precision="auto"))
    assert d.precision == "fp16" and d.device.type == "cuda"
    out = d.deblur_tensor(x)
    assert out.device.type == "cpu" and out.dtype == torch.float32
    assert (out - ref).abs().mean() < 0.01


# -- strength ------------------------------------------------------------------------------------------------


class _NeverCalled(FakeOOMRunner):
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("strength 0 must not run the model")


def test_strength_zero_returns_the_input_bit_for_bit_without_the_model() -> None:
    d = Deblurrer(_NeverCalled(budget=0), TileConfig(16, 4, 2), strength=0.0)
    rng = np.random.default_rng(3)
    for img in (
        rng.integers(0, 256, (21, 34, 3), dtype=np.uint8),
        rng.integers(0, 65536, (21, 34, 3), dtype=np.uint16),
        rng.random((21, 34, 3), dtype=np.float32) * 1.2
        - 0.1,  # even out-of-range floats come back as they were
    ):
        out = d(img)
        assert out.dtype == img.dtype and np.array_equal(out, img) and out is not img
    x = _image(9, 11)
    assert torch.equal(d.deblur_tensor(x), x)


def test_strength_one_is_the_models_output_and_between_a_blend() -> None:
    model = _random_generator(seed=8)
    x = _image(40, 52)
    full = Deblurrer.from_model(model, TileConfig(32, 8, 2), CPU32).deblur_tensor(x)
    assert torch.equal(
        Deblurrer.from_model(model, TileConfig(32, 8, 2), CPU32, strength=1.0).deblur_tensor(x), full
    )
    for s in (0.25, 0.7):
        got = Deblurrer.from_model(model, TileConfig(32, 8, 2), CPU32, strength=s).deblur_tensor(x)
        torch.testing.assert_close(got, x + s * (full - x), atol=1e-5, rtol=0)


def test_strength_is_in_the_signature_and_the_model_spec(tmp_path: Path) -> None:
    from deblurtool.config import ModelSpec
    from deblurtool.inference import load_deblurrer

    path = tmp_path / "g.safetensors"
    W.save_generator(_random_generator(seed=9), path)
    full = load_deblurrer(ModelSpec(weights=path, runtime=CPU32))
    half = load_deblurrer(ModelSpec(weights=path, runtime=CPU32, strength=0.5))
    assert half.strength == 0.5 and "strength=0.5" in half.signature and "strength" not in full.signature
    assert half.signature != full.signature
    x = _image(24, 24)
    torch.testing.assert_close(
        half.deblur_tensor(x), x + 0.5 * (full.deblur_tensor(x) - x), atol=1e-5, rtol=0
    )
    with pytest.raises(DeblurError, match="--strength must be between 0 and 1"):
        Deblurrer(FakeOOMRunner(budget=0), strength=1.5)


def test_the_residual_is_added_once_in_float32_for_any_runner() -> None:
    """A runner returns only the correction; the Deblurrer pads to its multiple, crops, adds, clamps."""

    class Constant(FakeOOMRunner):
        multiple = 8

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            assert x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0
            return torch.full_like(x, 0.5)

    d = Deblurrer(Constant(budget=10**9), WHOLE)
    x = _image(13, 21)
    torch.testing.assert_close(d.deblur_tensor(x), torch.clamp(x + 0.5, -1, 1), atol=0, rtol=0)
