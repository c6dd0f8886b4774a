"""The threshold operator: anomalib min-max normalisation with the image threshold."""

from __future__ import annotations

import numpy as np

from helpers import run_operator, scores
from streamad.models.postprocess import PostProcess


def test_threshold_maps_to_half_and_labels_frames() -> None:
    stats = PostProcess(min=1.0, max=5.0, image_threshold=2.0)
    out = run_operator("threshold", [scores(0, 2.0), scores(1, 4.0), scores(2, 0.0), scores(3, 100.0)], shared=stats)
    assert [s.normalized for s in out] == [0.5, 1.0, 0.0, 1.0]  # (x - t) / (max - min) + 0.5, clipped
    assert [s.anomalous for s in out] == [True, True, False, True]
    assert np.isclose(out[1].region_scores[0], 1.0)


def test_config_threshold_overrides_the_fitted_one(tmp_path) -> None:
    from streamad.operators.threshold import Threshold
    from streamad.parts import BuildContext

    ctx = BuildContext(postprocess=PostProcess(min=0.0, max=10.0, image_threshold=5.0))
    shared = Threshold.create_shared(Threshold.Config(kind="threshold", image_threshold=3.0), ctx)
    assert shared.image_threshold == 3.0
    assert ctx.postprocess == shared  # the run publishes the threshold in effect (eval reports with it)
    out = run_operator("threshold", [scores(0, 3.0)], shared=shared)
    assert out[0].normalized == 0.5
