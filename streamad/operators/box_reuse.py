"""Per-stream reuse of a region attribute between consecutive clips: a box identical to one of the previous clip's
(a detection that ``object_regions`` reused with ``detect_every`` > 1) keeps the value computed for it then, so the
network behind the attribute (MoveNet for ``pose_features``, the appearance CNN for ``deep_features``) runs once
per detection instead of once per clip. Boxes match exactly (the same float32 bytes), never approximately."""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["BoxReuse"]


class BoxReuse:
    """The values of the previous clip's boxes, by box; one instance per stream and attribute.

    ``reuse(boxes, compute)`` returns ``(M, *shape) float32`` values of the ``(M, 4)`` xyxy boxes (pixels): the
    previous clip's value for a box it had too, ``compute(new_boxes) -> (K, *shape)`` for the others (called only
    when there are some). It then remembers exactly this clip's boxes. ``hits`` / ``misses`` count boxes reused /
    computed (for benchmarks).
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)
        self._previous: dict[bytes, np.ndarray] = {}
        self.hits = 0
        self.misses = 0

    def reuse(self, boxes: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        boxes = np.ascontiguousarray(np.asarray(boxes, np.float32).reshape(-1, 4))
        keys = [b.tobytes() for b in boxes]
        known = np.array([k in self._previous for k in keys], bool)
        out = np.zeros((len(boxes), *self.shape), np.float32)
        if known.any():
            out[known] = np.stack([self._previous[k] for k, hit in zip(keys, known) if hit])
        if (~known).any():
            out[~known] = compute(boxes[~known])
        self.hits += int(known.sum())
        self.misses += int((~known).sum())
        self._previous = dict(zip(keys, out))
        return out
