"""``prometheus`` sink: serves the pipeline's metrics (``ctx.metrics.registry``) over HTTP for Prometheus to scrape.

Endpoints: ``GET /metrics`` (Prometheus text format, or OpenMetrics when the scraper asks for it, via
``prometheus_client.exposition.choose_encoder``) and ``GET /healthz`` (``200 ok``, for liveness probes). When
``streamad serve`` runs it, ``/healthz`` and ``/readyz`` answer from the running pipeline
(:mod:`streamad.runtime.http`, passed in as ``BuildContext.http_routes``).
Binds loopback by default; set ``host: 0.0.0.0`` to be scraped from other machines.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Literal

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from pydantic import Field

from streamad.errors import ConfigError
from streamad.frames import Scores
from streamad.parts import BuildContext, Sink, SinkConfig
from streamad.registry import SINKS

__all__ = ["PrometheusSink", "MetricsServer", "Route", "REQUEST_TIMEOUT_S", "MAX_CONNECTIONS"]

log = logging.getLogger("streamad.http")

REQUEST_TIMEOUT_S = 10.0
"""Seconds a connection may stay silent (an idle or half-open client) before the server closes it."""
MAX_CONNECTIONS = 64
"""Connections served at once; more are closed at once (a scrape and a few probes need a handful)."""

# an extra endpoint: () -> (HTTP status, body, content type)
Route = Callable[[], tuple[int, bytes, str]]


def _handler(registry: CollectorRegistry, routes: dict[str, Route],
             timeout_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = timeout_s  # socket timeout of every read: a silent client is dropped, its thread ends

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, encoder(registry), content_type)
            elif path in routes:
                self._reply(*routes[path]())
            elif path == "/healthz":
                self._reply(200, b"ok\n", "text/plain; charset=utf-8")
            else:
                known = ", ".join(sorted({"/metrics", "/healthz", *routes}))
                self._reply(404, f"not found: try {known}\n".encode(), "text/plain; charset=utf-8")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes every second: keep the log quiet
            pass

    return Handler


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most ``max_connections`` at once and logs, rather than prints, the
    errors of a request (a client that hung up is not an error)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("HTTP: %d connections open already; closing one from %s", self.max_connections,
                        client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout, TimeoutError)):
            log.debug("HTTP: client %s went away: %s", client_address[0], exc)
            return
        log.warning("HTTP: request from %s failed: %r", client_address[0], exc)


class MetricsServer:
    """An HTTP server thread serving ``registry`` at ``/metrics`` and a liveness ``/healthz``.

    Args:
        registry: the prometheus_client registry to expose.
        host: address to bind (``127.0.0.1`` = this machine only).
        port: TCP port (``0`` = any free port; :attr:`port` tells which).
        routes: more ``GET`` endpoints, ``{path: route}`` (they take precedence over the default ``/healthz``).
        request_timeout_s: a connection silent this long (seconds) is closed.
        max_connections: connections served at once; more are closed at once.

    Raises:
        OSError: the address cannot be bound (port in use, unknown host).
    """

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 9108,
                 routes: dict[str, Route] | None = None, request_timeout_s: float = REQUEST_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self._server = _BoundedHTTPServer((host, port), _handler(registry, dict(routes or {}), request_timeout_s),
                                          max_connections)
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"metrics-http-{self.port}",
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


@SINKS.register("prometheus")
class PrometheusSink(Sink):
    """Serves the pipeline metrics for scraping while the pipeline runs; it does nothing per frame (the runtime
    updates ``ctx.metrics``)."""

    class Config(SinkConfig):
        """``host``: address to bind (loopback unless set); ``port``: TCP port (``0`` picks a free one)."""

        kind: Literal["prometheus"] = "prometheus"
        host: str = "127.0.0.1"
        port: int = Field(9108, ge=0, le=65535)

    def __init__(self, config: Config, ctx: BuildContext) -> None:
        super().__init__(config, ctx)
        if ctx.metrics is None:
            raise ValueError("prometheus sink needs the pipeline's metrics (BuildContext.metrics is None)")
        try:
            self.server = MetricsServer(ctx.metrics.registry, config.host, config.port,
                                        routes=ctx.http_routes)
        except OSError as e:
            raise ConfigError(f"prometheus sink: cannot listen on {config.host}:{config.port} ({e}); set the sink's "
                              f"host/port to a free address") from e

    def write(self, scores: Scores) -> None:
        """Nothing to do: metrics are updated by the runtime and read at scrape time."""

    def close(self) -> None:
        """Stop the HTTP server and free the port."""
        self.server.stop()
