"""Thresholds (anomalib F1AdaptiveThreshold, MinMax) and min-max normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.metric_math import f1_adaptive_threshold
from streamad.models.components.normalization import MinMaxStats, min_max_normalize


def test_f1_adaptive_threshold_anomalib_example() -> None:
    assert f1_adaptive_threshold([2.3, 1.6, 2.6, 7.9, 3.3], [0, 0, 0, 1, 1]) == pytest.approx(3.3, abs=1e-4)


def test_f1_adaptive_threshold_picks_best_f1_with_overlap() -> None:
    # score >= t: t=0.5 -> P 3/5, R 1, F1 .75;  t=0.7 -> P 2/3, R 2/3, F1 .67;  t=0.8 -> P 1, R 2/3, F1 .8 (best)
    scores = np.array([0.1, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], dtype=np.float32)
    labels = np.array([0, 0, 1, 0, 0, 1, 1])
    assert f1_adaptive_threshold(scores, labels) == pytest.approx(0.8, abs=1e-6)


def test_f1_adaptive_threshold_all_tied_scores_returns_that_score() -> None:
    assert f1_adaptive_threshold([1.0, 1.0, 1.0], [0, 1, 1]) == 1.0


@pytest.mark.parametrize("labels, only", [([0, 0, 0], "normal"), ([1, 1, 1], "anomalous")])
def test_f1_adaptive_threshold_one_class_tells_what_to_do(labels: list[int], only: str) -> None:
    with pytest.raises(ValueError) as exc:
        f1_adaptive_threshold([0.1, 0.2, 0.3], labels)
    msg = str(exc.value)
    assert only in msg and "manual" in msg and "both classes" in msg


@pytest.mark.parametrize(
    "scores, labels, fragment",
    [
        ([0.1, 0.2], [0, 1, 1], "2 scores but 3 labels"),
        ([0.1, float("nan"), 0.3], [0, 1, 1], "NaN"),
        ([0.1, 0.2, 0.3], [0, 2, 1], "labels must be 0"),
        ([], [], "no samples"),
    ],
)
def test_f1_adaptive_threshold_bad_input(scores: list[float], labels: list[int], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        f1_adaptive_threshold(scores, labels)


def test_min_max_stats_anomalib_example() -> None:
    stats = MinMaxStats.from_arrays(np.array([0.0807, 0.6329, 0.0559, 0.9860, 0.3595]))
    assert stats.compute() == pytest.approx((0.0559, 0.9860), abs=1e-4)
    stats.update(np.array([0.3251, 0.3169, 0.3072, 0.6247, 0.9999], dtype=np.float32))
    assert stats.compute() == pytest.approx((0.0559, 0.9999), abs=1e-4)


def test_min_max_stats_over_maps_and_empty_batches() -> None:
    maps = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 5
    stats = MinMaxStats.from_arrays(maps, np.zeros((0,)), [[100.0]])
    assert stats.compute() == (-5.0, 100.0)
    assert MinMaxStats.from_dict(stats.to_dict()) == stats


def test_min_max_stats_errors() -> None:
    empty = MinMaxStats()
    assert empty.empty
    with pytest.raises(ValueError, match="no scores seen"):
        empty.compute()
    with pytest.raises(ValueError, match="NaN or infinite"):
        MinMaxStats().update([1.0, np.inf])
    with pytest.raises(ValueError, match="model.json: expected finite min <= max"):
        MinMaxStats.from_dict({"min": 2.0, "max": 1.0}, where="model.json")
    with pytest.raises(ValueError, match="expected numbers 'min' and 'max'"):
        MinMaxStats.from_dict({"min": 2.0})


def test_normalize_threshold_maps_to_half_and_clips() -> None:
    x = np.array([-100.0, 2.0, 3.0, 4.0, 6.0, 100.0])
    out = min_max_normalize(x, threshold=4.0, min_val=2.0, max_val=6.0)
    np.testing.assert_allclose(out, [0.0, 0.0, 0.25, 0.5, 1.0, 1.0])
    assert out.shape == x.shape


def test_normalize_decision_agrees_with_raw_threshold() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(3.0, 2.0, size=1000)
    thr = 3.7
    norm = min_max_normalize(raw, thr, float(raw.min()), float(raw.max()))
    assert ((norm >= 0.5) == (raw >= thr)).all()
    assert norm.min() >= 0.0 and norm.max() <= 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_keeps_float_dtype(dtype: type) -> None:
    maps = np.linspace(0, 1, 12, dtype=dtype).reshape(1, 3, 4)
    out = min_max_normalize(maps, 0.5, 0.0, 1.0)
    assert out.dtype == dtype and out.shape == (1, 3, 4)
    assert out[0, 0, 0] == 0.0 and out[0, -1, -1] == 1.0
    scalar = min_max_normalize(dtype(0.75), 0.5, 0.0, 1.0)
    assert isinstance(scalar, np.generic) and scalar.dtype == dtype and scalar == pytest.approx(0.75)


def test_normalize_python_float_and_int_array() -> None:
    value = min_max_normalize(5.0, threshold=4.0, min_val=0.0, max_val=8.0)
    assert isinstance(value, float) and value == pytest.approx(0.625)
    out = min_max_normalize(np.array([0, 4, 8]), 4.0, 0.0, 8.0)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0])


def test_normalize_zero_range_is_a_step_at_the_threshold() -> None:
    with np.errstate(all="raise"):  # no division by zero
        out = min_max_normalize(np.array([1.0, 2.0, 3.0], dtype=np.float32), threshold=2.0, min_val=5.0, max_val=5.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0.0, 0.5, 1.0])


@pytest.mark.parametrize(
    "args, fragment",
    [((0.5, 1.0, 0.0), "min_val \\(1.0\\) is larger"), ((float("nan"), 0.0, 1.0), "threshold must be a finite"),
     ((0.5, -np.inf, 1.0), "min_val must be a finite")],
)
def test_normalize_bad_stats(args: tuple[float, float, float], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        min_max_normalize(np.ones(3), *args)
