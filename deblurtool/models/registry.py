"""The generator architectures a weights file may name, keyed by the ``arch`` string in its metadata.

Each architecture is one module of this package that gives: a config dataclass (``to_dict``/``from_dict``)
and the ``nn.Module``, built from that config, with ``residual(x_pm1)`` (the correction it adds to its
input: ``x_pm1`` Nx3xHxW in [-1, 1], same shape out) and ``forward`` = input + residual, clamped to
[-1, 1]. Its entry in ``ARCHS`` adds ``fuse`` (a copy prepared for inference, e.g. BatchNorm folded into the
convs; an eval-mode copy where there is nothing to fold) and ``multiple`` (the input sides the residual
needs to be multiples of; inference pads to it by mirroring). Everything else (weights files, engines,
tiling, bench) reads the architecture from here, so adding one means adding its module and one entry below.
Files written before ``arch`` was stored name none and are ResNet-9s (``LEGACY_ARCH``).
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
    multiple: Callable[[nn.Module], int]
    describe: str
    # The largest tile side the architecture should see when the user leaves tiling to the tool (None: whole
    # frames are fine). The U-Net's channel attention averages over all it is given: trained on small crops,
    # it corrects less when it averages over a whole frame, so it runs on tiles of about its training context.
    max_tile: int | None = None


def no_fusion(model: nn.Module) -> nn.Module:
    """An eval-mode copy: for architectures with nothing to fold."""
    return copy.deepcopy(model).eval()


def _fold_resnet9(model: nn.Module) -> nn.Module:
    from deblurtool.models.fold import fold_batchnorm

    return fold_batchnorm(model)


def _nafunet_multiple(model: nn.Module) -> int:
    assert isinstance(model, nafnet.NAFUNet)
    return model.config.multiple


ARCHS: dict[str, Arch] = {
    "resnet9": Arch(
        "resnet9",
        generator.ResnetGenerator,
        generator.GeneratorConfig.from_dict,
        generator.GeneratorConfig,
        _fold_resnet9,
        lambda _: 4,  # two stride-2 convs
        "DeblurGAN's ResNet-9 generator (BatchNorm folded into the convolutions for inference)",
    ),
    nafnet.ARCH: Arch(
        nafnet.ARCH,
        nafnet.NAFUNet,
        nafnet.NAFUNetConfig.from_dict,
        nafnet.NAFUNetConfig,
        no_fusion,
        _nafunet_multiple,
        "U-Net of NAFNet-style blocks (LayerNorm, depthwise conv, SimpleGate, channel attention)",
        max_tile=256,
    ),
}


def get(name: str) -> Arch:
    """The architecture registered as ``name``; ValueError naming the known ones otherwise."""
    try:
        return ARCHS[name]
    except KeyError:
        raise ValueError(
            f"unknown generator architecture {name!r} (known: {', '.join(sorted(ARCHS))})"
        ) from None


def build(name: str, config: dict[str, object] | None = None) -> nn.Module:
    """A new generator of architecture ``name`` with ``config`` (None: the architecture's defaults)."""
    arch = get(name)
    cfg = arch.from_dict(config) if config is not None else arch.default_config()
    return arch.model_cls(cfg)


def arch_of(model: nn.Module) -> str:
    """The registry name of ``model``'s architecture (its exact class: a subclass is another architecture)."""
    for name, arch in ARCHS.items():
        if type(model) is arch.model_cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered generator architecture")


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` prepared for inference by its architecture (eval mode; the caller's model is left
    as it was)."""
    return get(arch_of(model)).fuse(model)


def input_multiple(model: nn.Module) -> int:
    """The input sides ``model.residual`` needs to be multiples of."""
    return get(arch_of(model)).multiple(model)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def max_tile(model: nn.Module) -> int | None:
    """The architecture's ``Arch.max_tile`` for ``model`` (None for a module the registry does not know)."""
    try:
        return get(arch_of(model)).max_tile
    except ValueError:
        return None
