"""A background worker of ``streamad serve``: a named daemon thread that runs a loop until it is told to stop
(config reload's :class:`~streamad.runtime.reload.ConfigReloader`, the ``--group`` worker
:class:`~streamad.runtime.group.GroupWorker`)."""

from __future__ import annotations

import abc
import threading
from typing import TypeVar

__all__ = ["LoopThread"]

_T = TypeVar("_T", bound="LoopThread")


class LoopThread(abc.ABC):
    """Runs :meth:`_loop` in a daemon thread named ``name`` from :meth:`start` until :meth:`stop`. The loop watches
    ``self._stop`` (a ``threading.Event``) and returns soon after it is set.

    Args:
        name: the thread's name (thread dumps, logs).
        join_timeout_s: how long :meth:`stop` waits for the loop to return (seconds).
    """

    def __init__(self, name: str, join_timeout_s: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._join_timeout_s = join_timeout_s

    @abc.abstractmethod
    def _loop(self) -> None:
        """The work, in the thread: return once ``self._stop`` is set."""

    def start(self: _T) -> _T:
        """Start the thread; returns ``self``."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Set the stop event and wait up to ``join_timeout_s`` for the loop to return. Idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._join_timeout_s)
