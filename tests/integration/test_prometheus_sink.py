"""The prometheus sink serves the pipeline metrics; a real Prometheus scrapes them."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from servers import free_port
from streamad.errors import ConfigError
from streamad.metrics import Metrics
from streamad.parts import BuildContext
from streamad.sinks.prometheus import PrometheusSink


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read().decode()


def _sink(metrics: Metrics, port: int, host: str = "127.0.0.1") -> PrometheusSink:
    return PrometheusSink(PrometheusSink.Config(host=host, port=port), BuildContext(metrics=metrics))


def test_metrics_are_scraped_by_a_real_prometheus(start_prometheus) -> None:
    metrics = Metrics()
    port = free_port()
    sink = _sink(metrics, port)
    try:
        assert _get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        metrics.events.labels("cam1", "start").inc(3)
        metrics.anomaly_score.labels("cam1").set(0.75)
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and 'streamad_events_total{stream="cam1",type="start"} 3.0' in body

        prometheus = start_prometheus([f"127.0.0.1:{port}"])
        result = prometheus.wait_for('streamad_events_total{stream="cam1",type="start"}', timeout_s=20)
        assert float(result[0]["value"][1]) == 3.0
        assert prometheus.query('up{job="streamad"}')[0]["value"][1] == "1"

        metrics.events.labels("cam1", "start").inc(2)  # the next scrapes see the new value
        prometheus.wait_for('streamad_events_total{stream="cam1",type="start"} == 5', timeout_s=10)
        assert float(prometheus.query('streamad_anomaly_score{stream="cam1"}')[0]["value"][1]) == 0.75
    finally:
        sink.close()
    with pytest.raises(OSError):  # the port is closed after close()
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_busy_port_is_a_clear_error_and_close_frees_it() -> None:
    port = free_port()
    first = _sink(Metrics(), port)
    try:
        with pytest.raises(ConfigError, match=rf"cannot listen on 127\.0\.0\.1:{port}"):
            _sink(Metrics(), port)
    finally:
        first.close()
    again = _sink(Metrics(), port)  # freed by close()
    assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    again.close()
