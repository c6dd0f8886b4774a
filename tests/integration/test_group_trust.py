"""Item 10 of issue 18: secrets and trust in ``serve --group``, against a real broker (tansu).

A worker's config holds a camera URL with ``${CAM_PASSWORD}`` and a video file. The control topic's raw bytes
(read with kafka-python) hold neither the password nor any URL or path: only ``{slot, id, sha256}`` references.
A forged record (a stream config naming another file, as the control topic carried before) is refused with a
logged error and that file is never opened; a legitimate reference published again brings the stream back."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from serve_process import REPO, ServeProcess, pipeline_yaml, wait_until
from servers import free_port
from test_group_scale_out import GROUP, GroupWorker

CAM_PASSWORD = "Cam-Pa55-g8Tq"
TOPIC = f"streamad.control.{GROUP}"


def _control_records(bootstrap: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """``(partition, key, value)`` of every record of the control topic, as raw bytes."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        tps = [TopicPartition(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[tuple[int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out += [(r.partition, r.key, r.value) for r in records]
        return out
    finally:
        consumer.close()


def _publish(bootstrap: str, partition: int, key: bytes, value: bytes) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    try:
        producer.send(TOPIC, key=key, value=value, partition=partition).get(timeout=30)
    finally:
        producer.close(timeout=5)


def test_control_topic_holds_no_secret_and_a_forged_stream_is_refused(kafka_broker, ped2_model: Path,
                                                                      vtest_h264: Path, tmp_path: Path) -> None:
    from streamad.config import load_config
    from streamad.runtime.group import slot_records

    evil = tmp_path / "evil.mp4"  # a file the worker's config does not list
    shutil.copy(vtest_h264, evil)
    port = ServeProcess.port()
    streams = [{"kind": "video_file", "id": "vtest", "path": str(vtest_h264), "realtime": True, "loop": True,
                "every_nth": 2},
               {"kind": "live", "id": "door", "url": f"rtsp://camuser:${{CAM_PASSWORD}}@127.0.0.1:{free_port()}/door"}]
    cfg = pipeline_yaml(tmp_path / "pipeline.yaml", streams,
                        runtime={"http": {"port": port}, "grace_period_s": 5})
    env = {"CAM_PASSWORD": CAM_PASSWORD,
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    worker = GroupWorker(cfg, ped2_model, tmp_path, port, kafka_broker.bootstrap)
    worker.env.update(env)
    worker.start()
    try:
        def vtest_frames() -> float:
            return worker.processed().get("vtest", 0.0)

        wait_until(lambda: vtest_frames() > 0, 120, "the worker serving vtest")

        # 1. the control topic's bytes: references only, no password, no URL, no path
        records = _control_records(kafka_broker.bootstrap)
        assert len(records) >= 2, records
        raw = b"".join((k or b"") + (v or b"") for _, k, v in records)
        assert CAM_PASSWORD.encode() not in raw and b"rtsp" not in raw and str(vtest_h264).encode() not in raw, raw
        assert {json.loads(v)["id"] for _, _, v in records if v} == {"vtest", "door"}

        # 2. a forged record on vtest's partition (the old format: a whole stream config) is refused and logged;
        # the file it names is never opened (no stream "evil" ever appears), the slot is no longer served
        forged = {"slot": 0, "stream": {"kind": "video_file", "id": "evil", "path": str(evil), "loop": True}}
        _publish(kafka_broker.bootstrap, 0, b"vtest", json.dumps(forged).encode())
        def refusals() -> list[str]:
            return [ln for ln in worker.log().splitlines() if f"group {GROUP}: {TOPIC} partition 0" in ln
                    and "refused:" in ln]

        line = wait_until(refusals, 60, "the forged record refused in the log")[0]
        assert "ERROR" in line and "not a stream reference" in line and "the slot is not served" in line, line
        # a reference-shaped forgery (right id, another fingerprint) is refused too
        fake_ref = {"slot": 0, "id": "vtest", "sha256": "0" * 64}
        _publish(kafka_broker.bootstrap, 0, b"vtest", json.dumps(fake_ref).encode())
        line = wait_until(lambda: [ln for ln in refusals() if "sha256 000000000000" in ln], 60,
                          "the forged reference refused in the log")[0]
        assert "entry streams[0] of this worker's config" in line and "'vtest'" in line, line
        stalled = vtest_frames()
        time.sleep(3)
        assert worker.held() == {"door"}, worker.held()
        assert vtest_frames() == stalled  # vtest stopped: the forged slot is not served
        assert "evil" not in {s for s in worker.processed()} and str(evil) not in worker.log()

        # 3. the legitimate reference (what every worker with this config publishes) brings vtest back
        local = load_config(cfg, env={**os.environ, **env})
        key, value = slot_records(local)[0]
        _publish(kafka_broker.bootstrap, 0, key.encode(), value)
        wait_until(lambda: vtest_frames() > stalled, 60, "vtest served again after the legitimate record")
        assert worker.held() == {"vtest", "door"}
    finally:
        worker.kill()
