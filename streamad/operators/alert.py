"""``alert``: the event lifecycle (start, update, end) of design.md, per stream."""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from typing import Any, Literal

import numpy as np
from pydantic import Field

from streamad.explain import DEFAULT_THRESHOLD, event_reasons, region_reasons
from streamad.frames import Event, Scores
from streamad.parts import Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["Alert", "iso_utc", "event_id"]

_EVENT_NS = uuid.uuid5(uuid.NAMESPACE_URL, "https://streamad/event_id")


def iso_utc(t: float) -> str:
    """Unix seconds -> ISO 8601 UTC string with milliseconds (``2026-11-21T07:21:51.123Z``)."""
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_id(stream_id: str, first: Scores, settings: dict[str, Any]) -> str:
    """The id of the event of stream ``stream_id`` whose first anomalous frame is ``first``.

    For a file stream (``first.origin`` set: a fingerprint of the file's path, size and modification time) it is
    ``uuid5(ns, JSON [stream id, origin, model name, model version, alert settings, first frame index])``: the same
    file read again (a replay after a restart) with the same model and ``alert`` settings gives the same ids, so
    consumers that drop duplicates by ``(event_id, type, seq)`` drop the replayed events; another file, a changed
    file, a refitted model (its version includes the fit time) or other settings give other ids. For a live stream
    (``origin`` is ``None``) it is a random ``uuid4``: unique per event.
    """
    if first.origin is None:
        return str(uuid.uuid4())
    key = [stream_id, first.origin, first.model.get("name"), first.model.get("version"), settings, first.index]
    return str(uuid.uuid5(_EVENT_NS, json.dumps(key, sort_keys=True, default=str)))


class _Open:
    """State of an open event."""

    def __init__(self, stream_id: str, first: Scores, settings: dict[str, Any]) -> None:
        self.event_id = event_id(stream_id, first, settings)
        self.start = first
        self.seq = 0
        self.frames = 0
        self.sum = 0.0
        self.peak = first
        self.last_anomalous = first
        self.last_sent_pts = first.pts

    def add(self, s: Scores) -> None:
        self.frames += 1
        self.sum += float(s.normalized or 0.0)
        if (s.normalized or 0.0) >= (self.peak.normalized or 0.0):
            self.peak = s


