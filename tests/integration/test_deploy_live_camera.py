"""deploy/pipeline.yaml, the pipeline the Dockerfile, compose.yaml and the Kubernetes manifests ship, really serves a
live camera (GStreamer RTSP server) with a Ped2 model and delivers its alerts to a real Kafka broker (tansu).
The static checks of deploy/ are in tests/unit/test_deploy_manifests.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve_process import REPO, ServeProcess, wait_until
from servers import free_port
from streamad.sinks.kafka import consume_events

DEPLOY = REPO / "deploy"
# What the containers set for the pipeline's ${VAR}s that have no default (compose.yaml, k8s/deployment.yaml).
CAMERA_ENV = {"CAMERA_URL": "rtsp://127.0.0.1:8554/cam1"}


# -- the shipped pipeline, for real ----------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_shipped_pipeline_serves_a_live_camera(start_rtsp, vtest_h264: Path, kafka_broker, ped2_model: Path,
                                              tmp_path: Path) -> None:
    camera = start_rtsp(vtest_h264)
    port = free_port()
    env = {**CAMERA_ENV, "CAMERA_URL": camera.url, "CAMERA_ID": "entrance", "KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
           "STREAMAD_MODEL_DIR": str(ped2_model), "STREAMAD_SPOOL_DIR": str(tmp_path / "spool"),
           "STREAMAD_HTTP_HOST": "127.0.0.1", "STREAMAD_HTTP_PORT": str(port)}
    serve = ServeProcess(DEPLOY / "pipeline.yaml", ped2_model, tmp_path, port, env=env)
    with serve:
        wait_until(lambda: serve.get("/readyz")[0] == 200, 30, "/readyz")
        wait_until(lambda: serve.value("streamad_frames_processed_total", stream="entrance") > 5, 30,
                   "frames of the camera")
        samples = serve.metrics()
        assert serve.value("streamad_source_status", samples, stream="entrance", status="live") == 1
        assert ("streamad_frames_dropped_total", (("reason", "rate_cap"), ("stream", "entrance"))) in samples  # max_fps
        # people in vtest.avi are anomalies to the Ped2 model: the alerts reach the Kafka topic of the pipeline
        first = next(consume_events(kafka_broker.bootstrap, "streamad.alerts", stream="entrance", timeout_s=40), None)
        assert first is not None and first["type"] == "start" and first["stream_id"] == "entrance", first
        wait_until(lambda: serve.value("streamad_spool_depth", sink="kafka:streamad.alerts") == 0, 20, "an empty spool")
        assert serve.stop(timeout_s=40) == 0, serve.log()[-3000:]
