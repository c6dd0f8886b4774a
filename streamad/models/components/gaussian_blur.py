"""Gaussian blur of anomaly maps (anomalib ``GaussianBlur2d`` as its image models use it: ``sigma = 4``,
``kernel_size = 2 * int(4 * sigma + 0.5) + 1`` = 33, reflect border, "same" output size, normalised kernel).

The 2-D Gaussian kernel is separable, so it is applied as a vertical then a horizontal 1-D convolution: the same
result as kornia's 2-D ``filter2d`` (up to float rounding) at ``2k`` instead of ``k^2`` multiplications per pixel.
Built from ``torch.nn.functional`` ops (``pad`` reflect, ``conv2d``) that ONNX and OpenVINO export.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GaussianBlur2d", "gaussian_kernel_size"]


def gaussian_kernel_size(sigma: float) -> int:
    """anomalib's kernel size for ``sigma``: ``2 * int(4 * sigma + 0.5) + 1`` (33 for sigma 4)."""
    return 2 * int(4.0 * sigma + 0.5) + 1


class GaussianBlur2d(nn.Module):
    """Blur ``(N, C, H, W)`` float maps with a normalised Gaussian of standard deviation ``sigma`` pixels.

    Args:
        sigma: standard deviation in pixels (anomalib: 4).
        kernel_size: odd kernel size; default :func:`gaussian_kernel_size`.

    The border is reflected (``H`` and ``W`` must exceed ``kernel_size // 2``; smaller maps are padded by
    replication instead). Output has the input's shape and dtype.

    Raises:
        ValueError: ``sigma <= 0`` or an even ``kernel_size``.
    """

    def __init__(self, sigma: float = 4.0, kernel_size: int | None = None) -> None:
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"GaussianBlur2d: sigma must be > 0, got {sigma}")
        k = gaussian_kernel_size(sigma) if kernel_size is None else int(kernel_size)
        if k % 2 == 0:
            raise ValueError(f"GaussianBlur2d: kernel_size must be odd, got {k}")
        x = torch.arange(k, dtype=torch.float64) - k // 2
        g = torch.exp(-(x**2) / (2 * sigma**2))
        g = (g / g.sum()).float()
        self.sigma = float(sigma)
        self.pad = k // 2
        self.register_buffer("kernel_v", g.view(1, 1, k, 1), persistent=False)
        self.register_buffer("kernel_h", g.view(1, 1, 1, k), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = x.reshape(n * c, 1, h, w)
        mode = "reflect" if min(int(h), int(w)) > self.pad else "replicate"
        y = F.pad(y, [self.pad, self.pad, self.pad, self.pad], mode=mode)
        y = F.conv2d(F.conv2d(y, self.kernel_v), self.kernel_h)
        return y.reshape(n, c, h, w)