@OPERATORS.register("alert")
class Alert(Operator):
    """Turn normalised frame scores into alert events (a streamad step; anomalib labels frames only).

    Lifecycle per stream: ``start`` when ``Scores.normalized >= threshold`` for ``min_frames`` consecutive frames
    (the event starts at the first of them); ``update`` while it lasts, at most every ``update_interval_s`` seconds
    of stream time; ``end`` after ``cooldown_frames`` consecutive frames below the threshold (``end_frame`` is the last
    anomalous frame), or when the stream ends. Each message carries peak and mean normalised score over the event
    so far and the regions of the peak frame (top ``max_regions`` by score, boxes in source pixels, with each
    feature stream's contribution and ``reasons``: the words of the streams that drove the region, see
    :mod:`streamad.explain`), and the event's ``reasons`` (their union, largest contribution first).

    Event ids: reproducible for file streams (same file, model and settings give the same ids, so a replay can be
    deduplicated), random for live streams; see :func:`event_id`.

    Input/output: :class:`Scores`; events are appended to ``Scores.events`` of the frame that caused them, and
    every frame is passed on at once (the operator holds nothing, so it adds no latency). The ``end`` of an event
    still open when the stream ends has no frame to ride on: it is raised by :meth:`end_events` and travels on the
    stream's :class:`~streamad.frames.EndOfStream` (``frame`` / ``end_frame``: the last frame seen / the last
    anomalous one).

    Config:
        threshold: normalised decision threshold (0.5 after min-max normalisation).
        min_frames, cooldown_frames: frames.
        update_interval_s: seconds of stream time between updates (0 disables updates).
        max_regions: regions listed per message.
        explain_threshold: contribution (min-max normalised on training regions, so 1.0 = the largest value of a
            normal training region) from which a feature stream is named as a region's reason; when no stream
            reaches it, the largest contributor is named.
    """

    raises_events = True

    class Config(PartConfig):
        kind: Literal["alert"] = "alert"
        threshold: float = Field(0.5, ge=0, le=1)
        min_frames: int = Field(3, ge=1)
        cooldown_frames: int = Field(10, ge=1)
        update_interval_s: float = Field(5.0, ge=0)
        max_regions: int = Field(5, ge=0)
        explain_threshold: float = Field(DEFAULT_THRESHOLD, ge=0)

    def __init__(self, config: "Alert.Config", shared: object, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        self.run: list[Scores] = []  # consecutive above-threshold frames while no event is open
        self.open: _Open | None = None
        self.below = 0
        self.last: Scores | None = None  # the last frame seen (the end of an event open at stream end)
        self._settings = self.config.model_dump(mode="json")  # part of a file stream's event ids

    def _event(self, kind: str, s: Scores, end_frame: int | None = None) -> Event:
        o = self.open
        assert o is not None
        peak = o.peak
        order = np.argsort(-np.asarray(peak.region_scores))[: self.config.max_regions]
        regions: list[dict[str, Any]] = []
        listed: list[dict[str, float]] = []
        for i in order:
            contributions = {k: float(v[i]) for k, v in peak.contributions.items()}
            listed.append(contributions)
            regions.append({
                "box": [round(float(v), 1) for v in peak.boxes[i]],
                "score": round(float(peak.region_scores[i]), 4),
                "contributions": {k: round(v, 4) for k, v in contributions.items()},
                "reasons": region_reasons(contributions, self.config.explain_threshold),
            })
        ev = Event(
            event_id=o.event_id, stream_id=self.stream_id, type=kind, seq=o.seq,
            start_time=iso_utc(o.start.wall_time), time=iso_utc(s.wall_time),
            start_pts=round(o.start.pts, 3), pts=round(s.pts, 3), start_frame=o.start.index, frame=s.index,
            end_frame=end_frame, peak_score=round(float(peak.normalized or 0.0), 4),
            mean_score=round(o.sum / max(o.frames, 1), 4), threshold=self.config.threshold,
            model=dict(s.model or peak.model), regions=regions, frames=o.frames,
            reasons=event_reasons(listed, self.config.explain_threshold),
        )
        o.seq += 1
        o.last_sent_pts = s.pts
        return ev

    def process(self, s: Scores) -> list[Scores]:
        self._update(s)
        self.last = s
        return [s]

    def end_events(self) -> list[Event]:
        """The ``end`` of the event still open when the stream ended (none when no event is open)."""
        if self.open is None or self.last is None:
            return []
        ev = self._event("end", self.last, end_frame=self.open.last_anomalous.index)
        self.open = None
        return [ev]

    def _update(self, s: Scores) -> None:
        c = self.config
        above = (s.normalized or 0.0) >= c.threshold
        if self.open is None:
            if not above:
                self.run.clear()
                return
            self.run.append(s)
            if len(self.run) < c.min_frames:
                return
            self.open = _Open(self.stream_id, self.run[0], self._settings)
            for r in self.run:
                self.open.add(r)
            self.open.last_anomalous = s
            self.run.clear()
            self.below = 0
            s.events.append(self._event("start", s))
            return
        o = self.open
        if above:
            self.below = 0
            o.add(s)
            o.last_anomalous = s
            if c.update_interval_s > 0 and s.pts - o.last_sent_pts >= c.update_interval_s:
                s.events.append(self._event("update", s))
            return
        self.below += 1
        if self.below >= c.cooldown_frames:
            s.events.append(self._event("end", s, end_frame=o.last_anomalous.index))
            self.open = None
            self.below = 0
        return

