"""Bounded queues between pipeline stages.

* :class:`StageQueue`: a bounded FIFO between two stages (blocking put: lossless), reporting its depth.
* :class:`IngressQueue`: one bounded queue per stream in front of the first stage, read round-robin so that every
  stream gets its turn; when a stream's queue is full, its policy decides: ``block`` (files: lossless),
  ``drop_oldest`` or ``drop_newest`` (live sources: counted drops, bounded memory).
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict, deque
from typing import Any, Callable

__all__ = ["StageQueue", "IngressQueue", "POLICIES"]

POLICIES = ("block", "drop_oldest", "drop_newest")


class StageQueue(queue.Queue):
    """``queue.Queue`` with a name and a depth gauge callback (``on_depth(n)`` after each put/get)."""

    def __init__(self, name: str, maxsize: int, on_depth: Callable[[int], None] | None = None) -> None:
        super().__init__(maxsize)
        self.name = name
        self._on_depth = on_depth

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        if self._on_depth:
            self._on_depth(self.qsize())

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        item = super().get(block, timeout)
        if self._on_depth:
            self._on_depth(self.qsize())
        return item


class IngressQueue:
    """Per-stream bounded queues read fairly (round-robin over streams that have messages).

    Args:
        maxsize: capacity of each stream's queue (messages).
        on_drop: ``on_drop(stream_id)`` called for each dropped frame.
    """

    def __init__(self, maxsize: int, on_drop: Callable[[str], None] | None = None) -> None:
        self.maxsize = maxsize
        self._queues: OrderedDict[str, deque[Any]] = OrderedDict()
        self._policy: dict[str, str] = {}
        self._cv = threading.Condition()
        self._on_drop = on_drop

    def add_stream(self, stream_id: str, policy: str) -> None:
        """Register ``stream_id`` with a full-queue ``policy`` (one of :data:`POLICIES`)."""
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        with self._cv:
            self._queues.setdefault(stream_id, deque())
            self._policy[stream_id] = policy

    def put(self, stream_id: str, item: Any, force: bool = False, stop: threading.Event | None = None) -> bool:
        """Enqueue ``item`` for ``stream_id``; returns False if it (or an older item) was dropped.

        ``force`` always enqueues (end-of-stream markers are never dropped), blocking while full. A blocked put
        gives up when ``stop`` is set (returns False).
        """
        with self._cv:
            q = self._queues[stream_id]
            policy = "block" if force else self._policy[stream_id]
            dropped = False
            if len(q) >= self.maxsize:
                if policy == "drop_newest":
                    if self._on_drop:
                        self._on_drop(stream_id)
                    return False
                if policy == "drop_oldest":
                    q.popleft()
                    dropped = True
                    if self._on_drop:
                        self._on_drop(stream_id)
                else:
                    while len(q) >= self.maxsize:
                        if stop is not None and stop.is_set() and not force:
                            return False
                        self._cv.wait(0.1)
            q.append(item)
            self._cv.notify_all()
            return not dropped

    def get(self, timeout: float | None = None) -> tuple[str, Any] | None:
        """Next ``(stream_id, item)`` round-robin over non-empty streams, or ``None`` after ``timeout`` seconds."""
        with self._cv:
            while True:
                for sid in list(self._queues):
                    q = self._queues[sid]
                    if q:
                        item = q.popleft()
                        self._queues.move_to_end(sid)  # this stream goes to the back of the round
                        self._cv.notify_all()
                        return sid, item
                if not self._cv.wait(timeout):
                    return None

    def remove_stream(self, stream_id: str) -> None:
        """Forget a stream whose end-of-stream marker was consumed."""
        with self._cv:
            self._queues.pop(stream_id, None)
            self._policy.pop(stream_id, None)

    def depth(self) -> int:
        with self._cv:
            return sum(len(q) for q in self._queues.values())
