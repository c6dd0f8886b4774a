"""The metrics / health HTTP server under misbehaving clients: silent connections are closed after the request
timeout, connections over the limit are refused at once, and a client that hangs up prints no traceback."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from streamad.sinks.prometheus import MetricsServer


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(5)
    return s


def _closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        return False


def _still_answers(server: MetricsServer) -> bool:
    with urllib.request.urlopen(server.url, timeout=5) as r:
        return r.status == 200


def test_silent_connections_are_closed_and_their_threads_end() -> None:
    before = threading.active_count()
    server = MetricsServer(CollectorRegistry(), port=0, request_timeout_s=0.5, max_connections=32)
    try:
        t0 = time.monotonic()
        idle = [_connect(server.port) for _ in range(20)]  # half-open: connect, never send a request
        assert all(_closed_by_server(s) for s in idle)  # the server hung up on each after the timeout
        assert time.monotonic() - t0 >= 0.4
        for s in idle:
            s.close()
        deadline = time.monotonic() + 5
        while threading.active_count() > before + 1 and time.monotonic() < deadline:  # + the server thread
            time.sleep(0.05)
        assert threading.active_count() <= before + 1
        assert _still_answers(server)
    finally:
        server.stop()


def test_connections_over_the_limit_are_refused_and_the_server_goes_on() -> None:
    server = MetricsServer(CollectorRegistry(), port=0, request_timeout_s=2.0, max_connections=4)
    try:
        held = [_connect(server.port) for _ in range(4)]
        time.sleep(0.3)
        extra = _connect(server.port)
        assert _closed_by_server(extra)  # refused at once, well before the 2 s timeout
        extra.close()
        for s in held:
            s.close()
        time.sleep(0.3)
        assert _still_answers(server)
    finally:
        server.stop()


def test_a_client_that_hangs_up_prints_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    server = MetricsServer(CollectorRegistry(), port=0, request_timeout_s=2.0)
    try:
        for _ in range(20):  # ask for the metrics and hang up before reading the reply
            s = _connect(server.port)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            s.close()
        time.sleep(0.5)
        assert _still_answers(server)
    finally:
        server.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipeError" not in err and "ConnectionResetError" not in err, err
