"""AI-VAD's grouped kNN density (anomalib ``GroupedKNNEstimator``) on small point sets whose distances can be
checked by hand: leave-own-video-out min-max statistics, the mean distance to k neighbours, a single video, the
streamad bank subsampling (random / k-center), its errors and its state round trip."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.errors import ModelError
from streamad.models.video.aivad.knn import GroupedKNNEstimator

# Two videos of 1-d features: A = {0, 1}, B = {3, 7}.
X = np.array([[0.0], [1.0], [3.0], [7.0]], np.float32)
GROUPS = np.array(["A", "A", "B", "B"])


def _fit(x: np.ndarray = X, groups: np.ndarray = GROUPS, **kw: object) -> GroupedKNNEstimator:
    est = GroupedKNNEstimator(**kw)  # type: ignore[arg-type]
    est.fit(x, groups)
    return est


def test_statistics_leave_each_rows_own_video_out() -> None:
    # k = 1, each row against the other video only: 0 -> 3 (3), 1 -> 3 (2), 3 -> 1 (2), 7 -> 1 (6).
    # Against the whole bank every distance would be 1 or 2, so min 2 / max 6 shows the own video was left out.
    est = _fit()
    assert (est.min, est.max) == (2.0, 6.0)
    # a test region's distance is to the whole bank, normalised (d - 2) / (6 - 2), not clipped
    np.testing.assert_allclose(est.predict(np.array([[5.0], [10.0], [-4.0], [1.0]])), [0.0, 0.25, 0.5, -0.5])
    np.testing.assert_allclose(est.predict(np.array([[10.0], [-4.0]]), normalize=False), [3.0, 4.0])


def test_more_neighbours_average_their_distances() -> None:
    # k = 2: 0 -> (3 + 7) / 2 = 5, 1 -> (2 + 6) / 2 = 4, 3 -> (3 + 2) / 2 = 2.5, 7 -> (7 + 6) / 2 = 6.5
    est = _fit(n_neighbors=2)
    assert (est.min, est.max) == (2.5, 6.5)
    # 2 -> {1, 3}: 1; 5 -> {3, 7}: 2; 12 -> {7, 3}: 7
    np.testing.assert_allclose(est.predict(np.array([[2.0], [5.0], [12.0]]), normalize=False), [1.0, 2.0, 7.0])
    np.testing.assert_allclose(est.predict(np.array([[2.0], [5.0], [12.0]])), [-0.375, -0.125, 1.125])


def test_a_single_video_uses_every_other_row() -> None:
    # one video {0, 1, 3, 7}: the nearest *other* row of 0, 1, 3, 7 is at 1, 1, 2, 4 (the row itself is skipped)
    est = _fit(groups=np.array(["A"] * 4))
    assert (est.min, est.max) == pytest.approx((1.0, 4.0))
    # k = 2: 0 -> (1 + 3) / 2 = 2, 1 -> (1 + 2) / 2 = 1.5, 3 -> (2 + 3) / 2 = 2.5, 7 -> (4 + 6) / 2 = 5
    est2 = _fit(groups=np.array(["A"] * 4), n_neighbors=2)
    assert (est2.min, est2.max) == pytest.approx((1.5, 5.0))
    np.testing.assert_allclose(est.predict(np.array([[9.0]])), [(2.0 - 1.0) / 3.0])  # 9 -> 7: 2


def _cluster_and_outliers() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """60 points around the origin (0.1 standard deviation) and 3 far-apart rare ones, in 2 videos."""
    rng = np.random.default_rng(0)
    outliers = np.array([[10, 0], [0, 10], [-10, -10]], np.float32)
    x = np.concatenate([rng.normal(0, 0.1, (60, 2)).astype(np.float32), outliers])
    return x, np.array(["a"] * 30 + ["b"] * 33), outliers


def test_random_bank_keeps_bank_size_training_rows_reproducibly() -> None:
    x, g, _ = _cluster_and_outliers()
    full = _fit(x, g)
    a, b, other = _fit(x, g, bank_size=10, bank_sampling="random", seed=1), _fit(
        x, g, bank_size=10, bank_sampling="random", seed=1), _fit(x, g, bank_size=10, bank_sampling="random", seed=2)
    assert a.bank.shape == (10, 2)
    assert all(any(np.array_equal(row, r) for r in x) for row in a.bank)  # rows of the training set
    assert len(np.unique(a.bank, axis=0)) == 10  # without repeats
    np.testing.assert_array_equal(a.bank, b.bank)  # same seed, same bank
    assert not np.array_equal(a.bank, other.bank)
    # the statistics come from every training row, before subsampling
    assert (a.min, a.max) == (full.min, full.max)
    # a bank smaller than bank_size is kept whole
    assert _fit(x, g, bank_size=100, bank_sampling="random").bank.shape == x.shape


def test_kcenter_bank_keeps_the_far_apart_points() -> None:
    x, g, outliers = _cluster_and_outliers()
    kc = _fit(x, g, bank_size=4, bank_sampling="kcenter")
    rnd = _fit(x, g, bank_size=4, bank_sampling="random")
    assert kc.bank.shape == rnd.bank.shape == (4, 2)
    for o in outliers:  # the coreset covers the rare points; a random subset of 4 misses them
        assert any(np.array_equal(o, r) for r in kc.bank)
        assert not any(np.array_equal(o, r) for r in rnd.bank)
    # so a region like a rare training one still scores as at training time with the coreset
    probe = np.array([[10.0, 0.0]], np.float32)
    assert kc.predict(probe, normalize=False)[0] == 0.0
    assert rnd.predict(probe, normalize=False)[0] > 9.0


def test_width_mismatch_and_bad_arguments_are_clear_errors() -> None:
    est = _fit(np.zeros((4, 3), np.float32) + np.arange(4)[:, None], GROUPS)
    with pytest.raises(ModelError, match=r"fitted on 3-d features but got shape \(2, 5\)"):
        est.predict(np.zeros((2, 5), np.float32))
    assert est.predict(np.zeros((0, 3), np.float32)).shape == (0,)  # no region, no score
    with pytest.raises(ModelError, match="before fit"):
        GroupedKNNEstimator().predict(X)
    with pytest.raises(ValueError, match="bank_sampling must be one of"):
        GroupedKNNEstimator(bank_sampling="every_other")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_neighbors must be >= 1"):
        GroupedKNNEstimator(n_neighbors=0)
    with pytest.raises(ValueError, match="at least 2 training regions"):
        _fit(X[:1], GROUPS[:1])
    with pytest.raises(ValueError, match="N groups"):
        _fit(X, GROUPS[:3])


def test_state_round_trip_gives_identical_scores() -> None:
    x, g, _ = _cluster_and_outliers()
    est = _fit(x, g, n_neighbors=3, bank_size=20, bank_sampling="kcenter", seed=4)
    params, arrays = est.state("pose")
    assert set(arrays) == {"pose.bank"} and arrays["pose.bank"].shape == (20, 2)
    back = GroupedKNNEstimator.from_state("pose", params, arrays)
    assert (back.n_neighbors, back.bank_size, back.bank_sampling, back.seed) == (3, 20, "kcenter", 4)
    probe = np.random.default_rng(1).normal(0, 3, (50, 2)).astype(np.float32)
    np.testing.assert_array_equal(back.predict(probe), est.predict(probe))
    with pytest.raises(ModelError, match="lack array 'pose.bank'"):
        GroupedKNNEstimator.from_state("pose", params, {})
    with pytest.raises(ModelError, match="has not been fitted"):
        GroupedKNNEstimator().state("deep")


def test_one_blas_thread_limits_blas_while_open_and_restores_it() -> None:
    from threadpoolctl import threadpool_info

    from streamad.models.components.blas_threads import one_blas_thread

    before = {i["filepath"]: i["num_threads"] for i in threadpool_info()}
    with one_blas_thread():
        inside = threadpool_info()
        assert inside and all(i["num_threads"] == 1 for i in inside)
    assert {i["filepath"]: i["num_threads"] for i in threadpool_info()} == before
