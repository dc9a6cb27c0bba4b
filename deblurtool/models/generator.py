"""The DeblurGAN ResNet-9 generator.

Layout (Kupyn et al., 2018, after Johnson et al.'s ResNet transformer):
reflect-pad 3 -> 7x7 conv -> BN -> ReLU, two stride-2 3x3 convs (width x2 each), ``n_blocks`` residual
blocks of reflect-pad/3x3 conv/BN/ReLU/reflect-pad/3x3 conv/BN, two nearest x2 upsamplings each followed
by a 3x3 conv,
BN and ReLU, reflect-pad 3 -> 7x7 conv -> tanh, plus the input (global residual), clamped to [-1, 1].

Input and output: ``x_pm1`` of shape Nx3xHxW, float in [-1, 1], H and W multiples of 4.
This file imports nothing from training code: inference and training both build it from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class GeneratorConfig:
    """Constructor arguments, stored beside the weights so loading needs no guessing."""

    ngf: int = 64
    n_blocks: int = 9
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.ngf < 1 or self.n_blocks < 0 or self.in_channels < 1:
            raise ValueError(f"invalid generator config: {self}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> GeneratorConfig:
        known = {k: int(d[k]) for k in ("ngf", "n_blocks", "in_channels") if k in d}  # type: ignore[call-overload]
        return cls(**known)


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, reflect: int = 0) -> list[nn.Module]:
    layers: list[nn.Module] = []
    if reflect:
        layers.append(nn.ReflectionPad2d(reflect))
    pad = 0 if reflect else k // 2
    layers += [
        nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    return layers


class ResBlock(nn.Module):
    """x + [pad, conv3x3, BN, ReLU, pad, conv3x3, BN](x)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(ch, ch, 3, reflect=1),
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3, bias=False),
            nn.BatchNorm2d(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """DeblurGAN's ResNet-9 generator (``n_blocks=9``, ``ngf=64``)."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        c, ngf = self.config, self.config.ngf
        layers: list[nn.Module] = _conv_bn_relu(c.in_channels, ngf, 7, reflect=3)
        layers += _conv_bn_relu(ngf, ngf * 2, 3, stride=2)
        layers += _conv_bn_relu(ngf * 2, ngf * 4, 3, stride=2)
        layers += [ResBlock(ngf * 4) for _ in range(c.n_blocks)]
        for cin, cout in ((ngf * 4, ngf * 2), (ngf * 2, ngf)):
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            layers += _conv_bn_relu(cin, cout, 3)
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, c.in_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.reset_parameters()

    @property
    def head(self) -> nn.Conv2d:
        """The last conv; zero-initialised so an untrained generator is the identity, not noise."""
        return self.model[-2]  # type: ignore[return-value]

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Residual blocks start close to identity (small last BN scale), and so does the whole generator.
        for m in self.modules():
            if isinstance(m, ResBlock):
                last_bn = m.body[-1]
                assert isinstance(last_bn, nn.BatchNorm2d)
                nn.init.constant_(last_bn.weight, 0.1)
        nn.init.zeros_(self.head.weight)
        if self.head.bias is not None:
            nn.init.zeros_(self.head.bias)

    def residual(self, x_pm1: torch.Tensor) -> torch.Tensor:
        """The correction the generator adds to ``x_pm1`` (its body's output, tanh-bounded), before clamping.
        Inference runs only this in a low precision and adds it to the float32 input (``inference``)."""
        return self.model(x_pm1)

    def forward(self, x_pm1: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x_pm1 + self.residual(x_pm1).to(x_pm1.dtype), -1.0, 1.0)
