"""Reverse Distillation's student decoder (Deng & Li, CVPR 2022, section 3.1): it restores the encoder's layers,
deepest first, from the one-class embedding.

anomalib decodes WideResNet-50 with a "de-ResNet" (its ``get_decoder``: ResNet bottleneck blocks whose strided
convolutions are 2x2 transposed convolutions). streamad's default encoder is EfficientNet-Lite, whose stage outputs
are linear (a BatchNorm'd projection, signed), so this decoder is a light mirror built for any encoder instead: per
encoder layer, deepest first,

* ``k`` up-sampling units, ``k = log2(stride ratio)`` to the previous (deeper) stage: 2x2 stride-2
  :class:`~torch.nn.ConvTranspose2d`, BatchNorm, ReLU (a 3x3 convolution unit where two layers share a stride);
* one 3x3 convolution unit (BatchNorm, ReLU) refining the hidden features (``H_l = max(2 C_l, 32)`` channels), which
  also feed the next (shallower) stage;
* a 1x1 convolution with bias to the encoder layer's ``C_l`` channels (linear, like the encoder's output).

Where the encoder rounded odd sizes up (TensorFlow "SAME" padding), the stage output is bilinearly resized to the
encoder layer's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from streamad.models.image.reverse_distillation.bottleneck import conv_bn_relu, halvings

__all__ = ["Decoder"]


def _up(cin: int, cout: int) -> nn.Sequential:
    """2x2 stride-2 transposed convolution, BatchNorm, ReLU: ``(N, cin, h, w) -> (N, cout, 2h, 2w)``."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, stride=2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Decoder(nn.Module):
    """``forward(embedding (N, C_e, H / s_e, W / s_e), sizes) -> [d_1 .. d_L]``, ``d_l`` ``(N, C_l, h_l, w_l)
    float32`` shallow to deep, ``(h_l, w_l) = sizes[l]`` (the encoder's layer sizes).

    Args:
        channels: ``C_l`` of the encoder layers, shallow to deep. strides: their strides ``s_l``.
        in_channels: ``C_e`` of the embedding. in_stride: ``s_e``.

    Raises:
        ModelError: strides that are not powers of two apart.
    """

    def __init__(self, channels: Sequence[int], strides: Sequence[int], in_channels: int, in_stride: int) -> None:
        super().__init__()
        stages, heads = [], []
        cin, stride = int(in_channels), int(in_stride)
        for c, s in reversed(list(zip(channels, strides))):
            hidden = max(2 * int(c), 32)
            steps = halvings(stride / s, "the layers and the embedding")
            units: list[nn.Module] = [_up(cin if i == 0 else hidden, hidden) for i in range(steps)]
            if not units:
                units.append(conv_bn_relu(cin, hidden))
            units.append(conv_bn_relu(hidden, hidden))
            stages.append(nn.Sequential(*units))
            heads.append(nn.Conv2d(hidden, int(c), 1))
            cin, stride = hidden, int(s)
        self.stages = nn.ModuleList(stages)  # deepest first
        self.heads = nn.ModuleList(heads)

    def forward(self, embedding: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        x = embedding
        for stage, head, size in zip(self.stages, self.heads, reversed(list(sizes))):
            x = stage(x)
            if tuple(x.shape[-2:]) != tuple(size):
                x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
            out.append(head(x))
        return out[::-1]
