"""Alerts survive outages, end to end: ``streamad serve`` (a child process) scores UCSD Ped2 clips in real time
and sends alerts to a real Kafka broker (tansu) through its durable spool, beside a JSONL copy.

1. The broker is killed while streamad produces events and restarted later: every event produced during the
   outage reaches the topic; the consumer's distinct events equal the JSONL sink's.
2. streamad itself is killed with SIGKILL while the broker is down; the broker starts; streamad restarts with the
   same spool: every event of the first run's JSONL file reaches the topic.

The first test's broker keeps its topics in S3 (a local moto_server), so a broker restart loses nothing it had
acknowledged, as a real Kafka cluster would not.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from serve_process import ServeProcess, pipeline_yaml, wait_until
from servers import TansuBroker
from streamad.errors import EXIT_UNDELIVERED
from streamad.sinks.kafka import consume_events

CLIPS = ["Test001", "Test002", "Test003", "Test004"]  # 180, 180, 150, 180 frames: 15-18 s at 10 frames/s
TOPIC = "alerts.outage"
FAST_ALERTS = {"alert": {"update_interval_s": 0.5}}  # an update every 0.5 s of an event: many messages


def _config(tmp_path: Path, name: str, data_root: Path, bootstrap: str, http_port: int, jsonl: str,
            max_frames: int | None = None, clips: list[str] = CLIPS) -> Path:
    root = data_root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test"
    streams = [{"kind": "image_folder", "path": str(root / c), "id": f"ped2/{c}", "fps": 10, "realtime": True,
                **({"max_frames": max_frames} if max_frames else {})} for c in clips]
    kafka = {"kind": "kafka", "bootstrap_servers": bootstrap, "topic": TOPIC, "spool_dir": str(tmp_path / "spool"),
             "retry_backoff_s": 0.2, "retry_backoff_max_s": 1.0, "send_timeout_s": 2.0, "flush_timeout_s": 60.0}
    # the spool first: an alert is durable before any other sink sees it
    sinks = [kafka, {"kind": "jsonl", "path": jsonl, "fsync": True}]
    return pipeline_yaml(tmp_path / name, streams, sinks, runtime={"http": {"port": http_port}, "max_active_streams": 8,
                                                                 "grace_period_s": 10}, operator_overrides=FAST_ALERTS)


def _jsonl_idents(path: Path) -> list[tuple[str, str, int]]:
    """(event_id, type, seq) of every complete line (a line cut short by SIGKILL has no newline and is skipped)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = text.split("\n")[:-1]  # the piece after the last newline is unfinished (or empty)
    out = []
    for line in lines:
        e = json.loads(line)
        out.append((e["event_id"], e["type"], e["seq"]))
    return out


def _topic_idents(bootstrap: str, expected: int, timeout_s: float = 60.0) -> set[tuple[str, str, int]]:
    """Distinct (event_id, type, seq) on the topic: read until ``expected`` are seen and then 3 s of silence."""
    got: set[tuple[str, str, int]] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for e in consume_events(bootstrap, TOPIC, timeout_s=3.0):
            got.add((e["event_id"], e["type"], e["seq"]))
        if len(got) >= expected:
            break
    return got


def _events(proc: ServeProcess) -> float:
    samples = proc.metrics()
    return sum(v for (name, _), v in samples.items() if name == "streamad_events_total")


def test_broker_outage_loses_no_event(durable_kafka_broker: TansuBroker, ped2_model: Path, data_root: Path,
                                      tmp_path: Path) -> None:
    broker = durable_kafka_broker
    port = ServeProcess.port()
    jsonl = tmp_path / "alerts.jsonl"
    cfg = _config(tmp_path, "outage.yaml", data_root, broker.bootstrap, port, str(jsonl))
    env = {"STREAMAD_DATA": str(data_root)}
    with ServeProcess(cfg, ped2_model, tmp_path, port, env=env) as proc:
        wait_until(lambda: _events(proc) >= 5 and proc.value("streamad_spool_depth", sink="kafka:" + TOPIC) == 0, 60,
                   "the first alerts delivered")
        broker.kill()  # a crash, while the clips keep producing alerts
        at_kill = len(_jsonl_idents(jsonl))
        wait_until(lambda: len(_jsonl_idents(jsonl)) >= at_kill + 5, 30, "alerts produced during the outage")
        wait_until(lambda: proc.value("streamad_sink_retries_total", sink="kafka:" + TOPIC) >= 1, 20, "delivery retries")
        assert proc.value("streamad_spool_depth", sink="kafka:" + TOPIC) > 0
        time.sleep(2.0)
        at_restart = len(_jsonl_idents(jsonl))
        broker.start()
        rc = proc.wait(120)  # the clips end; closing the kafka sink waits for the spool to drain
        assert rc == 0, proc.log()[-3000:]
    written = _jsonl_idents(jsonl)
    during = written[at_kill:at_restart]
    assert len(during) >= 5 and len(set(written)) == len(written)
    on_topic = _topic_idents(broker.bootstrap, len(written))
    print(f"{len(written)} alerts in the JSONL sink, {len(during)} of them during the outage; "
          f"{len(on_topic)} distinct on the topic")
    assert set(during) <= on_topic
    assert on_topic == set(written)
    assert "were not acknowledged" not in proc.log()


