"""Main job to Kafka: serve the Ped2 test clips with examples/ped2_kafka.yaml against a real broker (tansu); a
consumer in a group reads the alerts; they match the JSONL sink of the same run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from kafka import KafkaConsumer

from servers import free_port

REPO = Path(__file__).resolve().parents[2]
FIELDS = {"event_id", "stream_id", "type", "seq", "start_time", "time", "start_pts", "pts", "start_frame", "frame",
          "end_frame", "peak_score", "mean_score", "threshold", "model", "regions", "frames", "reasons"}


def test_ped2_alerts_reach_kafka_in_order_and_match_jsonl(kafka_broker, ped2_model: Path, data_root: Path,
                                                           tmp_path: Path) -> None:
    topic = "ped2.alerts.test"
    env = {**os.environ, "STREAMAD_DATA": str(data_root), "KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
           "KAFKA_TOPIC": topic, "METRICS_PORT": str(free_port())}
    res = subprocess.run([sys.executable, "-m", "streamad.cli", "serve", str(REPO / "examples" / "ped2_kafka.yaml"),
                          "--model", str(ped2_model)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "served 2010 frames" in res.stdout
    jsonl = [json.loads(line) for line in (tmp_path / "runs/ped2/alerts.jsonl").read_text().splitlines()]
    assert jsonl, "the run raised no alert"

    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap, group_id="test-readers",
                             auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000,
                             enable_auto_commit=False)
    got: list[tuple[str, dict]] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < len(jsonl) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend((r.key.decode(), json.loads(r.value)) for r in records)
    finally:
        consumer.close()
    assert len(got) == len(jsonl)

    # key = stream_id; per stream, Kafka preserves the order the pipeline produced (same as the JSONL file)
    assert all(key == ev["stream_id"] for key, ev in got)
    per_stream_kafka, per_stream_jsonl = defaultdict(list), defaultdict(list)
    for _, ev in got:
        per_stream_kafka[ev["stream_id"]].append(ev)
    for ev in jsonl:
        per_stream_jsonl[ev["stream_id"]].append(ev)
    assert per_stream_kafka == per_stream_jsonl

    # schema and lifecycle: every event has one start (seq 0) first and one end last, frames increasing
    by_event = defaultdict(list)
    for ev in jsonl:
        assert set(ev) == FIELDS
        assert ev["model"]["name"] == "aivad" and 0.0 <= ev["peak_score"] <= 1.0 and ev["threshold"] == 0.5
        assert ev["start_time"].endswith("Z") and ev["stream_id"].startswith("UCSDped2/Test")
        by_event[ev["event_id"]].append(ev)
    for events in by_event.values():
        types = [e["type"] for e in events]
        assert types[0] == "start" and types[-1] == "end" and set(types[1:-1]) <= {"update"}
        assert [e["seq"] for e in events] == list(range(len(events)))
        assert [e["frame"] for e in events] == sorted(e["frame"] for e in events)
        end = events[-1]
        assert end["end_frame"] is not None and end["start_frame"] <= end["end_frame"] <= end["frame"]
        for r in end["regions"]:
            x1, y1, x2, y2 = r["box"]
            assert 0 <= x1 <= x2 < 360 and 0 <= y1 <= y2 < 240 and "velocity" in r["contributions"]
