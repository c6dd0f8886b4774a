"""Reverse Distillation's one-class bottleneck embedding (OCBE; Deng & Li, CVPR 2022, section 3.2), following the
structure of anomalib's ``OCBE`` / ``get_bottleneck_layer``, for any encoder's layers.

* Multi-scale feature fusion (MFF): every encoder layer but the deepest is brought to the deepest layer's stride by
  3x3 stride-2 convolutions (each followed by BatchNorm and ReLU) with the deepest layer's channel count ``C``; the
  deepest layer is taken as it is. The ``L`` maps are concatenated (``L * C`` channels).
* One-class embedding (OCE): one residual bottleneck block of stride 2 (1x1 to ``C / 2``, 3x3 stride 2, 1x1 to
  ``2 C``, each with BatchNorm; a 1x1 stride-2 convolution with BatchNorm on the shortcut; ReLU after the sum).

For WideResNet-50 ``layer1..layer3`` (256, 512, 1024 channels) this is anomalib's: a 3072-channel concatenation and a
2048-channel embedding at stride 32. For EfficientNet-Lite0 (24, 40, 112 channels): 336 and 224.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from streamad.errors import ModelError

__all__ = ["OneClassBottleneck", "conv_bn_relu", "halvings"]


def halvings(ratio: float, what: str) -> int:
    """``log2(ratio)`` for a power-of-two stride ratio ``ratio >= 1``.

    Raises:
        ModelError: ``ratio`` is not a power of two >= 1 (``what`` names the layers in the message).
    """
    n = math.log2(ratio) if ratio > 0 else -1.0
    if n < 0 or n != int(n):
        raise ModelError(f"reverse_distillation: the strides of {what} must differ by a power of two, "
                         f"shallow to deep (ratio {ratio})")
    return int(n)


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (padding 1, no bias), BatchNorm, ReLU:
    ``(N, cin, h, w) -> (N, cout, h / stride, w / stride)``."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=False))


class _ResidualBottleneck(nn.Module):
    """ResNet bottleneck block of stride 2 with a projection shortcut: ``(N, cin, h, w) -> (N, cout, h/2, w/2)``."""

    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, mid, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class OneClassBottleneck(nn.Module):
    """OCBE: ``forward([f_1 .. f_L])`` with ``f_l`` ``(N, C_l, H / s_l, W / s_l) float32`` (the encoder's layers,
    shallow to deep) -> the embedding ``(N, 2 C_L, H / (2 s_L), W / (2 s_L))``.

    Args:
        channels: ``C_l`` of each encoder layer. strides: ``s_l`` in input pixels, non-decreasing by powers of two.

    Attributes:
        out_channels: ``2 C_L``. out_stride: ``2 s_L``.

    Raises:
        ModelError: no layer, or strides that are not non-decreasing powers of two apart.
    """

    def __init__(self, channels: Sequence[int], strides: Sequence[int]) -> None:
        super().__init__()
        if not channels or len(channels) != len(strides):
            raise ModelError("reverse_distillation: the bottleneck needs one channel count and stride per layer")
        width = int(channels[-1])
        branches = []
        for c, s in zip(channels, strides):
            steps = halvings(strides[-1] / s, "the layers")
            units: list[nn.Module] = [conv_bn_relu(c if i == 0 else width, width, stride=2) for i in range(steps)]
            branches.append(nn.Sequential(*units))  # empty for the deepest layer: identity
        self.fuse = nn.ModuleList(branches)
        self.embed = _ResidualBottleneck(width * len(channels), max(width // 2, 1), 2 * width)
        self.out_channels = 2 * width
        self.out_stride = 2 * int(strides[-1])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        fused = [branch(f) for branch, f in zip(self.fuse, features)]
        return self.embed(torch.cat(fused, dim=1))
