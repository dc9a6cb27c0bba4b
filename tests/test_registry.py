"""The architecture registry: weights files name their architecture and load as it; every registered
architecture (the ResNet-9, the NAFNet-style U-Net, and a test-only one added here through the registry
alone) runs through the Deblurrer, tiles, engines and bench."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, random_generator
from safetensors import safe_open
from torch import nn

from deblurtool.config import RuntimeConfig, TileConfig
from deblurtool.errors import WeightsError
from deblurtool.inference import Deblurrer
from deblurtool.models import registry
from deblurtool.models import weights as W
from deblurtool.models.generator import ResnetGenerator
from deblurtool.models.nafnet import NAFUNet, NAFUNetConfig
from deblurtool.tiling import cut_tiles, plan_tiles, stitch_tiles

TINY_NAF = NAFUNetConfig(width=4, enc_blocks=(1, 1), dec_blocks=(1, 1), mid_blocks=1)
CPU32 = RuntimeConfig("cpu", "fp32", "torch")


def zero_nafunet(config: NAFUNetConfig = TINY_NAF) -> NAFUNet:
    """A tiny U-Net whose residual is zero (its last conv zeroed): the identity, exactly."""
    model = NAFUNet(config).eval()
    with torch.no_grad():
        model.ending.weight.zero_()
        assert model.ending.bias is not None
        model.ending.bias.zero_()
    return model


def tiny_nafunet(seed: int = 0, scale: float = 0.1, config: NAFUNetConfig = TINY_NAF) -> NAFUNet:
    """A tiny U-Net (eval mode) with every parameter moved off its init, the zero-initialised residual
    scales and last conv included, so it is far from the identity it starts as."""
    g = torch.Generator().manual_seed(seed)
    model = NAFUNet(config)
    with torch.no_grad():
        for t in model.parameters():
            t.add_(torch.randn(t.shape, generator=g) * scale)
        # A trained generator's correction is a few levels, not the full range a random last conv gives.
        model.ending.weight.mul_(0.1)
    return model.eval()


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """HxWx3 uint8: smooth gradients plus some texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx / w, yy / h, 0.5 + 0.4 * np.sin((xx + yy) / 5)], axis=2)
    return np.clip(255 * (0.85 * smooth + 0.15 * rng.random((h, w, 3))), 0, 255).astype(np.uint8)


def to_pm1(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1.0


# -- a test-only architecture, registered the way a new one would be ----------------------------------------


@dataclass(frozen=True)
class BlurConfig:
    channels: int = 3
    width: int = 5

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> BlurConfig:
        return cls(**{k: int(v) for k, v in d.items()})  # type: ignore[call-overload]


class TinySharpen(nn.Module):
    """Conv -> stride-2 conv -> upsample -> conv: needs even sides, like a real U-Net needs its multiple."""

    def __init__(self, config: BlurConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or BlurConfig()
        self.a = nn.Conv2d(c.channels, c.width, 3, padding=1)
        self.down = nn.Conv2d(c.width, c.width, 2, stride=2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.b = nn.Conv2d(c.width, c.channels, 3, padding=1)

    def residual(self, x_pm1: torch.Tensor) -> torch.Tensor:
        return 0.1 * torch.tanh(self.b(self.up(self.down(self.a(x_pm1)))))

    def forward(self, x_pm1: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x_pm1 + self.residual(x_pm1), -1.0, 1.0)


@pytest.fixture
def sharpen_arch(monkeypatch: pytest.MonkeyPatch) -> registry.Arch:
    arch = registry.Arch(
        "tinysharpen", TinySharpen, BlurConfig.from_dict, BlurConfig, registry.no_fusion, lambda _: 2, "test"
    )
    monkeypatch.setitem(registry.ARCHS, arch.name, arch)
    return arch


def _sharpen(seed: int = 0) -> TinySharpen:
    torch.manual_seed(seed)
    return TinySharpen().eval()


# -- weights files name their architecture ------------------------------------------------------------------


def test_files_store_the_arch_and_load_as_it(tmp_path: Path) -> None:
    for model in (random_generator(TINY, seed=1), tiny_nafunet(seed=1)):
        path = tmp_path / f"{registry.arch_of(model)}.safetensors"
        W.save_generator(model, path, dtype=torch.float32, extra={"step": "7"})
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        assert meta["arch"] == registry.arch_of(model) and meta["step"] == "7"
        assert json.loads(meta["config"]) == model.config.to_dict()  # type: ignore[operator]
        loaded = W.load_generator(path)
        assert type(loaded) is type(model) and loaded.config == model.config
        x = to_pm1(photo(32, 48))[None]
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x))


def test_a_file_without_arch_is_a_resnet9(tmp_path: Path) -> None:
    """Files written before the metadata named an architecture keep loading as ResNet-9s; one whose config
    fits only another architecture (a trainer running an older deblurtool wrote it) loads as that one."""
    from safetensors.torch import save_file

    for model in (random_generator(TINY, seed=2), tiny_nafunet(seed=2)):
        path = tmp_path / "old.safetensors"
        tensors = {k: v.contiguous() for k, v in model.state_dict().items() if "num_batches" not in k}
        meta = {"format": W.FORMAT, "format_version": "1", "config": json.dumps(model.config.to_dict())}  # type: ignore[operator]
        save_file(tensors, str(path), metadata=meta)
        assert type(W.load_generator(path)) is type(model)


def test_unknown_arch_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    W.save_generator(random_generator(TINY), path)
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    save_file(load_file(str(path)), str(path), metadata={**meta, "arch": "transformer9000"})
    with pytest.raises(
        WeightsError, match=r"unknown generator architecture 'transformer9000' \(known: "
    ) as e:
        W.load_generator(path)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="may not override"):
        W.save_generator(random_generator(TINY), path, extra={"arch": "resnet9"})


