"""EfficientAD's patch description network (PDN; Batzner et al., arXiv 2303.14535, Fig. 2 and appendix; anomalib
``SmallPatchDescriptionNetwork`` / ``MediumPatchDescriptionNetwork``), the architecture of teacher and student.

Four (S) or six (M) convolutions and two 2x2 average pools: every output vector describes a 33x33 patch of the
input. Without ``padding`` an ``(h, w)`` input gives ``(h // 4 - 8, w // 4 - 8)`` features (anomalib's default);
with it ``(h // 4, w // 4)``-ish.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PatchDescriptionNetwork", "ImageNetNorm", "MODEL_SIZES"]

MODEL_SIZES = ("small", "medium")


class ImageNetNorm(nn.Module):
    """``(N, 3, h, w) float32`` RGB in 0-1 -> ImageNet mean/std normalised (anomalib ``imagenet_norm_batch``)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PatchDescriptionNetwork(nn.Module):
    """PDN: ``(N, 3, h, w) float32`` RGB in 0-1 -> ``(N, out_channels, h', w')`` patch descriptors.

    Args:
        out_channels: descriptor channels (teacher: ``teacher_out_channels``, 384 in the paper; student: twice that).
        size: ``small`` (EfficientAD-S: 128-256-256 channels) or ``medium`` (EfficientAD-M: 256-512-512-512 and a
            final 1x1).
        padding: zero-pad the convolutions and pools as anomalib's ``padding=True`` (default ``False``).

    Raises:
        ValueError: an unknown ``size``.
    """

    def __init__(self, out_channels: int, size: Literal["small", "medium"] = "small", padding: bool = False) -> None:
        super().__init__()
        if size not in MODEL_SIZES:
            raise ValueError(f"efficient_ad: model_size must be one of {MODEL_SIZES}, got {size!r}")
        p = 1 if padding else 0
        w1, w2 = (128, 256) if size == "small" else (256, 512)
        self.norm = ImageNetNorm()
        self.conv1 = nn.Conv2d(3, w1, 4, padding=3 * p)
        self.pool1 = nn.AvgPool2d(2, 2, padding=p)
        self.conv2 = nn.Conv2d(w1, w2, 4, padding=3 * p)
        self.pool2 = nn.AvgPool2d(2, 2, padding=p)
        if size == "small":
            self.body = nn.Sequential(nn.Conv2d(w2, w2, 3, padding=p), nn.ReLU(), nn.Conv2d(w2, out_channels, 4))
        else:
            self.body = nn.Sequential(nn.Conv2d(w2, w2, 1), nn.ReLU(), nn.Conv2d(w2, w2, 3, padding=p), nn.ReLU(),
                                      nn.Conv2d(w2, out_channels, 4), nn.ReLU(),
                                      nn.Conv2d(out_channels, out_channels, 1))
        self.out_channels = int(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(F.relu(self.conv1(self.norm(x))))
        x = self.pool2(F.relu(self.conv2(x)))
        return self.body(x)
