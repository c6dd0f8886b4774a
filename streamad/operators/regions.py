"""``foreground_regions``: AI-VAD's foreground boxes from the pixel difference of a clip's first and last frame."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from streamad.frames import Clip, Regions
from streamad.parts import Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["ForegroundRegions", "foreground_boxes", "filter_boxes", "box_area"]


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of ``(M, 4)`` xyxy boxes in square pixels, ``(x2 - x1) * (y2 - y1)`` as torchvision ``box_area``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def foreground_boxes(first: np.ndarray, last: np.ndarray, kernel_size: int = 3, binary_threshold: int = 18,
                     exclude: np.ndarray | None = None, dilate: int = 0) -> np.ndarray:
    """Boxes around the connected components of the thresholded frame difference.

    Follows anomalib ``RegionExtractor.add_foreground_boxes`` (AI-VAD): Gaussian blur of both frames with a
    ``kernel_size`` kernel (sigma from the kernel size, as torchvision/OpenCV), absolute difference, grayscale
    (ITU-R 601 weights), binary threshold ``> binary_threshold`` on the 0-255 scale, pixels inside ``exclude`` boxes
    (grown by 2 px) cleared, then one box per 8-connected component (``masks_to_boxes`` convention: inclusive pixel
    extents, x2 = max x, y2 = max y).

    Args:
        first, last: ``(H, W, 3) uint8 RGB`` frames.
        kernel_size: odd Gaussian kernel size in pixels.
        binary_threshold: 0-255 threshold on the grayscale difference.
        exclude: ``(K, 4)`` xyxy boxes already found by a detector, or ``None``.
        dilate: streamad option (0 = off, anomalib behaviour): dilate the foreground mask with a square of this
            many pixels before labelling, which joins the fragments of one moving object.

    Returns:
        ``(M, 4) float32`` xyxy boxes in pixels.
    """
    k = (kernel_size, kernel_size)
    a = cv2.GaussianBlur(first, k, 0).astype(np.int16)
    b = cv2.GaussianBlur(last, k, 0).astype(np.int16)
    diff = np.abs(a - b).astype(np.float32)
    gray = diff[..., 0] * 0.2989 + diff[..., 1] * 0.587 + diff[..., 2] * 0.114
    fg = (gray > binary_threshold).astype(np.uint8)
    if exclude is not None and len(exclude):
        h, w = fg.shape
        for x1, y1, x2, y2 in np.asarray(exclude):
            fg[max(0, int(y1) - 2): min(h, int(y2) + 3), max(0, int(x1) - 2): min(w, int(x2) + 3)] = 0
    if dilate > 0:
        fg = cv2.dilate(fg, np.ones((dilate, dilate), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return np.zeros((0, 4), np.float32)
    s = stats[1:]
    x1, y1 = s[:, cv2.CC_STAT_LEFT], s[:, cv2.CC_STAT_TOP]
    x2 = x1 + s[:, cv2.CC_STAT_WIDTH] - 1
    y2 = y1 + s[:, cv2.CC_STAT_HEIGHT] - 1
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)


def filter_boxes(regions: Regions, min_bbox_area: float = 100, max_bbox_overlap: float = 0.65,
                 persons_only: bool = False, person_label: int = 1) -> Regions:
    """Filter regions as anomalib ``RegionExtractor.post_process_bbox_detections``.

    Keeps persons only if asked (``labels == person_label``; foreground boxes have label 0), then boxes with
    ``area > min_bbox_area`` (square pixels), then drops every box whose intersection with a larger kept box,
    divided by its own area, exceeds ``max_bbox_overlap``.
    """
    keep = np.ones(len(regions), bool)
    if persons_only:
        keep &= regions.labels == person_label
    keep &= box_area(regions.boxes) > min_bbox_area
    r = _subset(regions, keep)
    if len(r) < 2:
        return r
    order = np.argsort(-box_area(r.boxes), kind="stable")
    b = r.boxes[order]
    areas = box_area(b)
    kept: list[int] = []
    for i in range(len(b)):
        if kept:
            k = b[kept]
            iw = np.clip(np.minimum(k[:, 2], b[i, 2]) - np.maximum(k[:, 0], b[i, 0]), 0, None)
            ih = np.clip(np.minimum(k[:, 3], b[i, 3]) - np.maximum(k[:, 1], b[i, 1]), 0, None)
            if np.any(iw * ih / max(areas[i], 1e-6) > max_bbox_overlap):
                continue
        kept.append(i)
    idx = np.sort(order[kept])
    return _subset(r, idx)


def _subset(r: Regions, idx: np.ndarray) -> Regions:
    return Regions(r.boxes[idx], r.scores[idx], r.labels[idx])


@OPERATORS.register("foreground_regions")
class ForegroundRegions(Operator):
    """Regions of a clip from AI-VAD's foreground detection (anomalib ``RegionExtractor`` with
    ``enable_foreground_detections`` and no detector): frame difference of the clip's first and last frame,
    connected components, then the area and overlap filters. Foreground boxes get label 0 and score 0.5.

    Regions already on the clip (from a detector operator that ran before) are kept, and the foreground boxes are
    added outside them, as in AI-VAD.

    Input/output: :class:`Clip`; sets ``clip.regions`` (boxes in the clip's frame pixels).
    """

    class Config(PartConfig):
        kind: Literal["foreground_regions"] = "foreground_regions"
        foreground_kernel_size: int = Field(3, ge=1)
        foreground_binary_threshold: int = Field(18, ge=0, le=255)
        min_bbox_area: float = Field(100, ge=0)
        max_bbox_overlap: float = Field(0.65, ge=0, le=1)
        dilate: int = Field(0, ge=0)

    def process(self, clip: Clip) -> list[Clip]:
        c = self.config
        prior = clip.regions if clip.regions is not None else Regions.empty()
        fg = foreground_boxes(clip.first.image, clip.last.image, c.foreground_kernel_size,
                              c.foreground_binary_threshold, exclude=prior.boxes, dilate=c.dilate)
        regions = Regions(
            boxes=np.concatenate([prior.boxes, fg]).astype(np.float32),
            scores=np.concatenate([prior.scores, np.full(len(fg), 0.5, np.float32)]).astype(np.float32),
            labels=np.concatenate([prior.labels, np.zeros(len(fg), np.int64)]).astype(np.int64),
        )
        clip.regions = filter_boxes(regions, c.min_bbox_area, c.max_bbox_overlap)
        return [clip]