def test_every_arch_has_a_residual_that_forward_adds() -> None:
    x = to_pm1(photo(20, 28))[None]
    for model in (random_generator(TINY, seed=3), tiny_nafunet(seed=3)):
        with torch.no_grad():
            r = model.residual(x)  # type: ignore[operator]
            assert r.shape == x.shape and r.abs().mean() > 1e-3
            torch.testing.assert_close(model(x), torch.clamp(x + r, -1, 1))
    assert (
        registry.input_multiple(tiny_nafunet()) == 4 and registry.input_multiple(ResnetGenerator(TINY)) == 4
    )


# -- the U-Net everywhere -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tile", [TileConfig(0, 0, 1), TileConfig(16, 4, 3), TileConfig(40, 12, 2)])
@pytest.mark.parametrize("shape", [(37, 53), (5, 3), (64, 48)])
def test_nafunet_tiles_are_its_own_outputs_stitched(tile: TileConfig, shape: tuple[int, int]) -> None:
    """Whatever the tile or frame size (not multiples of the U-Net's), the Deblurrer's output is exactly
    the model's own output on each tile (padded as the model itself pads), feathered together."""
    model = tiny_nafunet(seed=4)
    img = photo(*shape, seed=1)
    x = to_pm1(img)
    got = Deblurrer.from_model(model, tile, CPU32).deblur_tensor(x)
    plan = plan_tiles(*shape, tile.tile_size, tile.tile_overlap)
    with torch.no_grad():
        tiles = cut_tiles(x, plan)
        want = stitch_tiles(torch.cat([model(t[None]) for t in tiles]), plan)
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)
    assert (got - x).abs().mean() > 0.01  # the model changed the image: the comparison means something


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_nafunet_half_precisions_stay_close_to_fp32(precision: str) -> None:
    model = tiny_nafunet(seed=5)
    img = photo(45, 70, seed=2)
    want = Deblurrer.from_model(model, None, CPU32)(img)
    d = Deblurrer.from_model(model, None, RuntimeConfig("cpu", precision, "torch"))
    got = d(img)
    assert d.precision == precision and np.abs(got.astype(int) - want).max() <= 3
    zero = zero_nafunet()  # a zero residual gives the input back exactly, in any precision
    assert np.array_equal(
        Deblurrer.from_model(zero, None, RuntimeConfig("cpu", precision, "torch"))(img), img
    )


# -- adding an architecture touches models/ only -------------------------------------------------------------


