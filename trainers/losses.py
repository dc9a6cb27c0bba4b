"""Training losses: Wasserstein critic/generator losses, gradient penalty, weight clipping, VGG16 perceptual
loss and a plain pixel loss. Images are ``x_pm1`` tensors (Nx3xHxW, float in [-1, 1]); losses are fp32
scalars.

The perceptual loss is the report's: MSE between VGG16 ``block3_conv3`` features (Keras layer naming: the conv
output after its ReLU) of the output and of the target, both ImageNet-normalised. Several layers can be
combined; their MSEs are averaged, so the default weight (100) keeps its meaning for any number of layers.
VGG16 weights come from torchvision's own weights API and cache (``imagenet``) or from a torchvision-layout
state_dict file; never a randomly initialised VGG, which would make the loss meaningless without any warning.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from deblurtool.errors import WeightsError

# torchvision's VGG16 ``features``: (index in the Sequential, in, out channels) of each conv, by Keras name.
_VGG16_PLAN = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
VGG16_LAYERS: dict[str, tuple[int, int, int]] = {}


def _index_vgg16() -> None:
    index, cin, block, conv = 0, 3, 1, 0
    for item in _VGG16_PLAN:
        if item == "M":
            index, block, conv = index + 1, block + 1, 0
            continue
        conv += 1
        width = typing.cast(int, item)
        VGG16_LAYERS[f"block{block}_conv{conv}"] = (index, cin, width)
        index, cin = index + 2, width  # conv, then its ReLU


_index_vgg16()
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PIXEL_LOSSES = ("none", "l1", "mse", "charbonnier")
CHARBONNIER_EPS = 1e-3


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss ``E[D(fake)] - E[D(real)]`` (minimised: real scores up, fake scores down)."""
    return fake_scores.float().mean() - real_scores.float().mean()


def generator_adv_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Wasserstein generator loss ``-E[D(G(blur))]``."""
    return -fake_scores.float().mean()


def gradient_penalty(
    critic: nn.Module,
    real_pm1: torch.Tensor,
    fake_pm1: torch.Tensor,
    *,
    scaler: torch.amp.GradScaler | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``E[(||grad_x D(x)||_2 - 1)^2]`` at random points between real and fake (unweighted).

    Runs under the caller's autocast. With an enabled fp16 GradScaler the inner gradient is taken of the
    scaled critic output and unscaled afterwards (PyTorch's AMP recipe), so small fp16 gradients survive.
    The result keeps its graph (``create_graph``): the caller adds it to the critic loss and backpropagates.
    """
    n = real_pm1.shape[0]
    alpha = torch.rand(n, 1, 1, 1, device=real_pm1.device, dtype=real_pm1.dtype)
    mixed = (alpha * real_pm1.detach() + (1 - alpha) * fake_pm1.detach()).requires_grad_(True)
    out = critic(mixed).float().sum()
    use_scale = scaler is not None and scaler.is_enabled()
    if use_scale:
        out = scaler.scale(out)  # type: ignore[union-attr]
    (grad,) = torch.autograd.grad(out, mixed, create_graph=True)
    grad = grad.float()
    if use_scale:
        grad = grad / scaler.get_scale()  # type: ignore[union-attr]
    norm = grad.flatten(1).norm(2, dim=1)
    return ((norm - 1.0) ** 2).mean()


@torch.no_grad()
def clip_weights(critic: nn.Module, value: float) -> None:
    """The plain WGAN's Lipschitz constraint: clamp every critic parameter to [-value, value]."""
    for p in critic.parameters():
        p.clamp_(-value, value)


def pixel_loss(kind: str, out_pm1: torch.Tensor, target_pm1: torch.Tensor) -> torch.Tensor:
    """``l1``, ``mse`` or ``charbonnier`` (sqrt(d^2 + eps^2), eps 1e-3: L1 with a smooth minimum) between
    output and target in [-1, 1] (fp32); ``none`` gives 0."""
    out, target = out_pm1.float(), target_pm1.float()
    if kind == "l1":
        return F.l1_loss(out, target)
    if kind == "mse":
        return F.mse_loss(out, target)
    if kind == "charbonnier":
        return torch.sqrt((out - target).square() + CHARBONNIER_EPS**2).mean()
    if kind == "none":
        return out_pm1.new_zeros((), dtype=torch.float32)
    raise ValueError(f"pixel loss must be one of {PIXEL_LOSSES}, got {kind!r}")


