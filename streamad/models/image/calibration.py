"""Post-processing statistics of an image model, fitted on the validation frames (anomalib's post-processing,
one for all models):

* ``min`` / ``max``: over the validation anomaly maps and image scores (anomalib's ``MinMax`` on the maps);
* ``image_threshold``: F1-adaptive on the image scores and frame labels, or manual;
* ``pixel_threshold``: F1-adaptive on the anomaly-map pixels and ground-truth masks (when masks with both classes
  were seen), else the image threshold (anomalib: "if pixel was never updated, pixel = image"); manual when the
  image threshold is manual.

Normalised score ``clip((x - t) / (max - min) + 0.5, 0, 1)``: 0.5 is the decision point; image scores use the
image threshold, maps and region scores the pixel threshold.

Two departures, both for robustness and stated here: the F1-adaptive image threshold is moved to the midpoint
between the chosen score and the next lower validation score (the same F1 on the validation frames; anomalib's
threshold *is* a validation score, so float rounding between runtimes could flip that frame's label); and the pixel
threshold is chosen on every 4th row and column of each map (1/16 of the pixels; maps are blurred with sigma 4,
so neighbouring pixels are nearly equal), which keeps the precision-recall curve small.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamad.errors import ConfigError
from streamad.models.components.thresholds import MinMaxStats, f1_adaptive_threshold
from streamad.models.image.preprocess import resize_mask

__all__ = ["Calibration", "separated_threshold", "PIXEL_STRIDE"]

PIXEL_STRIDE = 4


def separated_threshold(scores: np.ndarray, threshold: float) -> float:
    """The midpoint between ``threshold`` and the largest score below it (``threshold`` if none is below)."""
    below = scores[scores < threshold]
    return float((threshold + below.max()) / 2) if below.size else float(threshold)


class Calibration:
    """Accumulates validation outputs, then :meth:`compute` s the post-processing statistics."""

    def __init__(self) -> None:
        self.minmax = MinMaxStats()
        self.scores: list[float] = []
        self.labels: list[int] = []
        self._pix: list[np.ndarray] = []
        self._pix_labels: list[np.ndarray] = []

    def add(self, score: float, label: int | None, anomaly_map: np.ndarray | None,
            mask: np.ndarray | None) -> None:
        """One validation frame: its (smoothed) raw image score, label, raw ``(h, w)`` map and ``(H, W)`` mask."""
        self.scores.append(float(score))
        self.labels.append(-1 if label is None else int(label))
        self.minmax.update([score])
        if anomaly_map is not None:
            self.minmax.update(anomaly_map)
            m = mask if mask is not None else (np.zeros(anomaly_map.shape, bool) if label == 0 else None)
            if m is not None:
                m = resize_mask(m, anomaly_map.shape)
                s = PIXEL_STRIDE
                self._pix.append(np.asarray(anomaly_map[::s, ::s], np.float32).ravel())
                self._pix_labels.append(m[::s, ::s].ravel())

    def __len__(self) -> int:
        return len(self.scores)

    def compute(self, method: str, value: float | None, where: str) -> dict[str, Any]:
        """``{"min", "max", "image_threshold", "pixel_threshold", "threshold_method", "frames", ...}``.

        Args:
            method: ``f1_adaptive`` or ``manual``. value: the manual threshold (raw units; image and pixel).
            where: which streams these were (for messages and ``statistics_from``).

        Raises:
            ValueError: no frames, a manual method without value, one class only for ``f1_adaptive``.
            ConfigError: ``f1_adaptive`` with unlabelled frames.
        """
        if not self.scores:
            raise ValueError(f"{where}: no frame was scored, so no min-max statistics can be fitted")
        scores = np.asarray(self.scores, np.float64)
        labels = np.asarray(self.labels)
        lo, hi = self.minmax.compute()
        post: dict[str, Any] = {"min": lo, "max": hi, "threshold_method": method, "statistics_from": where,
                                "frames": int(scores.size)}
        if method == "manual":
            if value is None:
                raise ValueError(f"{where}: a manual threshold needs a value (raw units)")
            post["image_threshold"] = post["pixel_threshold"] = float(value)
            return post
        if (labels < 0).any():
            raise ConfigError(f"{where}: some validation frames have no ground-truth label; f1_adaptive needs a "
                              f"labelled split")
        post["image_threshold"] = separated_threshold(scores, f1_adaptive_threshold(scores, labels))
        post["pixel_threshold"] = post["image_threshold"]
        post["pixel_threshold_from"] = "image"
        if self._pix:
            pix = np.concatenate(self._pix)
            pix_labels = np.concatenate(self._pix_labels)
            if 0 < int(pix_labels.sum()) < pix_labels.size:
                post["pixel_threshold"] = f1_adaptive_threshold(pix, pix_labels)
                post["pixel_threshold_from"] = f"masks (every {PIXEL_STRIDE}th row and column)"
        return post