def test_a_new_arch_registered_runs_everywhere(sharpen_arch: registry.Arch, tmp_path: Path) -> None:
    model = _sharpen()
    path = tmp_path / "sharpen.safetensors"
    W.save_generator(model, path, dtype=torch.float32)
    loaded = W.load_generator(path)
    assert type(loaded) is TinySharpen
    img = photo(33, 47)  # odd sides: the runner gets them padded to even ones
    want = Deblurrer.from_weights(path, TileConfig(0, 0, 1), CPU32)(img)
    x = to_pm1(img)
    with torch.no_grad():
        direct = torch.nn.functional.pad(x[None], (0, 1, 0, 3), mode="reflect")  # 36 x 48: plan, then even
        ref = model(direct)[0, :, :33, :47]
    ref_u8 = ((ref + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    assert np.array_equal(want, ref_u8)
    tiled = Deblurrer.from_weights(path, TileConfig(16, 4, 2), CPU32)(img)
    assert tiled.shape == img.shape and np.abs(tiled.astype(int) - want).mean() < 2
    bf16 = Deblurrer.from_weights(path, None, RuntimeConfig("cpu", "bf16", "torch"))(img)
    assert np.abs(bf16.astype(int) - want).max() <= 2


def test_a_new_arch_runs_on_openvino(sharpen_arch: registry.Arch) -> None:
    pytest.importorskip("openvino")
    model = _sharpen(1)
    img = photo(30, 41)
    want = Deblurrer.from_model(model, None, CPU32)(img)
    d = Deblurrer.from_model(model, TileConfig(16, 4, 2), RuntimeConfig("cpu", "fp32", "openvino"))
    got = d(img)
    tiled_torch = Deblurrer.from_model(model, TileConfig(16, 4, 2), CPU32)(img)
    assert d.engine == "openvino" and np.abs(got.astype(int) - tiled_torch).max() <= 1
    assert np.abs(got.astype(int) - want).mean() < 2


def test_a_new_arch_is_benched_like_any_other(sharpen_arch: registry.Arch, tmp_path: Path) -> None:
    from deblurtool.bench import BenchConfig, run_bench

    path = tmp_path / "sharpen.safetensors"
    W.save_generator(_sharpen(2), path)
    config = BenchConfig(
        device="cpu", engine="torch", resolution=(30, 22), runs=1, quick=True, weights=(path,)
    )
    report = run_bench(config)
    assert report.weights is not None and report.weights.arch == "tinysharpen" and report.weights.trained
    assert report.speed is not None and all(r.ms_per_frame > 0 for r in report.speed.variants)
    twice = run_bench(
        BenchConfig(device="cpu", engine="torch", resolution=(30, 22), runs=1, weights=(path, path))
    )
    assert twice.models is not None and [r.weights.arch for r in twice.models.rows] == ["tinysharpen"] * 2


def test_the_sharp_input_check_runs_any_arch() -> None:
    from deblurtool.evaluate import sharp_input_psnr
    from deblurtool.pairs import find_pairs

    pairs = find_pairs(Path(__file__).parent / "data" / "crops")
    identity = Deblurrer.from_model(zero_nafunet(), None, CPU32)
    assert all(np.isinf(v) for v in sharp_input_psnr(pairs, identity))
    gentle = Deblurrer.from_model(tiny_nafunet(seed=8, scale=0.02), None, CPU32)
    assert all(np.isfinite(v) and v > 10 for v in sharp_input_psnr(pairs, gentle))


def test_auto_tiling_keeps_the_unet_to_its_max_tile_and_the_resnet_whole() -> None:
    """Tiling left to the tool: the U-Net runs on tiles of its architecture's ``max_tile`` once a frame is
    larger (its channel attention averages over what it is given); the ResNet-9 keeps whole frames on a CPU;
    tiles the user names are used as given."""
    from deblurtool.config import RuntimeConfig, TileConfig
    from deblurtool.inference import Deblurrer
    from deblurtool.models import registry
    from deblurtool.models.generator import GeneratorConfig, ResnetGenerator

    cap = registry.get("nafunet").max_tile
    assert cap is not None
    cpu = RuntimeConfig(device="cpu", engine="torch", precision="fp32")
    naf = Deblurrer.from_model(tiny_nafunet(), runtime=cpu)
    img = photo(cap + 20, cap + 40)
    naf(img)
    assert naf.tile.tile_size == cap
    small = Deblurrer.from_model(tiny_nafunet(), runtime=cpu)
    small(photo(cap // 2, cap // 2))
    assert small.tile.tile_size == 0
    r9 = Deblurrer.from_model(ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=1)), runtime=cpu)
    r9(img)
    assert r9.tile.tile_size == 0
    given = Deblurrer.from_model(tiny_nafunet(), TileConfig(0, 0, 1), runtime=cpu)
    given(img)
    assert given.tile.tile_size == 0
