"""Recall of a detector by object size without labelled boxes: known objects made far and small.

No dataset here labels every person, so the reference is what the detector finds with confidence on a frame where the
people are near and large; :func:`far_scene` shrinks the frame by a factor and repeats it over a canvas of the
original size (a camera seeing a larger scene from further away), shrinking and repeating the reference boxes with
it, and :func:`match_boxes` says which of them a detector still finds. ``benchmarks/person_recall.py`` reports the
recall by box height for CenterNet whole and in tiles.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["far_scene", "box_iou", "match_boxes"]


def far_scene(image: np.ndarray, boxes: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame shrunk by ``factor`` and tiled over a canvas of its own size, with the boxes that lie whole in it.

    Args:
        image: ``(H, W, 3) uint8`` frame. boxes: ``(N, 4) float32`` xyxy reference boxes in its pixels.
        factor: shrink factor, ``0 < factor <= 1`` (1 returns the inputs).

    Returns:
        ``(H, W, 3) uint8`` canvas and ``(M, 4) float32`` boxes: each copy's shrunk boxes that end inside the canvas.

    Raises:
        ValueError: ``factor`` outside ``(0, 1]``.
    """
    if not 0 < factor <= 1:
        raise ValueError(f"factor must be in (0, 1], got {factor}")
    h, w = image.shape[:2]
    if factor == 1:
        return image, boxes.astype(np.float32)
    small = cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    reps = math.ceil(1 / factor)
    canvas = np.ascontiguousarray(np.tile(small, (reps, reps, 1))[:h, :w])
    copies = [boxes * factor + np.array([rx * sw, ry * sh, rx * sw, ry * sh], np.float32)
              for ry in range(reps) for rx in range(reps)]
    out = np.concatenate(copies).astype(np.float32) if copies else np.zeros((0, 4), np.float32)
    return canvas, out[(out[:, 2] < w) & (out[:, 3] < h)]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b)) float`` intersection over union of ``(N, 4)`` and ``(M, 4)`` xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None] - inter + 1e-9)


def match_boxes(ref: np.ndarray, det: np.ndarray, iou: float = 0.5) -> tuple[np.ndarray, int]:
    """Which reference boxes the detections find: greedy one-to-one matching, best overlap first.

    Args:
        ref: ``(N, 4)`` reference boxes. det: ``(M, 4)`` detections (one class). iou: least overlap of a match.

    Returns:
        ``(N,) bool`` found per reference box, and the number of detections that match no reference box.
    """
    found = np.zeros(len(ref), bool)
    if len(ref) == 0 or len(det) == 0:
        return found, len(det)
    m = box_iou(ref, det)
    used = np.zeros(len(det), bool)
    for r, d in sorted(zip(*np.nonzero(m >= iou)), key=lambda rd: -m[rd]):
        if not found[r] and not used[d]:
            found[r] = used[d] = True
    return found, int((~used).sum())
