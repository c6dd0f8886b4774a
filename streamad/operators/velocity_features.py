"""``velocity_features``: AI-VAD's velocity attribute of every region, from the clip's optical flow.

The default is anomalib's ``VelocityExtractor`` (mean flow magnitude per direction bin). streamad extensions, off by
default: the fraction of a box's pixels per magnitude bin, and percentiles of the magnitude inside the box.
"""

from __future__ import annotations

from typing import Literal, Sequence

import cv2
import numpy as np
from pydantic import Field, field_validator, model_validator

from streamad.frames import Clip
from streamad.parts import Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["VelocityFeatures", "velocity_histogram", "velocity_dims", "in_box_heights", "VELOCITY_UNITS"]

#: ``velocity_units`` of :class:`VelocityFeatures`: magnitudes in pixels (anomalib), in percent of the region's
#: height, or both side by side.
VELOCITY_UNITS = ("pixels", "box_height", "both")


def velocity_dims(n_bins: int, magnitude_edges: Sequence[float] = (), magnitude_percentiles: Sequence[float] = ()
                  ) -> int:
    """Width ``D`` of :func:`velocity_histogram`'s output: ``n_bins + (len(edges) + 1 if edges) + len(pcts)``."""
    return n_bins + (len(magnitude_edges) + 1 if len(magnitude_edges) else 0) + len(magnitude_percentiles)


def velocity_histogram(flow: np.ndarray, boxes: np.ndarray, n_bins: int = 8,
                       magnitude_edges: Sequence[float] = (),
                       magnitude_percentiles: Sequence[float] = ()) -> np.ndarray:
    """Velocity features of each box: the mean flow magnitude per direction bin (AI-VAD), plus optional
    magnitude statistics.

    Follows anomalib ``VelocityExtractor``: inside each box, magnitude = L2 norm of the flow vector and direction
    ``theta = atan2(flow_x, flow_y)`` (anomalib's argument order, so ``theta = 0`` is motion down the image, +y,
    and ``pi/2`` to the right, +x); the ``n_bins`` equal bins over ``[-pi, pi]`` (``theta = pi`` in the last bin,
    as ``torch.histc``) hold the mean magnitude of the pixels whose direction falls in the
    bin (0 for an empty bin). anomalib samples each box to 224x224 with ``roi_align`` first; this reads the box's
    pixels directly, which is the same average up to interpolation.

    streamad extensions (off by default), appended after the direction bins in this order:

    * ``magnitude_edges`` (pixels, increasing): the fraction of the box's pixels whose magnitude falls in each of
      the ``len(magnitude_edges) + 1`` magnitude bins (``< e0``, ``[e0, e1)``, ..., ``>= e_last``), so the
      feature describes the distribution of speeds and not only their mean.
    * ``magnitude_percentiles`` (percent, 0-100): those percentiles of the magnitude of the box's pixels, in
      pixels (e.g. the 90th percentile is the speed of the fastest tenth of the box; robust to the static
      background a box includes).

    ``n_bins = 0`` leaves out the direction histogram (streamad extension).

    Args:
        flow: ``(H, W, 2) float32`` flow in pixels (x, y) over the clip.
        boxes: ``(M, 4)`` xyxy boxes in the flow's pixels (clipped to the image).
        n_bins: direction bins (anomalib ``n_velocity_bins``).
        magnitude_edges: magnitude bin edges in pixels.
        magnitude_percentiles: magnitude percentiles, each in ``[0, 100]``.

    Returns:
        ``(M, D) float32`` with ``D =`` :func:`velocity_dims`; magnitudes in pixels over the clip.

    Raises:
        ValueError: ``flow`` is not ``(H, W, 2)`` or ``boxes`` is not ``(M, 4)``.
    """
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"velocity_histogram: flow must be (H, W, 2) pixels, got shape {flow.shape}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) if np.size(boxes) else np.zeros((0, 4))
    h, w = flow.shape[:2]
    edges = np.asarray(magnitude_edges, np.float64)
    n_mag = len(edges) + 1 if len(edges) else 0
    pcts = np.asarray(magnitude_percentiles, np.float64) / 100.0
    out = np.zeros((len(boxes), velocity_dims(n_bins, magnitude_edges, magnitude_percentiles)), np.float32)
    if not len(boxes):
        return out
    flow = flow.astype(np.float32, copy=False)
    magnitude = cv2.magnitude(flow[..., 0], flow[..., 1])  # whole frame once, (H, W) float32 pixels
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        xa, ya = int(np.clip(np.floor(x1), 0, w - 1)), int(np.clip(np.floor(y1), 0, h - 1))
        xb, yb = int(np.clip(np.ceil(x2), xa, w - 1)), int(np.clip(np.ceil(y2), ya, h - 1))
        mag = magnitude[ya: yb + 1, xa: xb + 1].reshape(-1).astype(np.float64)
        col = 0
        if n_bins == 1:  # a single bin holds every pixel: the mean magnitude
            out[i, 0] = mag.mean()
        elif n_bins > 1:
            f = flow[ya: yb + 1, xa: xb + 1].reshape(-1, 2)
            theta = np.arctan2(f[:, 0], f[:, 1])
            idx = np.clip(((theta + np.pi) / (2 * np.pi) * n_bins).astype(np.int64), 0, n_bins - 1)
            sums = np.bincount(idx, weights=mag, minlength=n_bins)
            counts = np.bincount(idx, minlength=n_bins)
            out[i, :n_bins] = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        col = n_bins
        if n_mag:
            mi = np.searchsorted(edges, mag, side="right")
            out[i, col: col + n_mag] = np.bincount(mi, minlength=n_mag) / len(mag)
            col += n_mag
        if len(pcts):
            out[i, col:] = _percentiles(mag, pcts)
    return out


