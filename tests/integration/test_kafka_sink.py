"""The kafka sink against a real tansu broker: keyed, ordered, at-least-once delivery across outages."""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from streamad.frames import Scores
from streamad.metrics import Metrics
from streamad.parts import BuildContext
from streamad.sinks.kafka import KafkaSink, backoff_delay, consume_events

GROUP_TIMINGS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}  # tansu joins in ~half the session


def _sink(bootstrap: str, tmp_path: Path, metrics: Metrics, **overrides: Any) -> KafkaSink:
    fields = dict(bootstrap_servers=bootstrap, topic="alerts", spool_dir=str(tmp_path / "spool"),
                  retry_backoff_s=0.1, retry_backoff_max_s=0.5, send_timeout_s=1.0, flush_timeout_s=15.0)
    fields.update(overrides)
    return KafkaSink(KafkaSink.Config(**fields), BuildContext(metrics=metrics))


def _interleaved(alert_scores, streams: list[str], n_updates: int = 2) -> list[Scores]:
    """Frames of one alert lifecycle per stream, streams interleaved (as the runtime delivers them)."""
    per_stream = [alert_scores(s, n_updates=n_updates) for s in streams]
    return [frames[i] for i in range(n_updates + 2) for frames in per_stream]


def _ident(event: dict) -> tuple[str, str, int]:
    return event["event_id"], event["type"], event["seq"]


def _written(frames: list[Scores]) -> list[tuple[str, str, int]]:
    return [_ident(e.to_json()) for s in frames for e in s.events]


