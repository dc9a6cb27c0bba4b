"""An efficient restoration U-Net of NAFNet-style blocks ("nafunet").

After the block design of Chen et al., "Simple Baselines for Image Restoration" (ECCV 2022): no nonlinear
activation at all; each block is LayerNorm (over channels) -> 1x1 conv -> 3x3 depthwise conv -> SimpleGate
(split the channels in two halves and multiply them) -> simplified channel attention (a global average pool
and a 1x1 conv that rescale the channels) -> 1x1 conv, added to the input with a learned per-channel scale,
then a second LayerNorm -> 1x1 -> SimpleGate -> 1x1 feed-forward branch, also scaled.

Layout: 3x3 conv to ``width`` channels; ``len(enc_blocks)`` encoder levels, each a run of blocks then a 2x2
stride-2 conv that doubles the channels; ``mid_blocks`` blocks at the lowest resolution; the decoder mirrors
the encoder (1x1 conv + pixel shuffle to upsample, the encoder's output added as the skip, then blocks);
3x3 conv back to 3 channels, added to the input (global residual) and clamped to [-1, 1].

Why this design for a CPU-trained deblurrer: LayerNorm makes the net indifferent to batch statistics (the
ResNet-9's BatchNorm is noisy on batches of a few crops) and lets it train at higher learning rates; the
learned residual scales start at zero, so every block starts as the identity; the U-Net's four
downsamplings give the receptive field that long blur needs at a cost per pixel far below the ResNet-9's.

Input and output: ``x_pm1`` of shape Nx3xHxW, float in [-1, 1], any H and W (padded by reflection to a
multiple of ``2 ** len(enc_blocks)`` inside ``forward`` and cropped back).
This file imports nothing from training code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

ARCH = "nafunet"


@dataclass(frozen=True)
class NAFUNetConfig:
    """Constructor arguments, stored beside the weights."""

    width: int = 24
    enc_blocks: tuple[int, ...] = (1, 1, 2, 4)
    mid_blocks: int = 4
    dec_blocks: tuple[int, ...] = (1, 1, 1, 1)
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.width < 2 or self.width % 2 or self.in_channels < 1 or self.mid_blocks < 0:
            raise ValueError(f"invalid nafunet config: {self}")
        if len(self.enc_blocks) != len(self.dec_blocks) or not self.enc_blocks:
            raise ValueError(f"enc_blocks and dec_blocks must have the same non-zero length: {self}")
        if min(self.enc_blocks) < 0 or min(self.dec_blocks) < 0:
            raise ValueError(f"block counts must be >= 0: {self}")

    @property
    def multiple(self) -> int:
        """Frame sides are padded to a multiple of this inside ``forward``."""
        return 2 ** len(self.enc_blocks)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["enc_blocks"] = list(self.enc_blocks)
        d["dec_blocks"] = list(self.dec_blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> NAFUNetConfig:
        def ints(v: object) -> tuple[int, ...]:
            if not isinstance(v, list | tuple):
                raise ValueError(f"expected a list of block counts, got {v!r}")
            return tuple(int(x) for x in v)

        kw: dict[str, object] = {}
        for k in ("width", "mid_blocks", "in_channels"):
            if k in d:
                kw[k] = int(d[k])  # type: ignore[call-overload]
        for k in ("enc_blocks", "dec_blocks"):
            if k in d:
                kw[k] = ints(d[k])
        return cls(**kw)  # type: ignore[arg-type]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of NxCxHxW, statistics in float32 whatever the input dtype."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        mu = xf.mean(1, keepdim=True)
        var = (xf - mu).pow(2).mean(1, keepdim=True)
        y = (xf - mu) * torch.rsqrt(var + self.eps)
        y = y * self.weight.float().view(1, -1, 1, 1) + self.bias.float().view(1, -1, 1, 1)
        return y.to(x.dtype)


class SimpleGate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.dwconv = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.gate = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1))
        self.conv3 = nn.Conv2d(c, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        # Learned residual scales, zero at start: the block is the identity until training moves them.
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gate(self.dwconv(self.conv1(self.norm1(x))))
        y = self.conv3(y * self.sca(y))
        x = x + y * self.beta.to(y.dtype)
        y = self.conv5(self.gate(self.conv4(self.norm2(x))))
        return x + y * self.gamma.to(y.dtype)


class NAFUNet(nn.Module):
    """The U-Net described in the module docstring."""

    arch = ARCH

    def __init__(self, config: NAFUNetConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or NAFUNetConfig()
        self.intro = nn.Conv2d(c.in_channels, c.width, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        ch = c.width
        for n in c.enc_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(ch) for _ in range(n)]))
            self.downs.append(nn.Conv2d(ch, 2 * ch, 2, stride=2))
            ch *= 2
        self.middle = nn.Sequential(*[NAFBlock(ch) for _ in range(c.mid_blocks)])
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for n in c.dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(ch, 2 * ch, 1, bias=False), nn.PixelShuffle(2)))
            ch //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(ch) for _ in range(n)]))
        self.ending = nn.Conv2d(c.width, c.in_channels, 3, padding=1)
        # The last conv keeps PyTorch's default (non-zero) init: with it zeroed as well as every block's
        # residual scales, no gradient reaches the body at the start and training on small, varied batches
        # sits at the identity for thousands of steps. The blocks alone start as the identity.

    def residual(self, x_pm1: torch.Tensor) -> torch.Tensor:
        """The correction the net adds to ``x_pm1`` (same shape), before clamping."""
        _, _, h, w = x_pm1.shape
        m = self.config.multiple
        ph, pw = (-h) % m, (-w) % m
        x = x_pm1
        if ph or pw:
            # Reflection needs the pad to be smaller than the side; replicate covers tiny inputs.
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        y = self.intro(x)
        skips = []
        for enc, down in zip(self.encoders, self.downs, strict=True):
            y = enc(y)
            skips.append(y)
            y = down(y)
        y = self.middle(y)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips), strict=True):
            y = dec(up(y) + skip)
        y = self.ending(y)
        return y[:, :, :h, :w]

    def forward(self, x_pm1: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x_pm1 + self.residual(x_pm1).to(x_pm1.dtype), -1.0, 1.0)


def macs_per_pixel(config: NAFUNetConfig) -> float:
    """Multiply-adds per input pixel (convolutions only; norms, gates and pools are left out)."""
    total = 9.0 * config.in_channels * config.width * 2  # intro + ending
    ch = config.width
    scale = 1.0

    def block(c: int) -> float:
        return 6.0 * c * c + 18.0 * c

    for n_enc, n_dec in zip(config.enc_blocks, config.dec_blocks, strict=True):
        total += (n_enc + n_dec) * block(ch) * scale
        total += 4.0 * ch * 2 * ch * scale / 4  # 2x2 stride-2 down conv, on the smaller grid
        total += ch * 2 * (2 * ch) * 2 * scale / 4  # 1x1 up conv (2ch -> 4ch) on the smaller grid
        ch *= 2
        scale /= 4
    total += config.mid_blocks * block(ch) * scale
    return total
