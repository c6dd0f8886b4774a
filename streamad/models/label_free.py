"""Thresholds chosen on normal footage alone, without labels (for a user's own camera).

Two methods, both applied to the smoothed raw frame scores of held-out normal footage (frames the model was not
fitted on):

* ``quantile``: the image threshold is the ``q``-quantile of the normal frame scores, so about a share ``1 - q`` of
  normal frames score above it. It says nothing about alerts: the alert operator's ``min_frames`` and
  ``cooldown_frames`` decide how many of those frames become events.
* ``false_alarm_rate``: the lowest threshold at which the pipeline's alert operator, replayed over the held-out
  footage with its ``min_frames`` / ``cooldown_frames``, would have raised at most ``events_per_hour`` events per
  hour. Thresholds are tried from the highest normal score downwards; the answer is the lowest one such that it and
  every higher one stay within the budget (the event count is not monotone in the threshold: raising it can split
  one long event in two), so a higher threshold never raises more alerts than the budget allows.

What ``false_alarm_rate`` promises: on the held-out footage itself, at most ``floor(events_per_hour * hours)``
events (zero when the footage is shorter than one budgeted event). On new normal footage of the same scene the rate
is an estimate from a finite sample: the longer the held-out footage, the closer it holds.
The tolerance stated for new normal footage of the same scene: at most ``max(1, 2 x events_per_hour x hours)``
events, i.e. twice the budget, and one stray event on footage too short for the budget to allow one
(``tests/integration/test_fit_from_camera.py`` checks it on a camera: vtest.avi served over RTSP).

No peer defines these (anomalib's thresholds are F1-adaptive on labelled validation data, or manual); they follow
the usual practice of video surveillance systems, where a camera's operator budgets false alarms per hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["AlertReplay", "event_spans", "count_events", "false_alarm_threshold", "quantile_threshold", "MIN_HELD_OUT_S"]

MIN_HELD_OUT_S = 30.0
"""Least held-out normal footage (seconds, all streams together) ``false_alarm_rate`` accepts."""


@dataclass(frozen=True)
class AlertReplay:
    """The parts of the alert operator's lifecycle that decide how many events start (``streamad.operators.alert``).

    Attributes:
        min_frames: consecutive frames at or above the threshold that start an event.
        cooldown_frames: consecutive frames below it that end an open event.
        threshold: the alert's decision point on the normalised score (0.5 = the image threshold).
    """

    min_frames: int = 3
    cooldown_frames: int = 10
    threshold: float = 0.5


def event_spans(scores: np.ndarray, threshold: float, replay: AlertReplay) -> list[tuple[int, int]]:
    """The events the alert operator raises on one stream's scores at ``threshold``, as positions.

    Args:
        scores: ``(N,)`` float frame scores of one stream, in frame order (the units of ``threshold``).
        threshold: a frame is anomalous when its score is ``>= threshold``.
        replay: the alert operator's ``min_frames`` / ``cooldown_frames``.

    Returns:
        per event ``(first, last)``: positions in ``scores`` of its first frame (the first of the ``min_frames``
        that started it) and of its last anomalous frame (an event still open at the end included).
    """
    above = np.asarray(scores, np.float64) >= threshold
    if not above.any():
        return []
    starts = np.concatenate([[0], np.flatnonzero(np.diff(above.astype(np.int8))) + 1])
    lengths = np.diff(np.concatenate([starts, [above.size]]))
    spans: list[tuple[int, int]] = []
    open_first = -1  # position where the open event started, -1 when none is open
    for first, start, length in zip(above[starts], starts, lengths):
        if first:
            if open_first < 0 and length >= replay.min_frames:
                open_first = int(start)
            if open_first >= 0:
                spans_end = int(start + length - 1)
                if spans and spans[-1][0] == open_first:
                    spans[-1] = (open_first, spans_end)
                else:
                    spans.append((open_first, spans_end))
        elif open_first >= 0 and length >= replay.cooldown_frames:
            open_first = -1
    return spans


def count_events(scores: np.ndarray, threshold: float, replay: AlertReplay) -> int:
    """Events the alert operator starts on one stream's scores at ``threshold`` (:func:`event_spans`)."""
    return len(event_spans(scores, threshold, replay))


def quantile_threshold(scores: np.ndarray, q: float) -> float:
    """The ``q``-quantile of normal frame scores (linear interpolation, ``numpy.quantile``).

    Raises:
        ValueError: no scores, or ``q`` outside ``(0, 1)``.
    """
    s = np.asarray(scores, np.float64)
    if s.size == 0:
        raise ValueError("quantile threshold: no normal frame scores")
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile threshold: q must be in (0, 1), got {q}")
    return float(np.quantile(s, q))


@dataclass(frozen=True)
class FalseAlarmCalibration:
    """Result of :func:`false_alarm_threshold`.

    Attributes:
        threshold: the chosen threshold (score units).
        events: events the replay raised at it on the held-out footage.
        hours: held-out footage (hours).
        budget: events allowed on it (``floor(events_per_hour * hours)``).
    """

    threshold: float
    events: int
    hours: float
    budget: int


def false_alarm_threshold(streams: Sequence[np.ndarray], seconds: float, events_per_hour: float,
                          replay: AlertReplay, where: str = "held-out footage") -> FalseAlarmCalibration:
    """The lowest threshold whose replayed alert count, and that of every higher threshold, is within budget.

    Args:
        streams: per stream, ``(N_i,)`` float frame scores in frame order (normal footage, not used for fitting).
        seconds: duration of that footage, all streams together (seconds).
        events_per_hour: the false alarms a user accepts per hour.
        replay: the alert operator's lifecycle settings.
        where: which streams these are, for messages.

    Raises:
        ValueError: no frames, ``events_per_hour <= 0``, or footage shorter than :data:`MIN_HELD_OUT_S` seconds or
            than ten times ``min_frames + cooldown_frames`` frames (the message says how much is needed).
    """
    arrays = [np.asarray(s, np.float64) for s in streams if len(s)]
    frames = sum(a.size for a in arrays)
    if events_per_hour <= 0:
        raise ValueError(f"false_alarm_rate: events_per_hour must be > 0, got {events_per_hour}")
    need_frames = 10 * (replay.min_frames + replay.cooldown_frames)
    if frames < need_frames or seconds < MIN_HELD_OUT_S:
        raise ValueError(
            f"{where}: {seconds:.1f} s ({frames} frames) of held-out normal footage is too short to calibrate "
            f"false_alarm_rate: need at least {MIN_HELD_OUT_S:g} s and {need_frames} frames (ten times the alert's "
            f"min_frames + cooldown_frames); a longer recording makes the rate estimate closer")
    hours = seconds / 3600.0
    budget = int(np.floor(events_per_hour * hours + 1e-9))
    candidates = np.unique(np.concatenate(arrays))[::-1]  # descending
    chosen = float(np.nextafter(candidates[0], np.inf))  # above every normal score: no event at all
    events_at = 0
    for t in candidates:
        n = sum(count_events(a, float(t), replay) for a in arrays)
        if n > budget:
            break
        chosen, events_at = float(t), n
    return FalseAlarmCalibration(chosen, events_at, hours, budget)
