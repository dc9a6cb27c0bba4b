"""PatchGAN critic (DeblurGAN's discriminator, used as a Wasserstein critic).

Five 4x4 convolutions: three of stride 2 with widths ``ndf, 2ndf, 4ndf``, one of stride 1 with ``8ndf``, each
followed by LeakyReLU(0.2) and (all but the first) a normalisation layer, then a stride-1 conv to one channel:
a grid of patch scores, each seeing a 70x70 receptive field. The report aggregates that grid into one scalar
through a dense layer; a dense layer needs a fixed input size, so the grid is first average-pooled to a fixed
``grid x grid`` (adaptive pooling), which makes the critic input-size-agnostic: 256 crops, resized frames and
full frames all work. Output: N scores (shape N), unbounded (a Wasserstein critic, no sigmoid).

Normalisation (``norm``): the report used BatchNorm, but BatchNorm couples the samples of a batch, while the
gradient penalty is defined per sample (the gradient of one critic value with respect to one input), so the
two do not mix (Gulrajani et al. 2017, section 4). The default is therefore ``instance``: per-sample
statistics, keeps the penalty well defined, and normalises each patch map the way PatchGAN critics
commonly do. ``layer`` (GroupNorm with one group: per-sample over channels and space) is the WGAN-GP paper's
own suggestion; ``none`` and ``batch`` are available (``batch``: the report's plain WGAN, weight clipping).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

NORMS = ("instance", "layer", "batch", "none")


@dataclass(frozen=True)
class CriticConfig:
    ndf: int = 64
    norm: str = "instance"
    grid: int = 8

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"critic norm must be one of {NORMS}, got {self.norm!r}")
        if self.ndf < 1 or self.grid < 1:
            raise ValueError(f"invalid critic config: {self}")

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, ch)
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    return nn.Identity()


class PatchCritic(nn.Module):
    """``critic(x_pm1)``: Nx3xHxW in [-1, 1] (H, W >= 32) -> N scores; ``patch_scores``: Nx1xGhxGw."""

    def __init__(self, config: CriticConfig | None = None, in_channels: int = 3) -> None:
        super().__init__()
        self.config = c = config or CriticConfig()
        widths = [c.ndf, c.ndf * 2, c.ndf * 4, c.ndf * 8]
        bias = c.norm in (
            "none",
            "instance",
        )  # a bias before BatchNorm/GroupNorm is cancelled by the norm's shift
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, widths[0], 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for i in range(1, 4):
            stride = 2 if i < 3 else 1
            layers += [
                nn.Conv2d(widths[i - 1], widths[i], 4, stride, 1, bias=bias),
                _norm(c.norm, widths[i]),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(c.grid)
        self.dense = nn.Linear(c.grid * c.grid, 1)

    def patch_scores(self, x_pm1: torch.Tensor) -> torch.Tensor:
        """Nx1xGhxGw patch scores (Gh = H/8 - 2 for H a multiple of 8)."""
        return self.features(x_pm1)

    def forward(self, x_pm1: torch.Tensor) -> torch.Tensor:
        grid = self.pool(self.patch_scores(x_pm1)).flatten(1)
        return self.dense(grid).squeeze(1)
