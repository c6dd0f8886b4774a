"""Temporal smoothing of frame scores."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from helpers import run_operator, scores


def test_centered_smoothing_matches_scipy_in_the_interior_and_keeps_raw() -> None:
    rng = np.random.default_rng(0)
    values = rng.random(60)
    out = run_operator("smooth", [scores(i, v) for i, v in enumerate(values)], sigma=3.0)
    assert [s.index for s in out] == list(range(60))  # every frame, in order
    got = np.array([s.score for s in out])
    ref = gaussian_filter1d(values, 3.0, truncate=3.0)
    assert np.allclose(got[9:-9], ref[9:-9], atol=1e-9)
    assert np.allclose([s.raw_score for s in out], values)


def test_centered_smoothing_renormalises_at_the_edges() -> None:
    out = run_operator("smooth", [scores(i, 2.0) for i in range(5)], sigma=3.0)
    assert np.allclose([s.score for s in out], 2.0)  # a constant stays constant, even in a stream shorter than r


def test_causal_smoothing_has_no_delay_and_uses_only_the_past() -> None:
    from streamad.registry import OPERATORS

    cls = OPERATORS.get("smooth")
    op = cls(cls.Config(kind="smooth", sigma=2.0, mode="causal"), None, "s")
    first = op.process(scores(0, 0.0))
    assert len(first) == 1 and first[0].score == 0.0
    step = op.process(scores(1, 1.0))[0]
    assert 0.0 < step.score < 1.0  # pulled down by the past only
