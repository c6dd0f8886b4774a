"""SSPCAB, the self-supervised predictive convolutional attentive block (Ristea et al., "Self-Supervised Predictive
Convolutional Attentive Block for Anomaly Detection", CVPR 2022, arXiv 2111.09099; anomalib
``components.layers.sspcab.SSPCAB`` / ``AttentionModule``), optionally DRAEM's fifth reconstructive encoder block.

Four ``k x k`` convolutions read the corners of a ``(2k + 2d + 1)``-wide receptive field around each position whose
centre they do not see (the masked convolution); their sum goes through a squeeze-and-excitation channel attention
(mean over positions, ``C -> C / r -> C`` with ReLU and sigmoid). Trained with ``MSE(output, input)`` so that the
block learns to predict the masked centre (DRAEM adds it times ``sspcab_lambda``, anomalib 0.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Sspcab"]


class Sspcab(nn.Module):
    """``(N, C, H, W) -> (N, C, H, W)``.

    Args:
        channels: ``C``. kernel_size: ``k`` (1). dilation: ``d`` (1). reduction_ratio: ``r`` of the attention (8).
    """

    def __init__(self, channels: int, kernel_size: int = 1, dilation: int = 1, reduction_ratio: int = 8) -> None:
        super().__init__()
        self.pad = kernel_size + dilation
        self.crop = kernel_size + 2 * dilation + 1
        self.corners = nn.ModuleList(nn.Conv2d(channels, channels, kernel_size) for _ in range(4))
        self.fc1 = nn.Linear(channels, max(channels // reduction_ratio, 1))
        self.fc2 = nn.Linear(max(channels // reduction_ratio, 1), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, c = self.pad, self.crop
        x = F.pad(x, (p, p, p, p))
        views = (x[..., :-c, :-c], x[..., :-c, c:], x[..., c:, :-c], x[..., c:, c:])
        y = sum(conv(v) for conv, v in zip(self.corners, views))
        att = torch.sigmoid(self.fc2(F.relu(self.fc1(y.mean(dim=(2, 3))))))
        return y * att[:, :, None, None]