def frequency_loss(out_pm1: torch.Tensor, target_pm1: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the 2-D spectra (real and imaginary parts), in fp32.

    The spectrum uses the orthonormal FFT, so the term is on the scale of a per-pixel L1 whatever the crop
    size. Blur removes high frequencies, whose energy is small: a pixel loss barely notices them missing,
    while here every frequency weighs the same (MIMO-UNet's auxiliary frequency loss, Cho et al., ICCV 2021).
    """
    diff = torch.fft.rfft2(out_pm1.float() - target_pm1.float(), norm="ortho")
    return torch.view_as_real(diff).abs().mean()


def _vgg_state_dict(source: str | Path) -> dict[str, torch.Tensor]:
    """A torchvision-layout VGG16 state_dict from ``imagenet`` (torchvision's weights API and its torch hub
    cache) or a file. Raises WeightsError with the ways out when it cannot be had."""
    if str(source) == "imagenet":
        from torchvision.models import VGG16_Weights

        weights = VGG16_Weights.IMAGENET1K_V1
        try:
            return weights.get_state_dict(progress=False)
        except Exception as e:  # URLError, socket errors, HTTP errors: all mean "no weights here"
            hub = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
            raise WeightsError(
                f"cannot get the ImageNet VGG16 weights for the perceptual loss ({type(e).__name__}: {e}); "
                f"connect once to download them, or copy {Path(weights.url).name} from {weights.url} "
                f"to {hub}, "
                "or pass --vgg-weights PATH (a torchvision VGG16 state_dict), "
                "or turn the perceptual loss off with --perceptual-weight 0"
            ) from None
    path = Path(source)
    if not path.is_file():
        raise WeightsError("VGG16 weights file not found (--vgg-weights)", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and weights_only errors alike
        raise WeightsError(f"cannot read VGG16 weights ({type(e).__name__}: {e})", path) from None
    if not isinstance(state, dict):
        raise WeightsError("VGG16 weights file does not hold a state_dict", path)
    return state


class VGGPerceptual(nn.Module):
    """``perceptual(out_pm1, target_pm1)``: mean over ``layers`` of the MSE of VGG16 features, fp32 scalar.

    Only the trunk up to the deepest requested layer is built; its weights are frozen, it stays in eval mode.
    ``weights``: ``imagenet`` or the path of a torchvision VGG16 state_dict (keys ``features.N.weight/bias``;
    keys of deeper layers and the classifier may be absent).
    """

    def __init__(self, layers: Sequence[str] = ("block3_conv3",), weights: str | Path = "imagenet") -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG16_LAYERS]
        if unknown or not layers:
            raise WeightsError(
                f"unknown VGG16 layer {unknown[:1] or '(none given)'}; choose from {', '.join(VGG16_LAYERS)}"
            )
        self.layer_names = tuple(layers)
        # A tap is the number of trunk modules to run to reach a layer's output: its conv and its ReLU.
        self.taps = sorted({VGG16_LAYERS[name][0] + 2 for name in layers})
        modules: list[nn.Module] = []
        for index, cin, cout in VGG16_LAYERS.values():
            if index + 2 > self.taps[-1]:
                break
            while len(modules) < index:  # a max-pool sits at each gap
                modules.append(nn.MaxPool2d(2, 2))
            modules += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=False)]
        self.features = nn.Sequential(*modules)
        self._load(weights)
        self.features.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _load(self, source: str | Path) -> None:
        state = _vgg_state_dict(source)
        where = None if str(source) == "imagenet" else source
        own = self.features.state_dict()
        picked: dict[str, torch.Tensor] = {}
        for key, ref in own.items():
            full = f"features.{key}"
            if full not in state:
                raise WeightsError(
                    f"VGG16 weights lack {full!r} (a torchvision VGG16 state_dict is expected)", where
                )
            if tuple(state[full].shape) != tuple(ref.shape):
                raise WeightsError(
                    f"VGG16 weight {full!r} has shape {tuple(state[full].shape)}, "
                    f"expected {tuple(ref.shape)}",
                    where,
                )
            picked[key] = state[full].float()
        self.features.load_state_dict(picked, strict=True)

    def train(self, mode: bool = True) -> VGGPerceptual:
        super().train(mode)
        self.features.eval()  # frozen: never let a surrounding .train() change it
        return self

    def features_of(self, x_pm1: torch.Tensor) -> list[torch.Tensor]:
        """Activations at the requested layers (in depth order) of ImageNet-normalised ``(x + 1) / 2``."""
        mean, std = typing.cast(torch.Tensor, self.mean), typing.cast(torch.Tensor, self.std)
        x = ((x_pm1 + 1.0) * 0.5 - mean.to(x_pm1.dtype)) / std.to(x_pm1.dtype)
        taps, outs = set(self.taps), []
        for i, module in enumerate(self.features):
            x = module(x)
            if i + 1 in taps:
                outs.append(x)
        return outs

    def forward(self, out_pm1: torch.Tensor, target_pm1: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_feats = self.features_of(target_pm1)
        out_feats = self.features_of(out_pm1)
        losses = [F.mse_loss(o.float(), t.float()) for o, t in zip(out_feats, target_feats, strict=True)]
        return torch.stack(losses).mean()
