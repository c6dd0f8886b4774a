"""Appearance (deep) features of image regions from a pretrained CNN backbone: AI-VAD's deep attribute on a CPU,
standing in for anomalib's CLIP ``DeepExtractor`` (no CLIP weights can be had offline here).

Two ways to get a region's vector, both with ``torchvision.ops.roi_align``:

* ``crop``: the region is cut out of the frame and resized to ``crop_size`` x ``crop_size`` (as AI-VAD feeds CLIP
  ``roi_align(frame, box, 224 x 224)``), the backbone runs on the batch of crops, and each requested layer's map is
  averaged over space.
* ``roi_align``: the backbone runs once on the whole frame and each layer's map is pooled inside the box
  (``roi_align`` with ``spatial_scale = 1 / stride``, ``roi_output`` x ``roi_output`` bins, then averaged).

The layer vectors are concatenated (``D`` = sum of the layers' channels) and, with ``normalize``, scaled to unit L2
norm (so that nearest-neighbour distances compare directions, as CLIP embeddings are usually compared).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from torchvision.ops import roi_align

from streamad.models.components.backbone import build_feature_extractor

__all__ = ["RegionAppearance"]


class RegionAppearance:
    """Deep feature vector of each region of a frame.

    Args:
        backbone: backbone name (:func:`~streamad.models.components.backbone.build_feature_extractor`).
        layers: backbone layers to pool (e.g. ``["layer3", "layer4"]``: 112 + 320 = 432 values for
            EfficientNet-Lite0).
        method: ``crop`` or ``roi_align`` (module doc).
        crop_size: side of the region crops in pixels (``crop``).
        roi_output: bins per side of the feature-map pooling (``roi_align``).
        normalize: scale each vector to unit L2 norm.
        context: each box is grown about its centre by this factor (clipped to the image) before its vector is
            taken: 1.5 gives the region's surroundings (a bicycle's rider and wheels, a cart's pusher) too.
        weights: local weights file of the backbone (``None``: the packaged EfficientNet-Lite0 ImageNet weights).

    Raises:
        ModelError: unknown backbone or layer, missing weights.
    """

    def __init__(self, backbone: str = "efficientnet_lite0", layers: Sequence[str] = ("layer3", "layer4"),
                 method: Literal["crop", "roi_align"] = "crop", crop_size: int = 64, roi_output: int = 2,
                 normalize: bool = True, weights: str | Path | None = None, context: float = 1.0) -> None:
        self.net = build_feature_extractor(backbone, layers, weights)
        self.method = method
        self.crop_size = crop_size
        self.roi_output = roi_output
        self.normalize = normalize
        self.context = context
        self.dims = int(sum(self.net.channels[layer] for layer in self.net.layers))

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Vectors of the ``(M, 4)`` xyxy boxes (pixels) of ``image`` (``(H, W, 3) uint8 RGB``).

        Returns:
            ``(M, D) float32``; ``(0, D)`` without boxes.
        """
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if not len(boxes):
            return np.zeros((0, self.dims), np.float32)
        if self.context != 1.0:
            h, w = image.shape[:2]
            centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) * self.context / 2
            boxes = np.clip(np.concatenate([centre - half, centre + half], axis=1), 0,
                            [w - 1, h - 1, w - 1, h - 1]).astype(np.float32)
        frame = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        rois = torch.cat([torch.zeros(len(boxes), 1), torch.from_numpy(boxes)], dim=1)
        if self.method == "crop":
            # pixel-aligned crop of [x1, x2] inclusive: roi_align with aligned=True samples pixel centres
            rois[:, 3:] += 1.0
            crops = roi_align(frame, rois, (self.crop_size, self.crop_size), spatial_scale=1.0, sampling_ratio=2,
                              aligned=True)
            maps = self.net(crops)
            parts = [maps[layer].mean(dim=(2, 3)) for layer in self.net.layers]
        else:
            rois[:, 3:] += 1.0
            maps = self.net(frame)
            parts = [roi_align(maps[layer], rois, (self.roi_output, self.roi_output),
                               spatial_scale=1.0 / self.net.strides[layer], sampling_ratio=2,
                               aligned=True).mean(dim=(2, 3)) for layer in self.net.layers]
        vec = torch.cat(parts, dim=1)
        if self.normalize:
            vec = torch.nn.functional.normalize(vec, dim=1)
        return vec.numpy().astype(np.float32)
