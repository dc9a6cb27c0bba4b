"""trainers.critic and trainers.losses: shapes, Wasserstein losses, gradient penalty, clipping, VGG loss."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from torch import nn

from deblurtool.errors import WeightsError
from trainers.critic import NORMS, CriticConfig, PatchCritic
from trainers.losses import (
    VGG16_LAYERS,
    VGGPerceptual,
    clip_weights,
    critic_loss,
    generator_adv_loss,
    gradient_penalty,
    pixel_loss,
)

torch.set_num_threads(1)


def random_vgg16_state(upto: str = "block3_conv3", seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-layout VGG16 ``features`` state_dict up to ``upto`` (deeper keys absent), random."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, (index, cin, cout) in VGG16_LAYERS.items():
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        state[f"features.{index}.bias"] = torch.randn(cout, generator=g) * 0.01
        if name == upto:
            break
    return state


@pytest.mark.parametrize("norm", NORMS)
def test_critic_shapes_any_input_size(norm: str) -> None:
    critic = PatchCritic(CriticConfig(ndf=4, norm=norm, grid=4))
    for h, w in ((64, 64), (96, 128), (40, 56)):
        x = torch.rand(2, 3, h, w) * 2 - 1
        assert critic(x).shape == (2,)
        assert critic.patch_scores(x).shape == (2, 1, h // 8 - 2, w // 8 - 2)
    convs = [m for m in critic.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 16, 32, 1]
    norms = [m for m in critic.features if isinstance(m, (nn.InstanceNorm2d, nn.GroupNorm, nn.BatchNorm2d))]
    assert len(norms) == (0 if norm == "none" else 3)  # on all of the growing convs but the first


def test_wasserstein_losses() -> None:
    real, fake = torch.tensor([2.0, 4.0]), torch.tensor([1.0, -1.0])
    assert critic_loss(real, fake).item() == pytest.approx(0.0 - 3.0)
    assert generator_adv_loss(fake).item() == pytest.approx(0.0)
    assert generator_adv_loss(torch.tensor([3.0])).item() == pytest.approx(-3.0)


class LinearCritic(nn.Module):
    """D(x) = <w, x> per sample: its input gradient is w everywhere, so the penalty is (|w| - 1)^2."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        w = torch.randn(3, 8, 8)
        self.w = nn.Parameter(w / w.norm() * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1)


@pytest.mark.parametrize(("scale", "expected"), [(1.0, 0.0), (2.0, 1.0), (0.5, 0.25)])
def test_gradient_penalty_value(scale: float, expected: float) -> None:
    torch.manual_seed(0)
    critic = LinearCritic(scale)
    real, fake = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    gp = gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx(expected, abs=1e-5)
    gp.backward()  # second-order: d gp / d w = 2 (|w| - 1) w / |w|
    grad_norm = critic.w.grad.norm().item()  # type: ignore[union-attr]
    assert grad_norm == pytest.approx(2 * abs(scale - 1.0), abs=1e-4)


def test_gradient_penalty_on_patch_critic_backpropagates() -> None:
    torch.manual_seed(1)
    critic = PatchCritic(CriticConfig(ndf=4))
    real, fake = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    gp = gradient_penalty(critic, real, fake)
    assert torch.isfinite(gp) and gp.item() >= 0
    gp.backward()
    # Every weight shapes the input gradient (biases after the last nonlinearity do not: no grad for them).
    weights = [p for name, p in critic.named_parameters() if name.endswith("weight")]
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in weights
    )


def test_gradient_penalty_with_disabled_scaler_matches_plain() -> None:
    torch.manual_seed(2)
    critic = LinearCritic(3.0)
    real, fake = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    assert gradient_penalty(critic, real, fake, scaler=scaler).item() == pytest.approx(4.0, abs=1e-5)


def test_clip_weights_and_pixel_loss() -> None:
    critic = PatchCritic(CriticConfig(ndf=4, norm="batch"))
    with torch.no_grad():
        for p in critic.parameters():
            p.normal_(0, 1)
    clip_weights(critic, 0.01)
    assert max(p.abs().max().item() for p in critic.parameters()) <= 0.01
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert pixel_loss("l1", a, b).item() == pytest.approx(0.5)
    assert pixel_loss("mse", a, b).item() == pytest.approx(0.25)
    assert pixel_loss("none", a, b).item() == 0.0
    with pytest.raises(ValueError, match="pixel loss"):
        pixel_loss("l2", a, b)


def test_perceptual_from_path(tmp_path: Path) -> None:
    path = tmp_path / "vgg16.pth"
    state = random_vgg16_state()
    torch.save(state, path)
    loss = VGGPerceptual(["block3_conv3"], path)
    assert torch.equal(loss.features[14].weight, state["features.14.weight"])  # loaded, not random
    assert len(loss.features) == 16  # built only up to block3_conv3's ReLU
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == 0.0
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    value = loss(y, x)
    assert value.item() > 0
    value.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.features.training
    combo = VGGPerceptual(["block1_conv2", "block2_conv2", "block3_conv3"], path)
    assert combo(x, x).item() == 0.0 and combo(y, x).item() > 0


def test_perceptual_path_errors(tmp_path: Path) -> None:
    path = tmp_path / "partial.pth"
    torch.save(random_vgg16_state(upto="block2_conv2"), path)
    VGGPerceptual(["block2_conv2"], path)  # deeper keys absent is fine
    with pytest.raises(WeightsError, match=r"lack 'features\.10\.weight'") as e:
        VGGPerceptual(["block3_conv3"], path)
    assert str(path) in str(e.value)
    with pytest.raises(WeightsError, match="unknown VGG16 layer"):
        VGGPerceptual(["conv3_3"], path)
    with pytest.raises(WeightsError, match="not found"):
        VGGPerceptual(["block1_conv1"], tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        VGGPerceptual(["block1_conv1"], bad)


def test_imagenet_offline_error_and_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network, empty torch hub cache: a one-line error with the ways out. A pre-populated cache: used."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError) as e:
        VGGPerceptual(["block3_conv3"], "imagenet")
    message = str(e.value)
    assert "--vgg-weights PATH" in message and "--perceptual-weight 0" in message
    assert "vgg16-397923af.pth" in message and "\n" not in message
    cached = Path(torch.hub.get_dir()) / "checkpoints" / "vgg16-397923af.pth"
    assert str(cached) in message
    cached.parent.mkdir(parents=True, exist_ok=True)
    state = random_vgg16_state()
    torch.save(state, cached)
    loss = VGGPerceptual(["block3_conv3"], "imagenet")
    assert torch.equal(loss.features[0].weight, state["features.0.weight"])


def test_gradient_penalty_with_enabled_scaler_unscales() -> None:
    """The fp16-on-CUDA path (scaled inner gradient, then unscaled) gives the unscaled penalty; run on CPU."""
    torch.manual_seed(3)
    critic = LinearCritic(2.0)
    real, fake = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, enabled=True)
    gp = gradient_penalty(critic, real, fake, scaler=scaler)
    assert gp.item() == pytest.approx(1.0, abs=1e-5)
