"""`streamad alerts tail` against a real broker (tansu): events printed as they arrive, once each, only new ones
by default, from a given time with --since, one stream with --stream, bounded by --max-events / --idle-timeout."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from streamad.alerts_tail import format_event, parse_since
from streamad.parts import BuildContext
from streamad.sinks.jsonl import event_json
from streamad.sinks.kafka import KafkaSink

TOPIC = "alerts.tail"


def _publish(bootstrap: str, scores: list, spool: Path) -> list[dict[str, Any]]:
    """Publish the alerts of ``scores`` through streamad's Kafka sink; the events as dicts."""
    sink = KafkaSink(KafkaSink.Config(bootstrap_servers=bootstrap, topic=TOPIC, spool_dir=str(spool)), BuildContext())
    for s in scores:
        sink.write(s)
    sink.close()
    assert sink.spool.depth == 0, "the sink did not deliver every alert"
    return [json.loads(event_json(e)) for s in scores for e in s.events]


def _resend(bootstrap: str, events: list[dict[str, Any]]) -> None:
    """The same alerts again (what a crash between the broker's and the spool's acknowledgement causes)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    for e in events:
        producer.send(TOPIC, key=e["stream_id"].encode(), value=json.dumps(e).encode()).get(timeout=10)
    producer.close()


def _tail(bootstrap: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamad.cli", "alerts", "tail", "--bootstrap", bootstrap,
                           "--topic", TOPIC, *args], capture_output=True, text=True, timeout=90)


def _ident(e: dict[str, Any]) -> tuple[str, str, int]:
    return e["event_id"], e["type"], e["seq"]


def test_tail_prints_new_events_once_each_as_they_arrive(kafka_broker, alert_scores, tmp_path: Path) -> None:
    old = _publish(kafka_broker.bootstrap, alert_scores("cam1"), tmp_path / "spool")  # before the tail started
    proc = subprocess.Popen([sys.executable, "-m", "streamad.cli", "alerts", "tail", "--bootstrap",
                             kafka_broker.bootstrap, "--topic", TOPIC, "--json", "--idle-timeout", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)
    try:
        ready = threading.Event()
        err: list[str] = []

        def read_err() -> None:
            for line in proc.stderr:  # type: ignore[union-attr]
                err.append(line)
                if line.startswith("tailing "):
                    ready.set()

        threading.Thread(target=read_err, daemon=True).start()
        assert ready.wait(60), f"tail did not start: {''.join(err)}"
        new = _publish(kafka_broker.bootstrap, alert_scores("cam1", n_updates=2) + alert_scores("cam2"),
                       tmp_path / "spool")
        _resend(kafka_broker.bootstrap, new[:3])
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, "".join(err)
    got = [json.loads(line) for line in out.splitlines()]
    # only events produced after it started, each once; per stream in the order they were produced
    assert sorted(map(_ident, got)) == sorted(map(_ident, new))
    assert not {_ident(e) for e in old} & {_ident(e) for e in got}
    for sid in ("cam1", "cam2"):
        assert [e for e in got if e["stream_id"] == sid] == [e for e in new if e["stream_id"] == sid]


def test_tail_since_a_time_one_stream_readable_and_bounded(kafka_broker, alert_scores, tmp_path: Path) -> None:
    early = _publish(kafka_broker.bootstrap, alert_scores("cam1") + alert_scores("cam2"), tmp_path / "spool")
    time.sleep(1.5)
    cut = time.time()
    time.sleep(0.5)
    late = _publish(kafka_broker.bootstrap, alert_scores("cam1") + alert_scores("cam2", n_updates=3),
                    tmp_path / "spool")
    _resend(kafka_broker.bootstrap, late)

    # --since an ISO time and --stream: only cam2's later events, once each, one readable line per event
    iso = dt.datetime.fromtimestamp(cut, dt.timezone.utc).isoformat().replace("+00:00", "Z")
    run = _tail(kafka_broker.bootstrap, "--since", iso, "--stream", "cam2", "--idle-timeout", "3")
    assert run.returncode == 0, run.stderr
    want = [e for e in late if e["stream_id"] == "cam2"]
    assert run.stdout.splitlines() == [format_event(e) for e in want]
    first = run.stdout.splitlines()[0]
    for part in (want[0]["time"], "cam2", "start", want[0]["event_id"], "regions=1", "peak=0.600"):
        assert part in first

    # --since 10m covers everything (duplicates still dropped); --max-events stops it early
    run = _tail(kafka_broker.bootstrap, "--since", "10m", "--json", "--idle-timeout", "3")
    assert run.returncode == 0, run.stderr
    assert sorted(_ident(json.loads(x)) for x in run.stdout.splitlines()) == sorted(map(_ident, early + late))
    run = _tail(kafka_broker.bootstrap, "--since", "10m", "--json", "--max-events", "2", "--idle-timeout", "30")
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 2


def test_since_forms_and_a_bad_value() -> None:
    now = 1_800_000_000.0
    assert parse_since("10m", now) == now - 600
    assert parse_since("1h30m", now) == now - 5400
    assert parse_since("45", now) == now - 45
    assert parse_since("2027-01-15T08:00:00Z", now) == dt.datetime(2027, 1, 15, 8, tzinfo=dt.timezone.utc).timestamp()
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday", now)
    run = subprocess.run([sys.executable, "-m", "streamad.cli", "alerts", "tail", "--bootstrap", "127.0.0.1:1",
                          "--since", "yesterday"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--since" in run.stderr and "yesterday" in run.stderr
