"""Label-free thresholds: the alert replay matches the alert operator, and the calibrations keep their promises."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import run_operator, scores  # tests/ is on sys.path
from streamad.config import ThresholdConfig
from streamad.models.label_free import AlertReplay, count_events, event_spans, false_alarm_threshold
from streamad.models.postprocess import PostProcessFitter


@pytest.mark.parametrize("seed", range(12))
def test_replay_raises_the_events_the_alert_operator_raises(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # bursty scores: long quiet stretches with anomalous bursts of random length, dips inside bursts
    x = (rng.random(400) < 0.15).astype(float)
    x = np.convolve(x, np.ones(int(rng.integers(1, 6))), mode="same") * rng.random(400)
    min_frames, cooldown = int(rng.integers(1, 5)), int(rng.integers(1, 12))
    out = run_operator("alert", [scores(i, 0.0, normalized=float(v)) for i, v in enumerate(x)],
                       threshold=0.3, min_frames=min_frames, cooldown_frames=cooldown, update_interval_s=0)
    events = [e for s in out for e in s.events]
    starts = [e.start_frame for e in events if e.type == "start"]
    ends = [e.end_frame for e in events if e.type == "end"]
    spans = event_spans(x, 0.3, AlertReplay(min_frames, cooldown))
    assert [a for a, _ in spans] == starts
    assert [b for _, b in spans] == ends
    assert count_events(x, 0.3, AlertReplay(min_frames, cooldown)) == len(starts)


def test_false_alarm_threshold_keeps_the_budget_on_the_held_out_footage() -> None:
    rng = np.random.default_rng(0)
    streams = [rng.normal(size=3000) for _ in range(4)]  # 4 x 300 s at 10 frames/s = 1/3 hour
    replay = AlertReplay(3, 10)
    for per_hour in (3.0, 15.0, 60.0):
        cal = false_alarm_threshold(streams, 1200.0, per_hour, replay)
        assert cal.budget == int(per_hour / 3)
        assert sum(count_events(s, cal.threshold, replay) for s in streams) <= cal.budget
        # every higher threshold keeps it too, and one step lower breaks it (the lowest such threshold)
        values = np.unique(np.concatenate(streams))
        higher = values[values > cal.threshold]
        assert all(sum(count_events(s, t, replay) for s in streams) <= cal.budget for t in higher[::50])
        lower = values[values < cal.threshold].max()
        assert sum(count_events(s, lower, replay) for s in streams) > cal.budget


def test_short_held_out_footage_says_how_much_is_needed() -> None:
    with pytest.raises(ValueError, match=r"too short.*need at least 30 s and 130 frames"):
        false_alarm_threshold([np.zeros(100)], 10.0, 1.0, AlertReplay(3, 10), "fit.validation")


def _fitter(values: np.ndarray, labels: list[int | None] | None = None) -> PostProcessFitter:
    f = PostProcessFitter()
    for i, v in enumerate(values):
        f.add(float(v), None if labels is None else labels[i], stream=f"s{i // 1000}", pts=(i % 1000) / 10)
    return f


def test_quantile_and_false_alarm_postprocess_use_normal_frames_only() -> None:
    rng = np.random.default_rng(1)
    normal = rng.normal(size=2000)
    values = np.concatenate([normal, [50.0] * 20])  # labelled anomalous frames must not move min-max
    labels: list[int | None] = [0] * 2000 + [1] * 20
    post = _fitter(values, labels).fit("quantile", None, "fit.validation", q=0.99)
    assert post.max == pytest.approx(normal.max())
    assert post.image_threshold == pytest.approx(np.quantile(normal, 0.99))
    assert post.calibration == {"q": 0.99}
    post = _fitter(normal).fit("false_alarm_rate", None, "fit.validation", events_per_hour=30.0,
                               replay=AlertReplay(3, 10, threshold=0.5))
    assert post.threshold_method == "false_alarm_rate"
    assert post.calibration["events_at_threshold"] <= post.calibration["events_budget"]
    # an alert threshold other than 0.5 gets the same decision point in raw units
    shifted = _fitter(normal).fit("false_alarm_rate", None, "fit.validation", events_per_hour=30.0,
                                  replay=AlertReplay(3, 10, threshold=0.6))
    decision = shifted.image_threshold + 0.1 * (shifted.max - shifted.min)
    assert decision == pytest.approx(post.image_threshold)


def test_threshold_config_names_the_missing_setting() -> None:
    with pytest.raises(ValueError, match="false_alarm_rate needs events_per_hour"):
        ThresholdConfig(method="false_alarm_rate")
    with pytest.raises(ValueError, match="quantile needs q"):
        ThresholdConfig(method="quantile")
    with pytest.raises(ValueError):
        ThresholdConfig(method="quantile", q=1.0)
