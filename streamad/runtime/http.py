"""Operations endpoints of ``streamad serve``: ``/healthz`` (liveness) and ``/readyz`` (readiness), next to
``/metrics``, answered from the running :class:`~streamad.runtime.pipeline.Pipeline`.

* ``GET /healthz``: ``200`` while the engine's stage and delivery threads are alive (also while starting and
  draining, and while a stream failed or a sink cannot deliver: the process itself is fine), ``503`` when one of
  them died (restart the process). Body: JSON ``{"status": "ok"|"failing", "streams": {id: {"status", "live",
  "reconnects"[, "error"]}}}``.
* ``GET /readyz``: ``200`` when the pipeline runs, is not stopping, every stream it serves is ``live`` or has
  ``ended`` (a file that was served to its end), every sink can deliver and delivery is not stalled. ``503``
  otherwise, with a reason for each problem in ``reasons``:

  - ``{id: status}`` for a stream that is ``connecting``, in ``backoff`` or ``failed``. A stream that ended with an
    error (a camera past ``max_reconnects``, a corrupt file, an operator failure) stays ``failed`` (its ``error``
    in ``streams``) until a config reload removes or replaces it: a pod whose camera gave up is not ready;
  - ``{"sink:<name>": reason}`` while a sink's :meth:`~streamad.parts.Sink.delivery_problem` reports one (broker
    unreachable past its bound, spool full or unwritable); it clears when the sink recovers;
  - ``{"delivery": "stalled: ..."}`` while messages wait for the sinks and none was delivered for the pipeline's
    ``stall_after_s`` (a sink write blocked);
  - ``{"pipeline": "starting" | "not running" | "stopping" | "engine thread died"}``.

  Body: JSON ``{"ready": bool, "reasons": {...}, "streams": {...}, "delivery": {sink: reason}}``.

Stream ids and statuses carry no credentials (live stream ids are derived without them) and error and delivery
reasons are redacted, so the bodies are safe to expose. Endpoints bind 127.0.0.1 unless ``runtime.http.host`` says otherwise.
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
        reasons.update({f"sink:{name}": why for name, why in h["delivery"].items()})
        if h["stalled"]:
            reasons["delivery"] = f"stalled: {h['stalled']}"
        if not h["running"]:
            reasons["pipeline"] = "not running"
        elif h["stopping"]:
            reasons["pipeline"] = "stopping"
        elif not h["threads_alive"]:
            reasons["pipeline"] = "engine thread died"
        body = {"ready": not reasons, "reasons": reasons, "streams": h["streams"], "delivery": h["delivery"]}
        return (200 if not reasons else 503), body

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
