"""BatchNorm folding: the ResNet-9's inference fusion (exact up to float rounding, one memory pass fewer per
conv)."""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn


def _fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """One conv computing ``bn(conv(x))`` with ``bn``'s running statistics (eval semantics)."""
    assert bn.running_mean is not None and bn.running_var is not None
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    scale = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.detach().double()
    shift = -bn.running_mean.detach().double() * scale
    if bn.affine:
        shift = shift + bn.bias.detach().double()
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        fused.weight.copy_(w * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(b * scale + shift)  # type: ignore[union-attr]
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` (eval mode) with every Conv2d -> BatchNorm2d pair fused into one conv.

    Only pairs that follow each other inside an ``nn.Sequential`` are folded: there the order of children
    is the order of execution (in other containers registration order proves nothing). BNs without running
    statistics are left alone. The caller's model is never touched (the trainer evaluates its live model
    through this). Folding removes a memory pass per conv and makes every tile's output independent of
    batch statistics.
    """
    folded = copy.deepcopy(model).eval()
    for module in list(folded.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for a, b in itertools.pairwise(names):
            conv, bn = module._modules[a], module._modules[b]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and bn.running_mean is not None
                and bn.num_features == conv.out_channels
            ):
                module._modules[a] = _fold_conv_bn(conv, bn)
                module._modules[b] = nn.Identity()
    return folded
