"""A full disk under the Kafka spool (issue 18 items 1, 2, 7, 8), end to end: ``streamad serve`` (a child process)
scores UCSD Ped2 clips in real time into a real broker (tansu) through a spool on a small tmpfs this test mounts
(root only; skipped otherwise). The disk fills mid-run (a filler file takes every free byte) and frees again; then
it fills once more and streamad is SIGKILLed during the stall. A second start with the same spool opens it cleanly
and every alert of the JSONL sink reaches the topic. While the disk is full, ``/metrics`` and ``/readyz`` show the stall.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from serve_process import ServeProcess, pipeline_yaml, wait_until
from streamad.sinks.kafka import consume_events
from test_delivery_outages import FAST_ALERTS, _jsonl_idents

CLIPS = ["Test001", "Test002", "Test004"]  # 180 frames each: 36 s at 5 frames/s
TOPIC = "alerts.diskfull"
SINK = f"kafka:{TOPIC}"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs at ``tmp_path/disk``, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True,
                         text=True, timeout=30)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {res.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def _fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with a filler file (bounded: at most 8 MiB written)."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with open(filler, "ab", buffering=0) as f:
        for _ in range(128):
            try:
                f.write(chunk)
            except OSError:
                break
    for _ in range(16):  # the last partial page
        try:
            with open(filler, "ab", buffering=0) as f:
                f.write(b"\0" * 512)
        except OSError:
            break
    return filler


def _config(tmp_path: Path, name: str, data_root: Path, bootstrap: str, port: int, spool: Path, jsonl: Path,
            max_frames: int | None = None) -> Path:
    root = data_root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test"
    clips = CLIPS if max_frames is None else CLIPS[:1]
    streams = [{"kind": "image_folder", "path": str(root / c), "id": f"ped2/{c}", "fps": 5, "realtime": True,
                **({"max_frames": max_frames} if max_frames else {})} for c in clips]
    kafka = {"kind": "kafka", "bootstrap_servers": bootstrap, "topic": TOPIC, "spool_dir": str(spool),
             "spool_max_bytes": 2**20, "retry_backoff_s": 0.2, "retry_backoff_max_s": 1.0, "send_timeout_s": 2.0,
             "flush_timeout_s": 30.0}
    sinks = [kafka, {"kind": "jsonl", "path": str(jsonl), "fsync": True}]  # the spool first
    return pipeline_yaml(tmp_path / name, streams, sinks, runtime={"http": {"port": port}, "grace_period_s": 5},
                         operator_overrides=FAST_ALERTS)


def _full_waits(proc: ServeProcess) -> float:
    return proc.value("streamad_sink_full_waits_total", sink=SINK, reason="write_error")


def test_a_full_disk_holds_alerts_back_and_loses_none_even_with_a_sigkill(
        kafka_broker, small_disk: Path, ped2_model: Path, data_root: Path, tmp_path: Path) -> None:
    spool, jsonl = small_disk / "spool", tmp_path / "alerts.jsonl"
    env = {"STREAMAD_DATA": str(data_root)}
    port = ServeProcess.port()
    cfg = _config(tmp_path, "full.yaml", data_root, kafka_broker.bootstrap, port, spool, jsonl)
    with ServeProcess(cfg, ped2_model, tmp_path, port, env=env) as proc:
        wait_until(lambda: len(_jsonl_idents(jsonl)) >= 3, 90, "the first alerts")
        filler = _fill(small_disk)  # the disk fills mid-run
        wait_until(lambda: _full_waits(proc) >= 2, 20, "the pipeline waiting on the full disk")
        before = len(_jsonl_idents(jsonl))
        stalled = wait_until(lambda: _full_waits(proc) >= 4 and proc.metrics(), 20, "a longer stall")
        assert len(_jsonl_idents(jsonl)) == before, "held back: no alert passes the spool while the disk is full"
        assert proc.value("streamad_sink_errors_total", stalled, sink=SINK) == 0  # nothing given up
        status, ready = proc.json("/readyz")  # readiness shows the stall; liveness does not restart the pod
        assert status == 503 and "cannot spool alerts" in ready["reasons"][f"sink:{SINK}"], ready
        assert proc.json("/healthz")[0] == 200
        filler.unlink()  # space again: the held alerts go through
        wait_until(lambda: len(_jsonl_idents(jsonl)) > before, 30, "alerts flowing again")
        waits = _full_waits(proc)
        _fill(small_disk)  # full once more, and streamad dies during the stall
        wait_until(lambda: _full_waits(proc) >= waits + 2, 20, "the second stall")
        proc.kill()
    (small_disk / "filler").unlink()
    first = _jsonl_idents(jsonl)
    assert len(first) >= 6

    port = ServeProcess.port()
    again = ServeProcess(_config(tmp_path, "again.yaml", data_root, kafka_broker.bootstrap, port, spool,
                                 tmp_path / "again.jsonl", max_frames=10), ped2_model, tmp_path, port, env=env)
    with again:
        assert again.wait(120) == 0, again.log()[-3000:]  # the spool opened: not "damaged", nothing to move aside
    assert "skipped unreadable" not in again.log()
    on_topic: set[tuple[str, str, int]] = set()
    for _ in range(10):  # bounded: 10 reads of at most a few seconds each
        on_topic |= {(e["event_id"], e["type"], e["seq"]) for e in consume_events(kafka_broker.bootstrap, TOPIC,
                                                                                 timeout_s=3.0)}
        if set(first) <= on_topic:
            break
    print(f"{len(first)} alerts in the JSONL sink of the first run; {len(on_topic)} distinct on the topic")
    assert set(first) <= on_topic, f"lost: {sorted(set(first) - on_topic)[:5]}"
