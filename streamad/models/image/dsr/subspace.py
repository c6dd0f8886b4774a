"""DSR's subspace restriction modules (paper section 3.2; anomalib ``SubspaceRestrictionModule``,
``SubspaceRestrictionNetwork``, ``FeatureEncoder``, ``FeatureDecoder``): a small encoder-decoder maps (possibly
anomalous) quantised features towards the subspace of normal ones; its output is quantised again with the
discrete model's codebook of that level, and the object-specific decoder reconstructs the image from the result.

Layout: double convolutions (DRAEM's :func:`~streamad.models.image.draem.networks.double_conv`, 3x3 + BatchNorm +
ReLU) at widths ``w, 2w, 4w`` with 2x2 max pooling between them, two bilinear 2x upsamplings back
(:func:`~streamad.models.image.draem.networks.up_conv`, each followed by a double convolution), a 1x1 convolution to
``channels``. Feature sides must be multiples of 4.
"""

from __future__ import annotations

import torch
from torch import nn

from streamad.models.image.draem.networks import double_conv, up_conv
from streamad.models.image.dsr.quantizer import VectorQuantizer

__all__ = ["SubspaceRestriction"]


class SubspaceRestriction(nn.Module):
    """``(features (N, C, h, w), quantiser) -> (restricted (N, C, h, w) before quantisation, its quantisation)``.

    Args:
        channels: ``C`` = the discrete model's ``embedding_dim``. width: base width ``w`` (anomalib: 64).
    """

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        w = int(width)
        self.encode = nn.Sequential(double_conv(channels, w), nn.MaxPool2d(2), double_conv(w, 2 * w),
                                    nn.MaxPool2d(2), double_conv(2 * w, 4 * w))
        self.decode = nn.Sequential(up_conv(4 * w, 2 * w), double_conv(2 * w, 2 * w), up_conv(2 * w, w),
                                    double_conv(w, w), nn.Conv2d(w, channels, 1))

    def forward(self, features: torch.Tensor, quantiser: VectorQuantizer) -> tuple[torch.Tensor, torch.Tensor]:
        restricted = self.decode(self.encode(features))
        return restricted, quantiser(restricted)
