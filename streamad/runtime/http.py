"""Operations endpoints of ``streamad serve``: ``/healthz`` (liveness) and ``/readyz`` (readiness), next to
``/metrics``, answered from the running :class:`~streamad.runtime.pipeline.Pipeline`.

* ``GET /healthz``: ``200`` while the engine's stage and delivery threads are alive (also while starting and
  draining), ``503`` when one of them died (restart the process). Body: JSON ``{"status": "ok"|"failing",
  "streams": {id: {"status", "live", "reconnects"}}}``.
* ``GET /readyz``: ``200`` when the pipeline runs, is not stopping, and every stream is ``live`` or has ``ended``
  (a file that was served to its end); ``503`` while starting or draining, or while a stream is ``connecting``,
  in ``backoff`` or ``failed``. Body: JSON ``{"ready": bool, "reasons": {id: status}, "streams": {...}}``.

Stream ids and statuses carry no credentials (live stream ids are derived without them), so the bodies are safe to
expose. Endpoints bind 127.0.0.1 unless ``runtime.http.host`` says otherwise.
"""

from __future__ import annotations

import json
from typing import Any

from streamad.metrics import Metrics
from streamad.runtime.pipeline import Pipeline
from streamad.sinks.prometheus import MetricsServer, Route

__all__ = ["Health", "OpsServer"]

_JSON = "application/json"
_READY_STATUSES = ("live", "ended")


class Health:
    """Health and readiness of one pipeline, for HTTP probes. :meth:`attach` the pipeline once it is built;
    before that both probes say ``starting`` (``/healthz`` 200, ``/readyz`` 503)."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None

    def attach(self, pipeline: Pipeline) -> None:
        """Answer from ``pipeline`` from now on."""
        self.pipeline = pipeline

    def healthz(self) -> tuple[int, dict[str, Any]]:
        """``(HTTP status, body)`` of the liveness probe (see the module docstring)."""
        p = self.pipeline
        if p is None:
            return 200, {"status": "starting", "streams": {}}
        h = p.health()
        broken = h["running"] and not h["threads_alive"]
        return (503 if broken else 200), {"status": "failing" if broken else "ok", "streams": h["streams"]}

    def readyz(self) -> tuple[int, dict[str, Any]]:
        """``(HTTP status, body)`` of the readiness probe (see the module docstring)."""
        p = self.pipeline
        if p is None:
            return 503, {"ready": False, "reasons": {"pipeline": "starting"}, "streams": {}}
        h = p.health()
        reasons = {sid: s["status"] for sid, s in h["streams"].items() if s["status"] not in _READY_STATUSES}
        if not h["running"]:
            reasons["pipeline"] = "not running"
        elif h["stopping"]:
            reasons["pipeline"] = "stopping"
        elif not h["threads_alive"]:
            reasons["pipeline"] = "engine thread died"
        return (200 if not reasons else 503), {"ready": not reasons, "reasons": reasons, "streams": h["streams"]}

    def routes(self) -> dict[str, Route]:
        """``{"/healthz": ..., "/readyz": ...}`` for :class:`~streamad.sinks.prometheus.MetricsServer`."""
        return {"/healthz": lambda: _json_reply(*self.healthz()), "/readyz": lambda: _json_reply(*self.readyz())}


def _json_reply(status: int, body: dict[str, Any]) -> tuple[int, bytes, str]:
    return status, (json.dumps(body, sort_keys=True) + "\n").encode("utf-8"), _JSON


class OpsServer(MetricsServer):
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``host:port`` (an HTTP server thread).

    Raises:
        OSError: the address cannot be bound.
    """

    def __init__(self, health: Health, metrics: Metrics, host: str = "127.0.0.1", port: int = 8081) -> None:
        super().__init__(metrics.registry, host, port, routes=health.routes())
