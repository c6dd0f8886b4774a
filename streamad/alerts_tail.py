"""``streamad alerts tail``: print the alert events of a Kafka topic as they arrive, without duplicates.

Reading, positions and de-duplication are :func:`streamad.sinks.kafka.consume_events`, the cluster a
:class:`~streamad.kafka_connection.KafkaConnection`; this module parses ``--since``, formats one line per event and
bounds the run (``--max-events``, ``--idle-timeout``).

Human-readable line (one per event)::

    2026-11-21T10:41:17.120Z  UCSDped2/Test001  start   3f2a...  seq=0  peak=0.83  regions=2  frame=57

``--json`` prints the alert JSON itself (the schema of :meth:`streamad.frames.Event.to_json`), one per line.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import Any, Callable

from streamad.kafka_connection import KafkaConnection

__all__ = ["parse_since", "format_event", "tail"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_since(text: str, now: float | None = None) -> float:
    """The start time that ``--since`` names, in Unix seconds.

    Accepts a duration back from ``now`` (``90s``, ``10m``, ``2h``, ``1d``, ``1h30m``; a bare number is seconds)
    or an ISO 8601 time (``2026-11-21T10:00:00Z``, ``2026-11-21 10:00:00+01:00``; no zone = UTC).

    Args:
        text: the option's value.
        now: the current time in Unix seconds (default ``time.time()``).

    Raises:
        ValueError: neither form (the message names ``--since`` and the forms allowed).
    """
    s = text.strip()
    now = time.time() if now is None else now
    if re.fullmatch(r"\d+(?:\.\d+)?", s):
        return now - float(s)
    parts = list(_DURATION.finditer(s))
    if parts and "".join(m.group(0) for m in parts) == s:
        return now - sum(float(m.group(1)) * _UNITS[m.group(2)] for m in parts)
    try:
        when = dt.datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith("Z") else s)
    except ValueError:
        raise ValueError(f"--since: expected a duration (30s, 10m, 2h, 1d, 1h30m) or an ISO 8601 time "
                         f"(2026-11-21T10:00:00Z), got {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def format_event(event: dict[str, Any]) -> str:
    """One human-readable line for an alert: time, stream, type, event id, seq, peak score, regions, frame."""
    peak = event.get("peak_score")
    score = f"{peak:.3f}" if isinstance(peak, (int, float)) else "-"
    return (f"{event.get('time', '-')}  {event.get('stream_id', '-')}  {event.get('type', '-'):<6}  "
            f"{event.get('event_id', '-')}  seq={event.get('seq', '-')}  peak={score}  "
            f"regions={len(event.get('regions') or [])}  frame={event.get('frame', '-')}")


def tail(bootstrap: str | KafkaConnection, topic: str, *, stream: str | None = None, since: float | None = None,
         json_out: bool = False, max_events: int | None = None, idle_timeout_s: float | None = None,
         out: Callable[[str], None] = print, on_ready: Callable[[], None] | None = None,
         **consumer_options: Any) -> int:
    """Print the events of ``topic`` (duplicates dropped) until ``max_events`` were printed, no event arrived
    for ``idle_timeout_s`` seconds, or the caller interrupts (Ctrl-C raises ``KeyboardInterrupt`` through here).

    Without ``since`` only events produced from now on are printed (like ``tail -f``); with ``since`` (Unix
    seconds) the events from that time on come first.

    Args:
        bootstrap: ``host:port[,host:port...]``, or a :class:`~streamad.kafka_connection.KafkaConnection`.
        topic: alert topic.
        stream: only this stream id's events.
        since: start time, Unix seconds (:func:`parse_since`).
        json_out: print the alert JSON instead of a readable line.
        max_events: stop after printing this many (``None`` = no bound).
        idle_timeout_s: stop when nothing arrived for this many seconds (``None`` = never).
        out: where each line goes.
        on_ready: called once reading positions are fixed (events produced afterwards are printed).
        **consumer_options: passed to ``kafka.KafkaConsumer`` (security options ...).

    Returns:
        the number of events printed.

    Raises:
        kafka.errors.KafkaError: the brokers cannot be reached; ValueError: a message is not alert JSON.
    """
    from streamad.sinks.kafka import consume_events

    if max_events is not None and max_events <= 0:
        return 0
    count = 0
    events = consume_events(bootstrap, topic, stream=stream, from_beginning=False, timeout_s=idle_timeout_s,
                            since=since, on_ready=on_ready, **consumer_options)
    try:
        for event in events:
            out(json.dumps(event, ensure_ascii=False, separators=(",", ":")) if json_out else format_event(event))
            count += 1
            if max_events is not None and count >= max_events:
                break
    finally:
        events.close()
    return count