def in_box_heights(features: np.ndarray, boxes: np.ndarray, n_bins: int, n_magnitude_bins: int) -> np.ndarray:
    """The magnitude columns of :func:`velocity_histogram`'s output in percent of each box's height.

    A person far from the camera is small and slow in pixels; divided by its height, its speed compares with a
    near person's (perspective), and one setting carries across cameras and resolutions (streamad extension).
    The direction-bin means and the percentiles are rescaled; the magnitude-bin fractions (``n_magnitude_bins``
    columns after the direction bins) are fractions already and stay as they are.

    Args:
        features: ``(M, D) float32`` from :func:`velocity_histogram`.
        boxes: ``(M, 4)`` xyxy pixels (a height under 1 pixel counts as 1).
        n_bins: direction bins of ``features``.
        n_magnitude_bins: magnitude-bin columns of ``features`` (``len(magnitude_edges) + 1``, or 0).

    Returns:
        ``(M, D) float32``: ``100 * magnitude / box height`` (percent of the height over the clip).
    """
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    h = np.maximum(b[:, 3] - b[:, 1], 1.0)
    out = np.array(features, np.float32, copy=True)
    scaled = np.ones(out.shape[1], bool)
    scaled[n_bins:n_bins + n_magnitude_bins] = False
    out[:, scaled] *= (100.0 / h)[:, None]
    return out


def _percentiles(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.percentile(x, 100 * q)`` (linear interpolation) for a 1-d ``x``, without its per-call overhead."""
    s = np.sort(x)
    pos = q * (len(s) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@OPERATORS.register("velocity_features")
class VelocityFeatures(Operator):
    """Velocity features of the clip's regions (AI-VAD velocity attribute, anomalib ``VelocityExtractor``).

    Needs ``clip.regions`` and ``clip.flow``. Sets ``clip.features["velocity"]``: ``(M, D) float32`` as
    :func:`velocity_histogram`, in the ``velocity_units`` of the config (:func:`in_box_heights`; ``both``:
    ``(M, 2D)``).
    """

    class Config(PartConfig):
        """Config of ``kind: velocity_features``."""

        kind: Literal["velocity_features"] = "velocity_features"
        n_velocity_bins: int = Field(
            8, ge=0, description="Direction bins over [-pi, pi], each holding the mean flow magnitude (pixels) of "
                                 "the box pixels moving in that direction (anomalib: AiVad default 1, AiVadModel "
                                 "default 8). 0 = no direction histogram (streamad extension).")
        magnitude_edges: list[float] = Field(
            default_factory=list,
            description="streamad extension, not anomalib: magnitude bin edges in pixels (over the clip), "
                        "increasing; appends the fraction of box pixels per magnitude bin (len + 1 columns).")
        magnitude_percentiles: list[float] = Field(
            default_factory=list,
            description="streamad extension, not anomalib: percentiles (0-100) of the flow magnitude inside each "
                        "box, appended as columns in pixels (over the clip), e.g. [50, 90, 99].")

        velocity_units: Literal["pixels", "box_height", "both"] = Field(
            "pixels", description="streamad extension: 'pixels' (anomalib) = magnitudes in pixels over the clip; "
                                  "'box_height' = in percent of the region's height (a far person is small and slow "
                                  "in pixels: scale-aware, one setting for any camera); 'both' = the pixel columns "
                                  "followed by the height-relative ones.")

        @field_validator("magnitude_edges")
        @classmethod
        def _increasing(cls, v: list[float]) -> list[float]:
            if any(b <= a for a, b in zip(v, v[1:])) or any(e < 0 for e in v):
                raise ValueError(f"magnitude_edges must be non-negative and strictly increasing pixels, got {v}")
            return v

        @field_validator("magnitude_percentiles")
        @classmethod
        def _percent(cls, v: list[float]) -> list[float]:
            if any(not 0 <= p <= 100 for p in v):
                raise ValueError(f"magnitude_percentiles must each be in [0, 100] (percent), got {v}")
            return v

        @model_validator(mode="after")
        def _not_empty(self) -> "VelocityFeatures.Config":
            if velocity_dims(self.n_velocity_bins, self.magnitude_edges, self.magnitude_percentiles) == 0:
                raise ValueError("velocity_features has no columns: set n_velocity_bins >= 1, magnitude_edges or "
                                 "magnitude_percentiles")
            return self

    def process(self, clip: Clip) -> list[Clip]:
        if clip.flow is None or clip.regions is None:
            raise ValueError(f"stream {self.stream_id}: velocity_features needs optical_flow and a region operator "
                             "before it in the pipeline")
        c = self.config
        boxes = clip.regions.boxes
        v = velocity_histogram(clip.flow, boxes, c.n_velocity_bins, c.magnitude_edges, c.magnitude_percentiles)
        if c.velocity_units != "pixels":
            n_mag = len(c.magnitude_edges) + 1 if c.magnitude_edges else 0
            rel = in_box_heights(v, boxes, c.n_velocity_bins, n_mag)
            v = rel if c.velocity_units == "box_height" else np.concatenate([v, rel], axis=1)
        clip.features["velocity"] = v
        return [clip]