def _read_keyed(bootstrap: str, topic: str, n: int, group_id: str | None, timeout_s: float = 20.0
                ) -> list[tuple[str, dict]]:
    """``n`` messages ``(key, alert)`` read from the start of ``topic``; fewer if ``timeout_s`` passes."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group_id, auto_offset_reset="earliest",
                             consumer_timeout_ms=int(timeout_s * 1000), **(GROUP_TIMINGS if group_id else {}))
    out: list[tuple[str, dict]] = []
    try:
        deadline = time.monotonic() + timeout_s
        for message in consumer:
            out.append((message.key.decode("utf-8"), json.loads(message.value)))
            if len(out) >= n or time.monotonic() > deadline:
                break
    finally:
        consumer.close()
    return out


def _first(events, n: int) -> list[dict]:
    """The first ``n`` events of a :func:`consume_events` iterator (fewer if it ran dry)."""
    return list(itertools.islice(events, n))


def _per_stream(events: list[dict]) -> dict[str, list[tuple[str, str, int]]]:
    out: dict[str, list] = {}
    for e in events:
        out.setdefault(e["stream_id"], []).append(_ident(e))
    return out


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def _retries(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("streamad_sink_retries_total", {"sink": "kafka:alerts"}) or 0.0


def _depth(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("streamad_spool_depth", {"sink": "kafka:alerts"})


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    delays = [backoff_delay(n, 0.5, 10.0) for n in range(1, 9)]
    for n, d in enumerate(delays, start=1):
        base = min(10.0, 0.5 * 2 ** (n - 1))
        assert 0.8 * base <= d <= min(10.0, 1.2 * base)
    assert delays[-1] > 7.9 and max(delays) <= 10.0


def test_events_arrive_keyed_by_stream_in_order(kafka_broker, tmp_path: Path, alert_scores) -> None:
    metrics = Metrics()
    frames = _interleaved(alert_scores, ["cam1", "cam2", "ped2/Test003"])
    sink = _sink(kafka_broker.bootstrap, tmp_path, metrics, compression_type="gzip")
    for scores in frames:
        sink.write(scores)
    sink.close()  # waits for the broker's acknowledgement of every alert
    assert _depth(metrics) == 0 and list((tmp_path / "spool").glob("*.seg")) == []

    written = _written(frames)
    got = _read_keyed(kafka_broker.bootstrap, "alerts", len(written), group_id="dashboard")
    assert len(got) == len(written)
    assert all(key == event["stream_id"] for key, event in got)
    assert _per_stream([e for _, e in got]) == _per_stream([e.to_json() for s in frames for e in s.events])
    first = frames[0].events[0].to_json()
    assert next(e for _, e in got if _ident(e) == _ident(first))["peak_score"] == pytest.approx(first["peak_score"])


def test_broker_down_at_start_then_up_loses_nothing(kafka_broker, tmp_path: Path, alert_scores) -> None:
    kafka_broker.stop()
    metrics = Metrics()
    frames = _interleaved(alert_scores, ["cam1", "cam2"])
    sink = _sink(kafka_broker.bootstrap, tmp_path, metrics)  # no broker: must not fail
    t0 = time.monotonic()
    for scores in frames:
        sink.write(scores)
    assert time.monotonic() - t0 < 1.0  # write() only spools, it never waits for the broker
    assert _depth(metrics) == len(_written(frames))
    _wait(lambda: _retries(metrics) >= 2, 10, "delivery retries while the broker is down")

    kafka_broker.start()
    _wait(lambda: sink.spool.depth == 0, 20, "the spool to drain once the broker is up")
    sink.close()
    events = _first(consume_events(kafka_broker.bootstrap, "alerts", timeout_s=5), len(_written(frames)))
    assert sorted(map(_ident, events)) == sorted(_written(frames))
    assert _per_stream(events) == _per_stream([e.to_json() for s in frames for e in s.events])


def test_broker_killed_and_restarted_mid_run(kafka_broker, tmp_path: Path, alert_scores) -> None:
    # tansu keeps its data in memory, so each phase is read before the broker dies
    metrics = Metrics()
    sink = _sink(kafka_broker.bootstrap, tmp_path, metrics)
    before = _interleaved(alert_scores, ["cam1", "cam2"])
    for scores in before:
        sink.write(scores)
    got = _read_keyed(kafka_broker.bootstrap, "alerts", len(_written(before)), group_id=None, timeout_s=10)
    assert sorted(_ident(e) for _, e in got) == sorted(_written(before))

    kafka_broker.kill()  # crash while the pipeline keeps producing alerts
    during = _interleaved(alert_scores, ["cam1", "cam2"])
    for scores in during:
        sink.write(scores)
    _wait(lambda: _retries(metrics) >= 1, 10, "a delivery retry while the broker is dead")
    assert sink.spool.depth > 0

    kafka_broker.start()
    after = _interleaved(alert_scores, ["cam1", "cam2"])
    for scores in after:
        sink.write(scores)
    sink.close()
    assert _depth(metrics) == 0
    events = _first(consume_events(kafka_broker.bootstrap, "alerts", timeout_s=5), len(_written(during + after)))
    received = {_ident(e) for _, e in got} | {_ident(e) for e in events}
    assert received == set(_written(before + during + after))
    assert _per_stream(events) == _per_stream([e.to_json() for s in during + after for e in s.events])


def test_restart_of_streamad_resends_what_was_not_acknowledged(kafka_broker, tmp_path: Path, alert_scores,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    kafka_broker.stop()
    frames = _interleaved(alert_scores, ["cam1"], n_updates=3)
    first = _sink(kafka_broker.bootstrap, tmp_path, Metrics(), flush_timeout_s=0.5)
    for scores in frames:
        first.write(scores)
    with caplog.at_level(logging.WARNING, logger="streamad.sinks.kafka"):
        first.close()  # broker still down: the alerts stay on disk
    assert "5 alerts were not acknowledged" in caplog.text and "resent at the next start" in caplog.text
    assert list((tmp_path / "spool").glob("*.seg"))

    kafka_broker.start()
    metrics = Metrics()
    second = _sink(kafka_broker.bootstrap, tmp_path, metrics)  # same spool_dir: a restarted streamad
    assert _depth(metrics) == 5
    second.close()
    events = _first(consume_events(kafka_broker.bootstrap, "alerts", group_id=f"g-{uuid.uuid4().hex}",
                                   timeout_s=10, **GROUP_TIMINGS), len(_written(frames)))
    assert [_ident(e) for e in events] == _written(frames)


def test_consume_events_drops_duplicates_and_filters_by_stream(kafka_broker, alert_scores) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, enable_idempotence=False, acks="all")
    cam1, cam2 = alert_scores("cam1", n_updates=1), alert_scores("cam2", n_updates=1)
    sent = [e for s in cam1 + cam2 + cam1[:2] for e in s.events]  # cam1's first two alerts resent
    for event in sent:
        producer.send("dups", key=event.stream_id.encode(), value=json.dumps(event.to_json(), default=float).encode())
    producer.flush(timeout=10)
    producer.close(timeout=5)
    events = list(consume_events(kafka_broker.bootstrap, "dups", timeout_s=3))
    assert len(events) == 6 and len({_ident(e) for e in events}) == 6
    only_cam2 = list(consume_events(kafka_broker.bootstrap, "dups", stream="cam2", timeout_s=3))
    assert [_ident(e) for e in only_cam2] == _written(cam2)
