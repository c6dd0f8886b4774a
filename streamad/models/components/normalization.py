"""Min-max score normalisation (anomalib ``MinMaxNormalizationCallback`` / ``normalize_min_max``) and the score
statistics it uses (anomalib ``MinMax``).

After normalisation the decision threshold is always 0.5, whatever the model's raw units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import numpy as np

__all__ = ["min_max_normalize", "MinMaxStats"]

_A = TypeVar("_A", bound=np.ndarray)


@overload
def min_max_normalize(x: float, threshold: float, min_val: float, max_val: float) -> float: ...
@overload
def min_max_normalize(x: _A, threshold: float, min_val: float, max_val: float) -> _A: ...


def min_max_normalize(x: Any, threshold: float, min_val: float, max_val: float) -> Any:
    """Map raw scores to ``[0, 1]`` with ``threshold`` at 0.5 (anomalib's min-max normalisation).

    ``clip((x - threshold) / (max_val - min_val) + 0.5, 0, 1)``

    When ``max_val == min_val`` (every validation score was the same) the range is zero and anomalib's formula
    would divide by zero. Here the formula's limit as the range shrinks to zero is used instead: scores above
    ``threshold`` map to 1.0, scores below to 0.0 and scores equal to it to 0.5, so ``x >= threshold`` still
    means ``normalized >= 0.5``.

    Args:
        x: raw score(s): a Python float / int, or a NumPy array of any shape. ``float32`` / ``float64`` arrays
            (and NumPy float scalars) come back in the same dtype; integer arrays come back as ``float64``.
            NaN entries stay NaN.
        threshold: the image threshold in raw units (manual, or :func:`f1_adaptive_threshold`).
        min_val: smallest raw score seen on the validation set (:class:`MinMaxStats`).
        max_val: largest raw score seen on the validation set.

    Returns:
        Normalised score(s) in ``[0, 1]``: a Python float for a Python scalar, else an array of ``x``'s shape.

    Raises:
        ValueError: ``threshold``, ``min_val`` or ``max_val`` is not finite, or ``min_val > max_val``.
    """
    for name, v in (("threshold", threshold), ("min_val", min_val), ("max_val", max_val)):
        if not math.isfinite(float(v)):
            raise ValueError(f"min_max_normalize: {name} must be a finite number, got {v!r}")
    if min_val > max_val:
        raise ValueError(f"min_max_normalize: min_val ({min_val}) is larger than max_val ({max_val}); "
                         "were the normalisation stats fitted?")
    python_scalar = isinstance(x, (int, float)) and not isinstance(x, np.generic)
    arr = np.asarray(x)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float64)
    arr = arr.astype(dtype, copy=False)
    span = float(max_val) - float(min_val)
    if span > 0:
        out = (arr - dtype.type(threshold)) / dtype.type(span) + dtype.type(0.5)
    else:
        # Zero range: the limit of the formula is a step at the threshold (0, 0.5 or 1).
        out = (np.sign(arr - dtype.type(threshold)) * dtype.type(0.5) + dtype.type(0.5)).astype(dtype)
    out = np.clip(out, dtype.type(0.0), dtype.type(1.0)).astype(dtype, copy=False)
    if python_scalar:
        return float(out)
    if out.ndim == 0 and isinstance(x, np.generic):
        return out[()]
    return out


@dataclass
class MinMaxStats:
    """Running minimum and maximum of scores (anomalib ``MinMax`` metric).

    Starts empty (``min = +inf``, ``max = -inf``); each :meth:`update` widens the range. anomalib fits these on
    the validation set's scores (anomaly maps, else box scores, else image scores) and uses them with the
    threshold for min-max normalisation (:func:`min_max_normalize`).

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
