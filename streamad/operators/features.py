"""``velocity_features``: AI-VAD's velocity attribute of every region, from the clip's optical flow."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from streamad.frames import Clip
from streamad.parts import Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["VelocityFeatures", "velocity_histogram"]


def velocity_histogram(flow: np.ndarray, boxes: np.ndarray, n_bins: int = 8,
                       magnitude_edges: tuple[float, ...] = ()) -> np.ndarray:
    """Velocity features of each box: the mean flow magnitude per direction bin (AI-VAD).

    Follows anomalib ``VelocityExtractor``: inside each box, magnitude = L2 norm of the flow vector and direction
    ``theta = atan2(flow_x, flow_y)`` (anomalib's argument order); the ``n_bins`` equal bins over ``[-pi, pi]`` hold
    the mean magnitude of the pixels whose direction falls in the bin (0 for an empty bin). anomalib samples each box
    to 224x224 with ``roi_align`` first; this reads the box's pixels directly, which is the same average up to
    interpolation.

    streamad extension (off by default): ``magnitude_edges`` (pixels per clip, increasing) appends the fraction of
    the box's pixels whose magnitude falls in each of the ``len(magnitude_edges) + 1`` magnitude bins, so the
    feature describes the distribution of speeds and not only their mean.

    Args:
        flow: ``(H, W, 2) float32`` flow in pixels (x, y).
        boxes: ``(M, 4)`` xyxy boxes in the flow's pixels.
        n_bins: direction bins.
        magnitude_edges: magnitude bin edges (pixels).

    Returns:
        ``(M, n_bins + (len(magnitude_edges) + 1 if magnitude_edges else 0)) float32``.
    """
    h, w = flow.shape[:2]
    n_mag = len(magnitude_edges) + 1 if magnitude_edges else 0
    out = np.zeros((len(boxes), n_bins + n_mag), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64)):
        xa, ya = int(np.clip(np.floor(x1), 0, w - 1)), int(np.clip(np.floor(y1), 0, h - 1))
        xb, yb = int(np.clip(np.ceil(x2), xa, w - 1)), int(np.clip(np.ceil(y2), ya, h - 1))
        f = flow[ya: yb + 1, xa: xb + 1].reshape(-1, 2)
        mag = np.sqrt(f[:, 0] ** 2 + f[:, 1] ** 2)
        theta = np.arctan2(f[:, 0], f[:, 1])
        idx = np.clip(((theta + np.pi) / (2 * np.pi) * n_bins).astype(np.int64), 0, n_bins - 1)
        sums = np.bincount(idx, weights=mag, minlength=n_bins)
        counts = np.bincount(idx, minlength=n_bins)
        out[i, :n_bins] = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        if n_mag:
            mi = np.searchsorted(np.asarray(magnitude_edges), mag, side="right")
            out[i, n_bins:] = np.bincount(mi, minlength=n_mag) / max(len(mag), 1)
    return out


@OPERATORS.register("velocity_features")
class VelocityFeatures(Operator):
    """Velocity features of the clip's regions (AI-VAD velocity attribute, anomalib ``VelocityExtractor``).

    Needs ``clip.regions`` and ``clip.flow``. Sets ``clip.features["velocity"]``: ``(M, D) float32`` as
    :func:`velocity_histogram`.

    Config:
        n_velocity_bins: direction bins (anomalib ``AiVad`` default 1, ``AiVadModel`` default 8).
        magnitude_edges: optional magnitude bin edges in pixels (streamad extension, see :func:`velocity_histogram`).
    """

    class Config(PartConfig):
        kind: Literal["velocity_features"] = "velocity_features"
        n_velocity_bins: int = Field(8, ge=1)
        magnitude_edges: list[float] = Field(default_factory=list)

    def process(self, clip: Clip) -> list[Clip]:
        if clip.flow is None or clip.regions is None:
            raise ValueError(f"stream {self.stream_id}: velocity_features needs optical_flow and a region operator "
                             "before it in the pipeline")
        clip.features["velocity"] = velocity_histogram(clip.flow, clip.regions.boxes, self.config.n_velocity_bins,
                                                       tuple(self.config.magnitude_edges))
        return [clip]
