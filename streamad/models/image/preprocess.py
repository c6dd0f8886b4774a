"""Image preprocessing that every image model's graph starts with, and the same resize for training data.

An image model's network takes ``(N, H, W, 3) uint8`` RGB frames of any size (as decoded) and starts with
:class:`Preprocess`: channels first, float, bilinear resize to the model's ``input_size`` (half-pixel centres, no
antialiasing, the resize ONNX and OpenVINO export exactly, as anomalib's exporter disables antialiasing). The
backbone's own normalisation follows inside :class:`~streamad.models.components.backbone.FeatureExtractor`. So an
exported IR takes decoded frames directly and the same code path runs in torch and in OpenVINO.

:func:`resize_image` applies the same resize to one frame (rounded back to uint8) so that training images can be
stored at the model's size; :func:`resize_mask` resizes ground-truth masks with nearest neighbours, as anomalib's
transforms resize masks with the image.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Preprocess", "resize_image", "resize_mask", "as_batch"]


class Preprocess(nn.Module):
    """``(N, H, W, 3) uint8`` -> ``(N, 3, h, w) float32`` in 0-255, ``(h, w) = size``.

    Args:
        size: model input ``(height, width)`` in pixels.
    """

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).to(torch.float32)
        # an identity when the frame already has the model's size (half-pixel bilinear at scale 1 is exact)
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=False)


def as_batch(images: np.ndarray) -> np.ndarray:
    """One ``(H, W, 3)`` frame or a ``(N, H, W, 3)`` batch as a contiguous ``(N, H, W, 3) uint8`` batch.

    Raises:
        ValueError: not uint8 RGB of that shape.
    """
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) or (N, H, W, 3) uint8 RGB images, got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3) uint8`` -> ``(h, w, 3) uint8`` with :class:`Preprocess`'s resize, rounded to integers."""
    x = torch.from_numpy(as_batch(image))
    with torch.inference_mode():
        y = Preprocess(size)(x)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool/0-1 mask -> ``(h, w) bool``, nearest neighbour."""
    m = np.asarray(mask).astype(np.uint8)
    if m.shape == tuple(size):
        return m > 0
    return cv2.resize(m, (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST) > 0
