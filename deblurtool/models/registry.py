"""The generator architectures a weights file may name, keyed by the ``arch`` string in its metadata.

Each architecture is one module of this package that gives: a config dataclass (``to_dict``/``from_dict``),
the ``nn.Module`` (input and output ``x_pm1``: Nx3xHxW in [-1, 1], output = input + residual, clamped), and
``fuse_for_inference`` (a copy with whatever the architecture folds for inference, e.g. BatchNorm into convs;
the identity where there is nothing to fold). Adding an architecture means adding its module and one entry
in ``ARCHS`` below; files written before ``arch`` was stored name no arch and are ResNet-9s.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from deblurtool.models import generator, nafnet

LEGACY_ARCH = "resnet9"  # weights written before the metadata named an architecture


@dataclass(frozen=True)
class Arch:
    """One architecture: how to build it from a config dict and how to prepare it for inference."""

    name: str
    model_cls: type[nn.Module]
    from_dict: Callable[[dict[str, object]], Any]
    default_config: Callable[[], Any]
    fuse: Callable[[nn.Module], nn.Module]
    describe: str


def _no_fusion(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval()


def _fold_resnet9(model: nn.Module) -> nn.Module:
    from deblurtool.models.fold import fold_batchnorm

    return fold_batchnorm(model)


ARCHS: dict[str, Arch] = {
    "resnet9": Arch(
        "resnet9",
        generator.ResnetGenerator,
        generator.GeneratorConfig.from_dict,
        generator.GeneratorConfig,
        _fold_resnet9,
        "DeblurGAN's ResNet-9 generator (BatchNorm folded into the convolutions for inference)",
    ),
    nafnet.ARCH: Arch(
        nafnet.ARCH,
        nafnet.NAFUNet,
        nafnet.NAFUNetConfig.from_dict,
        nafnet.NAFUNetConfig,
        _no_fusion,
        "U-Net of NAFNet-style blocks (LayerNorm, depthwise conv, SimpleGate, channel attention)",
    ),
}


def get(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        raise ValueError(f"unknown generator architecture {name!r} (known: {', '.join(sorted(ARCHS))})") from None


def build(name: str, config: dict[str, object] | None = None) -> nn.Module:
    """A new generator of architecture ``name`` with ``config`` (None: the architecture's defaults)."""
    arch = get(name)
    cfg = arch.from_dict(config) if config is not None else arch.default_config()
    return arch.model_cls(cfg)


def arch_of(model: nn.Module) -> str:
    """The registry name of ``model``'s architecture."""
    for name, arch in ARCHS.items():
        if type(model) is arch.model_cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered generator architecture")


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` prepared for inference by its architecture (eval mode, float32, on its device)."""
    return get(arch_of(model)).fuse(model)
