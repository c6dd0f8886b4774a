"""Credentials never leak: a real ``streamad serve`` run with an RTSP camera URL carrying a user, a password and
a token, a second camera with credentials that refuses connections (so errors are logged and a stream fails), and
a Kafka sink with a SASL password (the broker, tansu, does not speak SASL: every delivery attempt fails and is
logged). Secrets come from ``${ENV}`` interpolation. The test greps the debug log, stdout, the metrics and health
endpoints, the alerts (JSONL sink and the Kafka spool): no secret anywhere."""

from __future__ import annotations

import signal
from pathlib import Path

from serve_process import ServeProcess, pipeline_yaml, wait_until
from servers import free_port

CAM_PASSWORD = "Cam-Pa55-q7Zr"
CAM_TOKEN = "tok-4f9e1c2b"
KAFKA_PASSWORD = "Kafka-Pa55-x8Wv"
SECRETS = (CAM_PASSWORD, CAM_TOKEN, KAFKA_PASSWORD)


def test_no_secret_in_logs_metrics_health_or_alerts(start_rtsp, vtest_h264: Path, kafka_broker, ped2_model: Path,
                                                    tmp_path: Path) -> None:
    server = start_rtsp(vtest_h264)
    refused = free_port()
    http_port, metrics_port = ServeProcess.port(), free_port()
    streams = [
        {"kind": "live", "url": f"rtsp://camuser:${{CAM_PASSWORD}}@127.0.0.1:{server.port}/cam?token=${{CAM_TOKEN}}"},
        {"kind": "live", "url": f"rtsp://camuser:${{CAM_PASSWORD}}@127.0.0.1:{refused}/door", "max_reconnects": 2,
         "reconnect_initial_s": 0.1},
    ]
    sinks = [
        {"kind": "stdout"},
        {"kind": "jsonl", "path": "alerts.jsonl"},
        {"kind": "kafka", "bootstrap_servers": kafka_broker.bootstrap, "topic": "secret.alerts",
         "spool_dir": "spool", "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
         "sasl_plain_username": "streamad", "sasl_plain_password": "${KAFKA_PASSWORD}",
         "retry_backoff_s": 0.2, "retry_backoff_max_s": 0.5, "send_timeout_s": 1.0, "flush_timeout_s": 1.0},
        {"kind": "prometheus", "port": metrics_port},
    ]
    cfg = pipeline_yaml(tmp_path / "secret.yaml", streams, sinks, runtime={"http": {"port": http_port}},
                        operator_overrides={"alert": {"update_interval_s": 0.5}})
    env = {"CAM_PASSWORD": CAM_PASSWORD, "CAM_TOKEN": CAM_TOKEN, "KAFKA_PASSWORD": KAFKA_PASSWORD}
    cam = f"127.0.0.1:{server.port}/cam"
    door = f"127.0.0.1:{refused}/door"
    with ServeProcess(cfg, ped2_model, tmp_path, http_port, env=env, log_level="DEBUG") as proc:
        wait_until(lambda: proc.value("streamad_stream_errors_total", stream=door) == 1, 30, "the refused camera")
        wait_until(lambda: (tmp_path / "alerts.jsonl").exists() and (tmp_path / "alerts.jsonl").read_text().count(
            "\n") >= 2, 90, "alerts on the working camera")
        wait_until(lambda: proc.value("streamad_sink_retries_total", sink="kafka:secret.alerts") >= 2, 30, "kafka retries")
        exposed = [proc.get(p)[1] for p in ("/metrics", "/healthz", "/readyz")]
        exposed += [_get(metrics_port, p) for p in ("/metrics", "/healthz", "/readyz")]
        proc.signal(signal.SIGTERM)
        # the refused camera failed (max_reconnects: 1) and the rejected SASL login left the alerts in the spool,
        # undelivered: 5 wins over 1 so the operator looks at the spool first
        assert proc.wait(30) == 5
    spooled = [p.read_text(errors="replace") for p in (tmp_path / "spool").glob("*")]
    texts = {"log": proc.log(), "stdout": proc.out(), "alerts.jsonl": (tmp_path / "alerts.jsonl").read_text(),
             **{f"endpoint{i}": t for i, t in enumerate(exposed)}, **{f"spool{i}": t for i, t in enumerate(spooled)}}

    # the checks below are meaningful: the run did log URLs, fail a stream, raise alerts and retry Kafka
    assert f"camuser:***@127.0.0.1:{server.port}/cam" in texts["log"]
    assert "Connection refused" in texts["log"] and f"stream {door} failed" in texts["log"] + texts["stdout"]
    assert "kafka sink: delivery to" in texts["log"]
    assert f'stream="{cam}"' in exposed[0] and f'"{cam}"' in exposed[1] and spooled
    assert f'"stream_id":"{cam}"' in texts["alerts.jsonl"].replace(" ", "")
    for name, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {name}"


def _get(port: int, path: str) -> str:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        return e.read().decode()