def test_sigkill_of_streamad_then_restart_delivers_everything(ped2_model: Path, data_root: Path,
                                                              tmp_path: Path) -> None:
    broker = TansuBroker(log_dir=tmp_path)  # its port is known, the broker is not running yet
    env = {"STREAMAD_DATA": str(data_root)}
    first_jsonl = tmp_path / "first.jsonl"
    port = ServeProcess.port()
    first = ServeProcess(_config(tmp_path, "first.yaml", data_root, broker.bootstrap, port, str(first_jsonl)),
                         ped2_model, tmp_path, port, env=env)
    try:
        with first:
            wait_until(lambda: len(_jsonl_idents(first_jsonl)) >= 10, 60, "alerts of the first run")
            assert first.value("streamad_spool_depth", sink="kafka:" + TOPIC) >= 10
            first.kill()  # SIGKILL mid-run: no drain, no flush, no goodbye
        before = _jsonl_idents(first_jsonl)
        assert list((tmp_path / "spool").glob("*.seg")), "the unacknowledged alerts must be on disk"

        broker.start()
        second_jsonl = tmp_path / "second.jsonl"
        port = ServeProcess.port()
        second = ServeProcess(_config(tmp_path, "second.yaml", data_root, broker.bootstrap, port, str(second_jsonl),
                                      max_frames=30, clips=CLIPS[:1]), ped2_model, tmp_path, port, env=env)
        with second:
            assert second.wait(120) == 0, second.log()[-3000:]
        assert "spooled in" in second.log() and "resending" in second.log()
        after = _jsonl_idents(second_jsonl)
        on_topic = _topic_idents(broker.bootstrap, len(set(before) | set(after)))
    finally:
        broker.stop()
    print(f"first run: {len(before)} alerts in JSONL before SIGKILL; {len(on_topic)} distinct on the topic")
    assert set(before) <= on_topic, f"lost: {sorted(set(before) - on_topic)[:5]}"
    assert set(after) <= on_topic
    # the spool is written before the JSONL file: at most the events of the frame being delivered at the kill
    # reached the spool (and so the topic) but not the first JSONL file
    assert len(on_topic - set(before) - set(after)) <= 3
    assert not list((tmp_path / "spool").glob("*.seg")), "everything was acknowledged: the spool is empty"
    assert os.path.exists(tmp_path / "spool" / "acked.json")


def test_sigterm_with_the_broker_down_exits_5_within_the_grace_period_and_the_next_start_delivers(
        ped2_model: Path, data_root: Path, tmp_path: Path) -> None:
    broker = TansuBroker(log_dir=tmp_path)  # not running yet: every delivery attempt fails
    jsonl = tmp_path / "alerts.jsonl"
    port = ServeProcess.port()
    cfg = _config(tmp_path, "term.yaml", data_root, broker.bootstrap, port, str(jsonl))  # flush_timeout_s: 60
    text = cfg.read_text().replace("grace_period_s: 10", "grace_period_s: 3")
    cfg.write_text(text)
    env = {"STREAMAD_DATA": str(data_root)}
    with ServeProcess(cfg, ped2_model, tmp_path, port, env=env) as proc:
        wait_until(lambda: len(_jsonl_idents(jsonl)) >= 3, 60, "alerts")
        t = time.monotonic()
        proc.signal(signal.SIGTERM)
        rc = proc.wait(30)
        took = time.monotonic() - t
    # 3 s of grace plus slack for a loaded 2-core machine; ignoring the grace period would wait the 60 s flush timeout
    assert rc == EXIT_UNDELIVERED and took <= 3.0 + 5.0, f"exit code {rc} after {took:.1f} s"
    assert "did not close within the grace period" in proc.log()
    assert "alerts were not delivered" in proc.out() + proc.log()
    written = _jsonl_idents(jsonl)
    spooled = sum(p.read_text().count("\n") for p in (tmp_path / "spool").glob("*.seg"))
    assert spooled >= len(written)  # everything the JSONL file got is on disk for the next start

    broker.start()
    try:
        port = ServeProcess.port()
        again = ServeProcess(_config(tmp_path, "again.yaml", data_root, broker.bootstrap, port,
                                     str(tmp_path / "again.jsonl"), max_frames=10, clips=CLIPS[:1]),
                             ped2_model, tmp_path, port, env=env)
        with again:
            assert again.wait(120) == 0, again.log()[-3000:]
        on_topic = _topic_idents(broker.bootstrap, len(written))
    finally:
        broker.stop()
    assert set(written) <= on_topic, f"lost: {sorted(set(written) - on_topic)[:5]}"
