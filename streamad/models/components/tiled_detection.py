"""Run a fixed-input-size detector on overlapping tiles of a large frame, so that small (far) objects keep enough
network pixels to be found: SAHI's slicing-aided inference (Akyon, Altinuc, Temizel, "Slicing Aided Hyper Inference
and Fine-tuning for Small Object Detection", ICIP 2022): the whole frame once (large objects), plus tiles at a
guaranteed scale, merged by per-class non-maximum suppression.

The unit that carries across cameras is the *scale*: network input pixels per frame pixel. CenterNet's input is fixed
at 512x512, so a 360x240 Ped2 frame is enlarged (1.4-2.1x) but a 1920x1080 frame is shrunk 0.27-0.47x, and a person
60 px tall in it reaches the network 16-28 px tall, below what the detector finds
(``benchmarks/person_recall.py`` measures recall of persons by box height). ``min_scale`` 1.0 tiles any frame
larger than the input so that no frame pixel is shrunk; a frame that fits is run whole, exactly as without tiling.
"""

from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

__all__ = ["Detector", "tile_grid", "merge_detections", "TiledDetector"]

#: ``(image (H, W, 3) uint8 RGB, score_thresh) -> (boxes (M, 4) float32 xyxy, scores (M,) float32, labels (M,) int64)``
Detector = Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray, np.ndarray]]


def _starts(length: int, tile: int, step: int) -> list[int]:
    """Tile origins along one axis: ``0, step, ...`` and the last one flush with the end."""
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / step) + 1
    return sorted({min(i * step, length - tile) for i in range(n)})


def tile_grid(height: int, width: int, tile: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Square tiles covering a frame, neighbours overlapping by at least ``overlap`` of a tile.

    Args:
        height, width: the frame's size in pixels. tile: the tile side in frame pixels (>= 1).
        overlap: share of the tile side two neighbouring tiles have in common, ``0 <= overlap < 1``.

    Returns:
        ``(x0, y0, x1, y1)`` tiles in frame pixels, row by row; a side shorter than ``tile`` is one tile that long.

    Raises:
        ValueError: ``tile < 1`` or ``overlap`` outside ``[0, 1)``.
    """
    if tile < 1 or not 0 <= overlap < 1:
        raise ValueError(f"tile must be >= 1 pixel and overlap in [0, 1), got tile {tile}, overlap {overlap}")
    step = max(1, int(round(tile * (1 - overlap))))
    return [(x, y, min(x + tile, width), min(y + tile, height))
            for y in _starts(height, tile, step) for x in _starts(width, tile, step)]


def merge_detections(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                     iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class non-maximum suppression (OpenCV ``NMSBoxesBatched``), in decreasing score order.

    Args:
        boxes: ``(M, 4) float32`` xyxy pixels. scores: ``(M,) float32``. labels: ``(M,) int64`` class ids.
        iou: boxes of one class overlapping a higher-scored one by more than this intersection over union go.

    Returns:
        The kept ``boxes, scores, labels``, highest score first.
    """
    if len(boxes) == 0:
        return boxes, scores, labels
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float64)
    keep = np.asarray(cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.astype(float).tolist(), labels.tolist(), 0.0,
                                              iou), np.int64).reshape(-1)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return boxes[keep], scores[keep], labels[keep]


class TiledDetector:
    """A fixed-input detector run on the whole frame and, when the frame is larger than ``input_size / min_scale``,
    on overlapping tiles of that side; detections merged by per-class NMS.

    Tile detections that touch a tile edge inside the frame are dropped (the object is cut there; it is whole in a
    neighbouring tile when it is smaller than the overlap, and the whole-frame pass finds it when it is large).

    Args:
        detector: the detector (see :data:`Detector`), e.g.
            :class:`~streamad.models.components.centernet.CenterNetDetector`.
        input_size: the detector's input side in pixels (CenterNet: 512).
        min_scale: least network pixels per frame pixel a tile guarantees (1.0: no frame pixel is shrunk).
        overlap: share of a tile side neighbouring tiles share. iou: NMS overlap of duplicates.

    Raises:
        ValueError: ``min_scale <= 0``, ``overlap`` outside ``[0, 1)`` or ``iou`` outside ``(0, 1]``.
    """

    def __init__(self, detector: Detector, input_size: int, min_scale: float, overlap: float = 0.2,
                 iou: float = 0.5) -> None:
        if min_scale <= 0 or not 0 <= overlap < 1 or not 0 < iou <= 1:
            raise ValueError(f"min_scale must be > 0, overlap in [0, 1) and iou in (0, 1], got {min_scale}, "
                             f"{overlap}, {iou}")
        self.detector = detector
        self.tile = max(1, int(round(input_size / min_scale)))
        self.overlap = overlap
        self.iou = iou

    def tiles(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """The tiles of a ``height`` x ``width`` frame (none when the frame fits one tile: it is run whole)."""
        if height <= self.tile and width <= self.tile:
            return []
        return tile_grid(height, width, self.tile, self.overlap)

    def __call__(self, image: np.ndarray, score_thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detections of ``image`` (``(H, W, 3) uint8 RGB``) with score ``>= score_thresh``; the same as the
        detector's own when the frame fits one tile.

        Returns:
            ``boxes (M, 4) float32`` xyxy frame pixels, ``scores (M,) float32``, ``labels (M,) int64``, highest
            score first.
        """
        h, w = image.shape[:2]
        found = [self.detector(image, score_thresh)]
        tiles = self.tiles(h, w)
        if not tiles:
            return found[0]
        for x0, y0, x1, y1 in tiles:
            b, s, lab = self.detector(np.ascontiguousarray(image[y0:y1, x0:x1]), score_thresh)
            b = b + np.array([x0, y0, x0, y0], np.float32)
            cut = (((b[:, 0] <= x0 + 1) & (x0 > 0)) | ((b[:, 1] <= y0 + 1) & (y0 > 0))
                   | ((b[:, 2] >= x1 - 2) & (x1 < w)) | ((b[:, 3] >= y1 - 2) & (y1 < h)))
            found.append((b[~cut], s[~cut], lab[~cut]))
        boxes, scores, labels = (np.concatenate(parts) for parts in zip(*found))
        return merge_detections(boxes.astype(np.float32), scores.astype(np.float32), labels.astype(np.int64),
                                self.iou)
