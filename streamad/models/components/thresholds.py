"""Decision thresholds and the score statistics used to normalise scores.

Follows anomalib's ``anomalib.metrics.F1AdaptiveThreshold`` and ``anomalib.metrics.MinMax`` (v1.0), with
scikit-learn / NumPy in place of torchmetrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve

__all__ = ["validate_scores_labels", "require_both_classes", "f1_adaptive_threshold", "MinMaxStats"]


def validate_scores_labels(scores: Any, labels: Any, what: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Check and convert a pair of per-sample scores and ground-truth labels.

    Args:
        scores: ``(N,)`` float scores (any array-like; higher = more anomalous). Multi-dimensional input is
            flattened.
        labels: ``(N,)`` ground-truth labels, 0 normal / 1 anomalous (int, bool or float holding 0 and 1).
        what: name used in error messages (e.g. ``"frame scores"``).

    Returns:
        ``(scores (N,) float64, labels (N,) int64)``.

    Raises:
        ValueError: empty input, lengths differ, a score is NaN or infinite, or a label is not 0 or 1.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y_raw = np.asarray(labels).reshape(-1)
    if s.size == 0:
        raise ValueError(f"{what}: no samples (expected at least one score and label)")
    if s.shape != y_raw.shape:
        raise ValueError(f"{what}: {s.size} scores but {y_raw.size} labels (expected one label per score)")
    bad = ~np.isfinite(s)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what}: {int(bad.sum())} scores are NaN or infinite (first at position {i}: {s[i]})")
    if not np.isin(y_raw, (0, 1)).all():
        odd = np.unique(y_raw[~np.isin(y_raw, (0, 1))])[:5]
        raise ValueError(f"{what}: labels must be 0 (normal) or 1 (anomalous), found {odd.tolist()}")
    return s, y_raw.astype(np.int64)


def require_both_classes(labels: np.ndarray, what: str, advice: str) -> None:
    """Raise ``ValueError`` naming ``what`` and giving ``advice`` unless ``labels`` (0/1) hold both classes."""
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.size:
        only = "anomalous" if n_pos else "normal"
        raise ValueError(f"{what}: all {labels.size} labels are {only}; {advice}")


def f1_adaptive_threshold(scores: Any, labels: Any) -> float:
    """The raw score threshold that maximises F1 (anomalib ``F1AdaptiveThreshold``).

    Builds the precision-recall curve over the raw scores (every distinct score is a candidate threshold, a
    sample is anomalous when ``score >= threshold``) and returns the candidate with the highest
    ``F1 = 2 P R / (P + R)``; ties go to the lowest such threshold, as ``torch.argmax`` does in anomalib.

    Example (anomalib's): labels ``[0, 0, 0, 1, 1]``, scores ``[2.3, 1.6, 2.6, 7.9, 3.3]`` -> ``3.3``.

    Args:
        scores: ``(N,)`` float raw scores, higher = more anomalous (model units, not normalised).
        labels: ``(N,)`` int 0/1 ground truth.

    Returns:
        The threshold, in the units of ``scores``.

    Raises:
        ValueError: bad input (see :func:`validate_scores_labels`), or the labels hold only one class, where
            F1 cannot pick a threshold. (Newer anomalib versions log a warning and fall back to the highest /
            lowest score instead; an explicit error is preferred here.)
    """
    s, y = validate_scores_labels(scores, labels, "f1_adaptive_threshold")
    require_both_classes(
        y, "f1_adaptive_threshold",
        "an adaptive threshold needs both normal and anomalous samples: set a manual threshold "
        "(threshold.method: manual, value: <raw score>) or validate on a labelled split that contains both classes",
    )
    precision, recall, thresholds = precision_recall_curve(y, s)
    # precision/recall have one more entry than thresholds (the final P=1, R=0 point): drop it.
    p, r = precision[:-1], recall[:-1]
    f1 = 2 * p * r / (p + r + 1e-10)
    return float(thresholds[int(np.argmax(f1))])


@dataclass
class MinMaxStats:
    """Running minimum and maximum of scores (anomalib ``MinMax`` metric).

    Starts empty (``min = +inf``, ``max = -inf``); each :meth:`update` widens the range. anomalib fits these on
    the validation set's scores (anomaly maps, else box scores, else image scores) and uses them with the
    threshold for min-max normalisation (:func:`streamad.models.components.normalization.min_max_normalize`).

    Example (anomalib's): ``[0.0807, 0.6329, 0.0559, 0.9860, 0.3595]`` -> ``(0.0559, 0.9860)``; then updating
    with ``[0.3251, 0.3169, 0.3072, 0.6247, 0.9999]`` -> ``(0.0559, 0.9999)``.

    Attributes:
        min: smallest score seen (raw model units), ``inf`` while empty.
        max: largest score seen, ``-inf`` while empty.
    """

    min: float = math.inf
    max: float = -math.inf

    @property
    def empty(self) -> bool:
        """True until a non-empty array has been seen."""
        return self.min > self.max

    def update(self, values: Any) -> "MinMaxStats":
        """Widen the range with ``values`` (any shape, float); empty arrays are ignored. Returns ``self``.

        Raises:
            ValueError: ``values`` holds NaN or infinite entries.
        """
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            return self
        if not np.isfinite(v).all():
            raise ValueError(f"MinMaxStats.update: {int((~np.isfinite(v)).sum())} values are NaN or infinite")
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        return self

    @classmethod
    def from_arrays(cls, *arrays: Any) -> "MinMaxStats":
        """Stats over all ``arrays`` (each any shape, float).

        Raises:
            ValueError: an array holds NaN or infinite values.
        """
        stats = cls()
        for a in arrays:
            stats.update(a)
        return stats

    def compute(self) -> tuple[float, float]:
        """``(min, max)``.

        Raises:
            ValueError: nothing has been seen yet.
        """
        if self.empty:
            raise ValueError("MinMaxStats: no scores seen yet (update it with the validation scores first)")
        return self.min, self.max

    def to_dict(self) -> dict[str, float]:
        """``{"min": ..., "max": ...}`` for model.json.

        Raises:
            ValueError: nothing has been seen yet.
        """
        lo, hi = self.compute()
        return {"min": lo, "max": hi}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "normalisation stats") -> "MinMaxStats":
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: ``min``/``max`` missing, not finite numbers, or ``min > max``; the message names ``where``.
        """
        try:
            lo, hi = float(data["min"]), float(data["max"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: expected numbers 'min' and 'max', got {data!r}") from exc
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ValueError(f"{where}: expected finite min <= max, got min={lo}, max={hi}")
        return cls(lo, hi)
