"""examples/webhook_forwarder.py against a real broker (tansu) and a real HTTP server on 127.0.0.1: only
``start`` alerts reach the webhook, each once (duplicates on the topic dropped), failed POSTs are retried, and an
alert the webhook could not take is not lost: the next run with the same group delivers it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from kafka import KafkaProducer

from streamad.parts import BuildContext
from streamad.sinks.jsonl import event_json
from streamad.sinks.kafka import KafkaSink

REPO = Path(__file__).resolve().parents[2]
TOPIC = "alerts.webhook"


class Hook:
    """A webhook on 127.0.0.1 that answers 503 to the next ``fail_next`` requests (or to all while
    ``down``), else 200; it records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, dict[str, str], dict[str, Any]]] = []  # (status sent, headers, body)
        self.fail_next = 0
        self.down = False
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = 200
                if hook.down or hook.fail_next > 0:
                    hook.fail_next = max(0, hook.fail_next - 1)
                    status = 503
                hook.requests.append((status, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def accepted(self) -> list[dict[str, Any]]:
        return [body for status, _, body in self.requests if status == 200]


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    h.thread.start()
    try:
        yield h
    finally:
        h.server.shutdown()
        h.server.server_close()


def _publish(bootstrap: str, scores: list, tmp_path: Path) -> list[dict[str, Any]]:
    """Publish the alerts of ``scores`` through streamad's Kafka sink; the events as dicts."""
    sink = KafkaSink(KafkaSink.Config(bootstrap_servers=bootstrap, topic=TOPIC, spool_dir=str(tmp_path / "spool")),
                     BuildContext())
    for s in scores:
        sink.write(s)
    sink.close()
    assert sink.spool.depth == 0, "the sink did not deliver every alert"
    return [json.loads(event_json(e)) for s in scores for e in s.events]


def _forwarder(bootstrap: str, url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "examples" / "webhook_forwarder.py"), "--bootstrap", bootstrap,
                           "--topic", TOPIC, "--url", url, "--group", "webhook", "--idle-timeout", "6", "--session-timeout", "6",
                           "--backoff", "0.2", "--backoff-max", "0.5", *extra],
                          capture_output=True, text=True, timeout=90)


def test_forwarder_posts_each_start_alert_once_retries_and_loses_none(kafka_broker, alert_scores, hook: Hook,
                                                                       tmp_path: Path) -> None:
    cam1 = _publish(kafka_broker.bootstrap, alert_scores("cam1", n_updates=1), tmp_path)
    cam2 = _publish(kafka_broker.bootstrap, alert_scores("cam2", n_updates=2), tmp_path)
    # the same alert again, as a crash between the broker's acknowledgement and the spool's resends it
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, enable_idempotence=False)
    producer.send(TOPIC, key=b"cam1", value=json.dumps(cam1[0]).encode()).get(timeout=10)
    producer.close()

    # the webhook fails twice (503) before it accepts: both start alerts arrive once each, after retries
    hook.fail_next = 2
    run = _forwarder(kafka_broker.bootstrap, hook.url)
    assert run.returncode == 0, run.stderr
    assert sorted(hook.accepted(), key=lambda e: e["stream_id"]) == [cam1[0], cam2[0]]
    assert [status for status, _, _ in hook.requests] == [503, 503, 200, 200]
    assert "retrying" in run.stderr
    _, headers, body = hook.requests[-1]
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == f"{body['event_id']}:start:0"

    # the webhook is down for good: the forwarder gives up on the new alert (exit 1) without losing it ...
    hook.down = True
    cam3 = _publish(kafka_broker.bootstrap, alert_scores("cam3", n_updates=0), tmp_path)
    run = _forwarder(kafka_broker.bootstrap, hook.url, "--max-attempts", "2")
    assert run.returncode == 1, run.stderr
    assert "not delivered after 2 attempts" in run.stderr
    assert len(hook.accepted()) == 2

    # ... the next run of the group delivers it, and only it (the others' offsets were committed)
    hook.down = False
    run = _forwarder(kafka_broker.bootstrap, hook.url)
    assert run.returncode == 0, run.stderr
    assert hook.accepted()[2:] == [cam3[0]]
