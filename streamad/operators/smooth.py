"""``smooth``: temporal smoothing of the frame score of each stream."""

from __future__ import annotations

from collections import deque
from typing import Literal

import numpy as np
from pydantic import Field

from streamad.frames import Scores
from streamad.parts import Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["Smooth", "gaussian_weights"]


def gaussian_weights(sigma: float, radius: int) -> np.ndarray:
    """``(2 * radius + 1,) float64`` Gaussian kernel of standard deviation ``sigma`` frames (not normalised)."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    return np.exp(-0.5 * (x / sigma) ** 2)


@OPERATORS.register("smooth")
class Smooth(Operator):
    """Gaussian temporal smoothing of ``Scores.score`` over a stream's frames (a streamad step; anomalib scores
    frames independently).

    ``centered`` (default) averages frames ``t - r .. t + r`` (``r = ceil(truncate * sigma)``), so each frame leaves
    ``r`` frames late; at the edges of a stream the kernel is renormalised over the frames that exist (equivalent to
    a per-clip ``scipy.ndimage.gaussian_filter1d`` with edge renormalisation). ``causal`` uses only frames
    ``t - r .. t`` (a half Gaussian) and adds no delay, for live alerting.

    The raw model score stays in ``Scores.raw_score``; only ``score`` changes. Input/output: :class:`Scores`.

    Config:
        sigma: standard deviation in frames.
        mode: ``centered`` or ``causal``.
        truncate: kernel radius in sigmas.
    """

    class Config(PartConfig):
        kind: Literal["smooth"] = "smooth"
        sigma: float = Field(3.0, gt=0)
        mode: Literal["centered", "causal"] = "centered"
        truncate: float = Field(3.0, gt=0)

    def __init__(self, config: "Smooth.Config", shared: object, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        self.radius = int(np.ceil(config.truncate * config.sigma))
        self.kernel = gaussian_weights(config.sigma, self.radius)
        self.causal = config.mode == "causal"
        size = self.radius + 1 if self.causal else 2 * self.radius + 1
        self.entries: deque[Scores] = deque(maxlen=size)
        self.values: deque[float] = deque(maxlen=size)  # unsmoothed scores of ``entries``

    def _smoothed(self, pos: int) -> float:
        """Smoothed score of window entry ``pos`` from the unsmoothed entries around it."""
        vals = np.fromiter(self.values, np.float64, len(self.values))
        lo = max(0, pos - self.radius)
        hi = min(len(vals), pos + (0 if self.causal else self.radius) + 1)
        w = self.kernel[self.radius - (pos - lo): self.radius + (hi - pos)]
        return float(np.dot(w, vals[lo:hi]) / w.sum())

    def _emit(self, pos: int) -> Scores:
        entry = self.entries[pos]
        entry.score = self._smoothed(pos)
        return entry

    def process(self, s: Scores) -> list[Scores]:
        self.entries.append(s)
        self.values.append(float(s.score))
        if self.causal:
            return [self._emit(len(self.entries) - 1)]
        if len(self.entries) <= self.radius:
            return []
        # the entry ``radius`` frames back now has its full right half
        return [self._emit(len(self.entries) - 1 - self.radius)]

    def flush(self) -> list[Scores]:
        if self.causal:
            return []
        n = len(self.entries)
        return [self._emit(pos) for pos in range(max(0, n - self.radius), n)]
