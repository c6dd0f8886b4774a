"""False alarms per hour of a labelled video run, at a given threshold: the alert operator's events (replayed with
:func:`streamad.models.label_free.event_spans`) that cover no ground-truth anomalous frame, per hour of footage.

``streamad eval`` reports it at the model's threshold and at the F1-optimal one (the oracle, chosen on the test
labels), so the gap between a label-free calibration and the best a labelled one could do is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from streamad.models.label_free import AlertReplay, event_spans

__all__ = ["AlarmCount", "count_false_alarms"]


@dataclass(frozen=True)
class AlarmCount:
    """Events of a replay over labelled streams.

    Attributes:
        events: events raised. false_alarms: those whose frames hold no anomalous label.
        hours: footage replayed (hours). per_hour: ``false_alarms / hours`` (NaN without duration).
    """

    events: int
    false_alarms: int
    hours: float

    @property
    def per_hour(self) -> float:
        """False alarms per hour of footage."""
        return self.false_alarms / self.hours if self.hours > 0 else float("nan")


def count_false_alarms(records: Sequence[dict[str, Any]], decision: float, replay: AlertReplay) -> AlarmCount:
    """Replay the alert over each stream's smoothed scores and count the events that cover no anomalous frame.

    Args:
        records: one per frame, sorted by ``(stream_id, index)``: ``stream_id``, ``score`` (smoothed raw), ``label``
            (0/1) and ``pts`` (seconds).
        decision: the alert's decision point in ``score`` units (the image threshold shifted by the alert's own
            threshold, see :class:`~streamad.models.label_free.AlertReplay`).
        replay: the alert operator's ``min_frames`` / ``cooldown_frames``.
    """
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_stream.setdefault(r["stream_id"], []).append(r)
    events = false_alarms = 0
    seconds = 0.0
    for recs in by_stream.values():
        score = np.array([r["score"] for r in recs], np.float64)
        label = np.array([r["label"] for r in recs], np.int64)
        pts = np.array([r["pts"] for r in recs], np.float64)
        if pts.size > 1:
            seconds += float(pts[-1] - pts[0]) + max(float(np.median(np.diff(pts))), 0.0)
        for first, last in event_spans(score, decision, replay):
            events += 1
            false_alarms += int(not label[first:last + 1].any())
    return AlarmCount(events, false_alarms, seconds / 3600.0)
