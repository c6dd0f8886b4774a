"""``stdout`` sink: one human-readable line per alert event (and optionally per frame), flushed at once."""

from __future__ import annotations

import sys
from typing import Literal

from streamad.frames import EndOfStream, Event, Scores
from streamad.parts import Sink, SinkConfig
from streamad.registry import SINKS

__all__ = ["StdoutSink", "format_event", "format_frame"]


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_event(event: Event, scores: Scores | None) -> str:
    """One line for an alert, e.g.
    ``ALERT start  stream=cam1 event=3f2a... frame=120 t=4.800s score=0.731 peak=0.812 regions=2``.

    ``score`` is the normalised score (0-1) of the frame that caused the event (``-`` for an ``end`` raised by the
    stream's end, ``scores`` ``None``), ``peak`` the event's peak so far, ``t`` the stream time in seconds.
    """
    score = _score(scores.normalized if scores is not None else None)
    return (f"ALERT {event.type:<6} stream={event.stream_id} event={event.event_id} frame={event.frame} "
            f"t={event.pts:.3f}s score={score} peak={_score(event.peak_score)} "
            f"regions={len(event.regions)}")


def format_frame(scores: Scores) -> str:
    """One line for a scored frame: stream, frame index, stream time, raw and normalised score, verdict."""
    verdict = {True: "ANOMALY", False: "normal", None: "-"}[scores.anomalous]
    return (f"frame stream={scores.stream_id} frame={scores.index} t={scores.pts:.3f}s "
            f"raw={scores.raw_score:.4g} score={_score(scores.normalized)} {verdict}")


@SINKS.register("stdout")
class StdoutSink(Sink):
    """Prints a line per alert event to standard output as it happens (``all_frames``: also a line per frame)."""

    class Config(SinkConfig):
        """``all_frames``: print every scored frame too, not only alert events."""

        kind: Literal["stdout"] = "stdout"
        all_frames: bool = False

    def write(self, scores: Scores) -> None:
        """Print the frame line (if ``all_frames``) then one line per event, flushed."""
        lines = [format_frame(scores)] if self.config.all_frames else []
        _print(lines + [format_event(e, scores) for e in scores.events])

    def end_stream(self, eos: EndOfStream) -> None:
        """Print one line per event the stream's end raised (the ``end`` of an event still open)."""
        _print([format_event(e, None) for e in eos.events])


def _print(lines: list[str]) -> None:
    if lines:
        out = sys.stdout  # looked up per call so that redirection (and pytest's capsys) is honoured
        out.write("\n".join(lines) + "\n")
        out.flush()
