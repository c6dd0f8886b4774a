"""``jsonl`` sink: appends every alert event to a JSON Lines file, one ``Event.to_json()`` object a line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from streamad.errors import ConfigError
from streamad.frames import EndOfStream, Event, Scores
from streamad.parts import BuildContext, Sink, SinkConfig
from streamad.registry import SINKS

__all__ = ["JsonlSink", "event_json"]


def _plain(obj: Any) -> Any:
    """``json.dumps`` fallback for numpy scalars and arrays that parts may leave in an event."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"alert field of type {type(obj).__name__} is not JSON serialisable")


def event_json(event: Event) -> str:
    """The alert ``event`` as one line of compact JSON (no newline), the schema of :meth:`Event.to_json`.

    numpy scalars and arrays inside it are written as plain numbers and lists. Shared by the ``jsonl`` and
    ``kafka`` sinks, so that a file and a topic carry byte-identical alerts.

    Raises:
        TypeError: a field holds an object that is not JSON serialisable.
    """
    return json.dumps(event.to_json(), default=_plain, ensure_ascii=False, separators=(",", ":"))


@SINKS.register("jsonl")
class JsonlSink(Sink):
    """Appends each alert event (``start``/``update``/``end``) as one JSON line to ``path``, flushed per event.

    Frames without events write nothing. The file is opened in append mode, so restarts add to it.
    """

    class Config(SinkConfig):
        """``path``: output file (relative paths are relative to the working directory; parent folders are
        created). ``fsync``: also ``fsync`` after every event (durable against a machine crash, slower)."""

        kind: Literal["jsonl"] = "jsonl"
        path: str
        fsync: bool = False

    def __init__(self, config: Config, ctx: BuildContext) -> None:
        super().__init__(config, ctx)
        self.path = Path(config.path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"jsonl sink: cannot open path {self.path} for appending: {e}") from e

    def write(self, scores: Scores) -> None:
        """Append the frame's events (if any), flushed (and fsync'd if configured) before returning."""
        self._append(scores.events)

    def end_stream(self, eos: EndOfStream) -> None:
        """Append the events the stream's end raised (the ``end`` of an event still open), like :meth:`write`."""
        self._append(eos.events)

    def _append(self, events: list[Event]) -> None:
        if not events:
            return
        for event in events:
            self._file.write(event_json(event) + "\n")
        self._file.flush()
        if self.config.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._file.closed:
            self._file.close()
