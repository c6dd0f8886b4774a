"""The README's "Your own cameras" walkthrough, run as written on examples/rtsp.yaml (unchanged) against two real
GStreamer RTSP cameras and a real tansu broker: ``fit --per-stream`` records each camera and fits and calibrates one
model per camera without labels, ``serve`` scores each camera with its own model into Kafka, and
``fit --per-stream --refresh`` refits both from their newest recordings while ``serve`` runs, which swaps them in.

Each camera serves vtest.avi (a pedestrian street, normal footage) in parts, one per connection, as a camera's day
goes on: 0-22 s to the training recording (``FIT_TRAIN_S=20``), 22-56 s to the held-out recording
(``FIT_HELD_OUT_S=32``), 56-79.5 s to ``serve`` (and to its reconnects).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from serve_process import REPO, ServeProcess, wait_until
from servers import free_port, transcode_h264

CAMERAS = ("gate", "yard")


@pytest.fixture
def vtest_day(data_root: Path, tmp_path: Path) -> list[Path]:
    """vtest.avi at 384x288, 10 frames/s, cut into the parts the successive connections get."""
    src = data_root / "opencv" / "vtest.avi"
    return [transcode_h264(src, tmp_path / f"part{i}.mp4", 384, 288, start_s=a, end_s=b)
            for i, (a, b) in enumerate(((0, 22), (22, 56), (56, 79.5)))]


def _streamad(args: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamad.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout_s)


def _loads(proc: ServeProcess, camera: str, metric: str = "streamad_model_loads_total") -> float:
    """``metric{model_dir}`` of the camera's model directory (the label holds the path as resolved)."""
    return sum(v for (name, labels), v in proc.metrics().items()
               if name == metric and dict(labels)["model_dir"].endswith(f"models/{camera}"))


def test_the_rtsp_example_fits_one_model_per_camera_serves_them_and_swaps_in_a_refit(
        start_rtsp, vtest_day: list[Path], kafka_broker, tmp_path: Path) -> None:
    servers = [start_rtsp(vtest_day, mount=f"/cam{i + 1}") for i in range(2)]
    http_port = ServeProcess.port()
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "CAM_PASSWORD": "Camera-Pa55", "CAM1_ADDRESS": f"127.0.0.1:{servers[0].port}",
           "CAM2_ADDRESS": f"127.0.0.1:{servers[1].port}", "FIT_TRAIN_S": "20", "FIT_HELD_OUT_S": "32",
           "KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "KAFKA_TOPIC": "cameras.alerts",
           "METRICS_PORT": str(free_port()), "HTTP_PORT": str(http_port)}
    config = REPO / "examples" / "rtsp.yaml"

    # 1. fit: both cameras recorded (train, then held out) and fitted in parallel worker processes
    fit = _streamad(["fit", "--per-stream", "--quiet", str(config)], env, tmp_path, 300)
    assert fit.returncode == 0, fit.stderr[-3000:]
    models = {}
    for cam in CAMERAS:
        assert f"stream {cam}: model written to runs/rtsp/models/{cam}" in fit.stdout
        models[cam] = json.loads((tmp_path / "runs" / "rtsp" / "models" / cam / "model.json").read_text())
        rec = models[cam]["fit"]["recordings"]
        assert rec["record_dir"] == "runs/rtsp/recordings" and set(rec["train"]) == {cam} == set(rec["validation"])
        for split in ("train", "validation"):
            assert (tmp_path / "runs" / "rtsp" / "recordings" / rec[split][cam]).is_file()
        assert models[cam]["postprocess"]["threshold_method"] == "false_alarm_rate"
    assert "Camera-Pa55" not in fit.stdout + fit.stderr

    # 2. serve: each camera scored by its own model, loaded once
    with ServeProcess(config, tmp_path / "runs" / "rtsp" / "models" / "gate", tmp_path, http_port, env=env) as proc:
        wait_until(lambda: all(proc.value("streamad_frames_processed_total", stream=c) >= 50 for c in CAMERAS), 90,
                   "both cameras scored")
        assert [_loads(proc, c) for c in CAMERAS] == [1, 1]

        # 3. refit from the newest recordings while serving: both models swapped in, no restart
        refresh = _streamad(["fit", "--per-stream", "--refresh", "--quiet", str(config)], env, tmp_path, 300)
        assert refresh.returncode == 0, refresh.stderr[-3000:]
        wait_until(lambda: [_loads(proc, c) for c in CAMERAS] == [2, 2], 60, "both refitted models swapped in")
        before = {c: proc.value("streamad_frames_processed_total", stream=c) for c in CAMERAS}
        wait_until(lambda: all(proc.value("streamad_frames_processed_total", stream=c) > before[c] + 10
                               for c in CAMERAS), 60, "both cameras scored by the refitted models")
        assert [_loads(proc, c, "streamad_model_load_errors_total") for c in CAMERAS] == [0, 0]
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.log()[-3000:]
    for cam in CAMERAS:
        again = json.loads((tmp_path / "runs" / "rtsp" / "models" / cam / "model.json").read_text())
        assert again["fit"]["recordings"] == models[cam]["fit"]["recordings"]  # same footage
    assert "Camera-Pa55" not in proc.log() + proc.out()
