"""Per-stream reuse of a region attribute between consecutive clips, so the network behind it (MoveNet for
``pose_features``, the appearance CNN for ``deep_features``) runs once per detection, or once every few detections
of the same object, instead of once per clip.

* A box identical to one of the previous clip's (the same float32 bytes: a detection that ``object_regions``
  reused with ``detect_every`` > 1) keeps the value computed for it then.
* With ``refresh_every`` N > 1 (streamad extension), a new box that overlaps one of the previous clip's boxes by an
  intersection over union of at least ``iou`` (the same object, detected again a little further on; greedy
  one-to-one matching by IoU) keeps that box's value too, until the value has been carried over N - 1 detections;
  then it is computed afresh. The caller stores values that do not depend on the box's position (``pose_features``:
  keypoints relative to the box), so a carried value is the object's attribute as last measured.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["BoxReuse"]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` intersection over union of xyxy boxes (pixels, inclusive extents)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt + 1, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0] + 1) * (x[:, 3] - x[:, 1] + 1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


class BoxReuse:
    """The values of the previous clip's boxes; one instance per stream and attribute (module doc).

    Args:
        shape: shape of one box's value (``(17, 3)`` keypoints, ``(D,)`` a vector).
        refresh_every: compute a tracked object's value at least on every Nth detection (1 = exact reuse only).
        iou: least IoU of a new box with a previous one to count as the same object (``refresh_every`` > 1).

    ``reuse(boxes, compute)`` returns ``(M, *shape) float32`` values of the ``(M, 4)`` xyxy boxes (pixels), calling
    ``compute(new_boxes) -> (K, *shape)`` only for the boxes that need it (not at all when none do), and then
    remembers exactly this clip's boxes. ``hits`` / ``misses`` count boxes reused / computed.

    Raises:
        ValueError: ``refresh_every`` below 1 or ``iou`` outside ``(0, 1]``.
    """

    def __init__(self, shape: tuple[int, ...], refresh_every: int = 1, iou: float = 0.5) -> None:
        if refresh_every < 1 or not 0 < iou <= 1:
            raise ValueError(f"refresh_every must be >= 1 and iou in (0, 1], got {refresh_every}, {iou}")
        self.shape, self.refresh_every, self.iou = tuple(shape), refresh_every, iou
        self._boxes = np.zeros((0, 4), np.float32)
        self._values = np.zeros((0, *self.shape), np.float32)
        self._ages = np.zeros(0, np.int64)  # detections a value has been carried over
        self.hits = 0
        self.misses = 0

    def _sources(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per new box: the index of the previous box whose value it keeps (-1: compute), and its new age."""
        src = np.full(len(boxes), -1, np.int64)
        ages = np.zeros(len(boxes), np.int64)
        if not len(self._boxes) or not len(boxes):
            return src, ages
        same = (boxes[:, None, :] == self._boxes[None]).all(-1)
        for i, j in zip(*np.nonzero(same)):
            if src[i] < 0:
                src[i], ages[i] = j, self._ages[j]
        if self.refresh_every > 1:
            iou = _iou(boxes, self._boxes)
            iou[src >= 0] = 0.0
            iou[:, src[src >= 0]] = 0.0
            iou[:, self._ages + 1 >= self.refresh_every] = 0.0
            for flat in np.argsort(-iou, axis=None):
                i, j = divmod(int(flat), len(self._boxes))
                if iou[i, j] < self.iou:
                    break
                if src[i] < 0 and j not in src:
                    src[i], ages[i] = j, self._ages[j] + 1
        return src, ages

    def reuse(self, boxes: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        boxes = np.ascontiguousarray(np.asarray(boxes, np.float32).reshape(-1, 4))
        src, ages = self._sources(boxes)
        known = src >= 0
        out = np.zeros((len(boxes), *self.shape), np.float32)
        out[known] = self._values[src[known]]
        if (~known).any():
            out[~known] = compute(boxes[~known])
        self.hits += int(known.sum())
        self.misses += int((~known).sum())
        self._boxes, self._values, self._ages = boxes, out.copy(), ages
        return out
