"""EfficientAD's autoencoder (Batzner et al., arXiv 2303.14535, Table 6-7; anomalib ``EncConv`` / ``DecConv`` /
``AutoEncoder``): it predicts the teacher's features of the whole image through a 64-value bottleneck, so it sees
logical anomalies (wrong arrangement) that the local student misses.

Encoder: five 4x4 stride-2 convolutions (32, 32, 64, 64, 64 channels, ReLU) and a last convolution without ReLU
whose kernel covers the remaining grid, so the code is ``(N, 64, 1, 1)``. anomalib fixes that kernel to 8 (for its
256x256 input); here it is ``(h // 32, w // 32)``, the same at 256x256 and valid at the smaller sizes used on CPU.
Decoder: seven bilinear upsamplings each followed by a 4x4 (then two 3x3) convolution with ReLU and dropout 0.2,
a last 3x3 convolution to the teacher's channels, at the teacher's output grid. Grid sizes below 1 (inputs under
128 pixels) are raised to 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from streamad.models.image.efficient_ad.pdn import ImageNetNorm

__all__ = ["AutoEncoder"]


class AutoEncoder(nn.Module):
    """``(N, 3, h, w) float32`` RGB in 0-1 -> ``(N, out_channels, h // 4 - 8, w // 4 - 8)`` (``padding``:
    ``(ceil(h / 4), ceil(w / 4))``), the teacher's grid.

    Args:
        out_channels: the teacher's channels. size: the input ``(h, w)`` (at least 32x32). padding: as the PDN's.
    """

    def __init__(self, out_channels: int, size: tuple[int, int], padding: bool = False) -> None:
        super().__init__()
        h, w = int(size[0]), int(size[1])
        self.size = (h, w)
        self.padding = bool(padding)
        self.norm = ImageNetNorm()
        chans = [3, 32, 32, 64, 64, 64]
        self.encoder = nn.ModuleList(nn.Conv2d(a, b, 4, stride=2, padding=1) for a, b in zip(chans, chans[1:]))
        self.bottleneck = nn.Conv2d(64, 64, (max(1, h // 32), max(1, w // 32)))
        self.decoder = nn.ModuleList([nn.Conv2d(64, 64, 4, padding=2) for _ in range(6)]
                                     + [nn.Conv2d(64, 64, 3, padding=1)])
        self.head = nn.Conv2d(64, out_channels, 3, padding=1)
        self.dropout = nn.Dropout(0.2)

    def grids(self) -> list[tuple[int, int]]:
        """The seven ``(h, w)`` the decoder upsamples to (anomalib ``DecConv.forward``), the last the teacher's."""
        h, w = self.size
        last = (math.ceil(h / 4), math.ceil(w / 4)) if self.padding else (math.ceil(h / 4) - 8, math.ceil(w / 4) - 8)
        sizes = [(h // 64 - 1, w // 64 - 1), (h // 32, w // 32), (h // 16 - 1, w // 16 - 1), (h // 8, w // 8),
                 (h // 4 - 1, w // 4 - 1), (h // 2 - 1, w // 2 - 1), last]
        return [(max(1, a), max(1, b)) for a, b in sizes]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        for conv in self.encoder:
            x = F.relu(conv(x))
        x = self.bottleneck(x)  # not "code": a traced module has a .code attribute
        grids = self.grids()
        for k, conv in enumerate(self.decoder):
            x = F.relu(conv(F.interpolate(x, size=grids[k], mode="bilinear")))
            if k < 6:
                x = self.dropout(x)
        return self.head(x)
