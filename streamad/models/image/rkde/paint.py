"""R-KDE's anomaly map: region scores painted onto the image (anomalib ``boxes_to_anomaly_maps``: each pixel gets
the largest score of the boxes that cover it, 0 where none does)."""

from __future__ import annotations

import numpy as np

__all__ = ["paint_boxes"]


def paint_boxes(boxes: np.ndarray, scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The ``(h, w) float32`` map of ``size`` in which each pixel holds the largest score of the boxes covering it.

    Args:
        boxes: ``(M, 4)`` xyxy in pixels, inclusive extents: pixel column ``x`` is covered when
            ``round(x1) <= x <= round(x2)`` (rows alike); parts outside the image are ignored.
        scores: ``(M,)`` box scores (higher = more anomalous).
        size: ``(h, w)`` of the map in pixels.

    Returns:
        The map; 0 at pixels no box covers (anomalib initialises its maps with zeros).

    Raises:
        ValueError: ``boxes`` and ``scores`` differ in length.
    """
    b = np.round(np.asarray(boxes, np.float64).reshape(-1, 4)).astype(np.int64)
    s = np.asarray(scores, np.float32).reshape(-1)
    if len(b) != len(s):
        raise ValueError(f"paint_boxes: {len(b)} boxes but {len(s)} scores")
    h, w = size
    out = np.zeros((h, w), np.float32)
    for i in np.argsort(s, kind="stable"):  # ascending: a higher score paints over a lower one
        x1, y1, x2, y2 = max(b[i, 0], 0), max(b[i, 1], 0), min(b[i, 2], w - 1), min(b[i, 3], h - 1)
        if x1 <= x2 and y1 <= y2:
            out[y1:y2 + 1, x1:x2 + 1] = s[i]
    return out
