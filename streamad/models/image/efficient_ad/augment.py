"""EfficientAD's augmentation of the autoencoder's training image (paper Sec. 3.3; anomalib
``EfficientAdModel.choose_random_aug_image``): one of brightness, contrast or saturation, chosen at random, with a
factor drawn uniformly from ``[0.8, 1.2]`` (torchvision's ``adjust_*`` formulas, written out)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["random_color_jitter", "grayscale"]


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, h, w)`` RGB in 0-1 -> ``(N, 1, h, w)`` luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B)."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def random_color_jitter(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """``(N, 3, h, w)`` float32 RGB in 0-1 -> the same batch with one random photometric change (clamped to 0-1).

    Args:
        x: the images. rng: picks the change and its factor in ``[0.8, 1.2]``.
    """
    factor = float(rng.uniform(0.8, 1.2))
    kind = int(rng.integers(0, 3))
    if kind == 0:  # brightness
        out = x * factor
    elif kind == 1:  # contrast: blend with the mean grey of each image
        out = factor * x + (1.0 - factor) * grayscale(x).mean((1, 2, 3), keepdim=True)
    else:  # saturation: blend with each pixel's grey
        out = factor * x + (1.0 - factor) * grayscale(x)
    return out.clamp(0.0, 1.0)
