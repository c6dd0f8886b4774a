"""R-KDE's region step: anomalib's ``RegionExtractor`` (``stage="rcnn"``) with the project's CenterNet COCO detector
in place of torchvision's Faster R-CNN, plus a fallback for images on which no box survives the filters.

anomalib runs Faster R-CNN with its own score threshold at ``roi_score_threshold`` (0.001) and no class-wise NMS,
then ``post_process_box_predictions``: drop boxes narrower or lower than ``min_size`` pixels
(``remove_small_boxes``), NMS over all boxes together at ``iou_threshold`` (0.3), keep the
``max_detections_per_image`` (100) best. Here the same filters run on CenterNet's 100 detections
(:class:`~streamad.models.components.centernet.CenterNetDetector`; its scores are low by design, and at 0.001
nearly all of its 100 peaks pass, most of them low-confidence boxes that are not objects, as Faster R-CNN's at 0.001
are). R-KDE scores regions, not objects, so any box that survives is a region.

Fallback (streamad; anomalib has none, an image without boxes gets no score there): when no box survives,
``grid`` gives the ``grid x grid`` cells of the image, ``image`` one box around the whole image.

Sources (``source``, streamad): ``detector`` (the above, anomalib), ``grid`` (the ``grid x grid`` cells of every
image, no detector) or ``detector_and_grid`` (the detections and the cells).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from streamad.models.components.centernet import CenterNetDetector

__all__ = ["RegionProposer", "fallback_boxes", "filter_proposals"]

Fallback = Literal["grid", "image"]
Source = Literal["detector", "grid", "detector_and_grid"]


def filter_proposals(boxes: np.ndarray, scores: np.ndarray, min_size: float, iou_threshold: float,
                     max_detections: int) -> np.ndarray:
    """anomalib ``RegionExtractor.post_process_box_predictions`` on one image.

    Args:
        boxes: ``(M, 4) float32`` xyxy in pixels. scores: ``(M,) float32`` detector confidences.
        min_size: boxes whose width or height is below this (pixels) are dropped.
        iou_threshold: class-agnostic NMS threshold. max_detections: boxes kept at most (best scores first).

    Returns:
        ``(K, 4) float32`` kept boxes, in decreasing score order.
    """
    from torchvision.ops import nms, remove_small_boxes  # on use: it imports torch._dynamo (2 s)

    b = torch.from_numpy(np.asarray(boxes, np.float32).reshape(-1, 4))
    s = torch.from_numpy(np.asarray(scores, np.float32).reshape(-1))
    keep = remove_small_boxes(b, min_size)
    b, s = b[keep], s[keep]
    keep = nms(b, s, iou_threshold)[:max_detections]
    return b[keep].numpy().astype(np.float32)


def fallback_boxes(size: tuple[int, int], fallback: Fallback, grid: int) -> np.ndarray:
    """Boxes of an image of ``size = (h, w)`` pixels on which no proposal survives.

    Returns:
        ``(grid * grid, 4)`` (``grid``: the cells, row by row) or ``(1, 4)`` (``image``) ``float32`` xyxy with
        inclusive pixel extents (``x2 = w - 1`` for the last column).
    """
    h, w = size
    if fallback == "image":
        return np.array([[0, 0, w - 1, h - 1]], np.float32)
    ys, xs = np.linspace(0, h, grid + 1), np.linspace(0, w, grid + 1)
    cells = [[xs[j], ys[i], xs[j + 1] - 1, ys[i + 1] - 1] for i in range(grid) for j in range(grid)]
    return np.round(np.array(cells)).astype(np.float32)


class RegionProposer:
    """Region boxes of one image, see the module doc.

    Args:
        weights: CenterNet ONNX (or IR) file (``../shared/models/centernet.onnx``); unused (may be ``None``) with
            ``source="grid"``.
        score_threshold: detector confidence kept at least (anomalib ``roi_score_threshold`` 0.001).
        min_size: smallest box side kept, pixels of the image given (anomalib ``min_box_size`` 25).
        iou_threshold: NMS IoU (anomalib 0.3). max_detections: boxes per image at most (anomalib 100).
        fallback: ``grid`` or ``image`` (module doc). grid: cells per side of the grid regions and fallback.
        source: ``detector``, ``grid`` or ``detector_and_grid`` (module doc).
        threads: OpenVINO CPU threads per detector call.

    Raises:
        ModelError: the detector file is missing or unreadable (the message names the path).
        ValueError: no ``weights`` for a ``source`` that needs the detector.
    """

    def __init__(self, weights: str | Path | None, score_threshold: float = 0.001, min_size: float = 25,
                 iou_threshold: float = 0.3, max_detections: int = 100, fallback: Fallback = "grid", grid: int = 4,
                 source: Source = "detector", threads: int = 1) -> None:
        self.source: Source = source
        self.detector: CenterNetDetector | None = None
        if source != "grid":
            if weights is None:
                raise ValueError(f"R-KDE regions {source!r} need the detector's weights file")
            self.detector = CenterNetDetector(weights, threads=threads)
            importlib.import_module("torchvision.ops")  # for filter_proposals, here where the pipeline is built:
                                                        # the first frame does not wait the 2 s its import takes
        self.score_threshold = score_threshold
        self.min_size = min_size
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.fallback: Fallback = fallback
        self.grid = grid

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """Regions of ``image`` (``(h, w, 3) uint8 RGB``).

        Returns:
            ``(boxes (K, 4) float32`` xyxy in the image's pixels, ``K >= 1``, detections first; ``detected``: some
            of them are detector boxes)``.
        """
        cells = fallback_boxes(image.shape[:2], "grid", self.grid)
        if self.detector is None:
            return cells, False
        boxes, scores, _ = self.detector(image, self.score_threshold)
        kept = filter_proposals(boxes, scores, self.min_size, self.iou_threshold, self.max_detections)
        if self.source == "detector_and_grid":
            return np.concatenate([kept, cells]), len(kept) > 0
        if len(kept):
            return kept, True
        return fallback_boxes(image.shape[:2], self.fallback, self.grid), False
