"""Many streams in one process: three RTSP cameras (GStreamer serving vtest.avi at 10 frames/s) and one UCSD Ped2
clip paced in real time (5 frames/s). One camera's server is frozen (SIGSTOP, a hung camera: socket open, no
data): the other streams' frame rates drop by no more than 10%, and the frozen one recovers after SIGCONT."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from serve_process import pipeline_yaml, wait_until
from streamad.config import load_config
from streamad.metrics import Metrics
from streamad.runtime.jobs import serve

WINDOW_S = 10.0


def test_a_frozen_camera_does_not_slow_the_other_streams(start_rtsp, vtest_h264: Path, ped2_model: Path,
                                                         data_root: Path, tmp_path: Path) -> None:
    servers = [start_rtsp(vtest_h264) for _ in range(3)]
    clip = data_root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test" / "Test001"  # 180 frames = 36 s at 5 fps
    streams = [{"kind": "live", "url": s.url, "id": f"cam{i}"} for i, s in enumerate(servers)]
    streams.append({"kind": "image_folder", "path": str(clip), "fps": 5, "realtime": True, "id": "ped2"})
    cfg = load_config(pipeline_yaml(tmp_path / "four.yaml", streams, runtime={"grace_period_s": 5}),
                      env={**os.environ, "STREAMAD_DATA": str(data_root)})
    metrics, stop, results = Metrics(), threading.Event(), []
    runner = threading.Thread(target=lambda: results.append(serve(cfg, ped2_model, stop=stop, metrics=metrics)),
                              daemon=True)
    ids = ["cam0", "cam1", "cam2", "ped2"]

    def processed() -> dict[str, float]:
        get = metrics.registry.get_sample_value
        return {s: get("streamad_frames_processed_total", {"stream": s}) or 0.0 for s in ids}

    def rates(window_s: float) -> dict[str, float]:
        c0, t0 = processed(), time.monotonic()
        time.sleep(window_s)
        c1, t1 = processed(), time.monotonic()
        return {s: (c1[s] - c0[s]) / (t1 - t0) for s in ids}

    runner.start()
    try:
        wait_until(lambda: min(processed().values()) >= 10, 60, "every stream to be scored")
        time.sleep(2.0)  # past the burst of frames buffered while each camera connected
        before = rates(WINDOW_S)
        servers[0].freeze()
        time.sleep(1.0)
        during = rates(WINDOW_S)
        print("frames/s before the freeze:", {k: round(v, 2) for k, v in before.items()})
        print("frames/s during the freeze:", {k: round(v, 2) for k, v in during.items()})
        for sid in ("cam1", "cam2", "ped2"):
            assert during[sid] >= 0.9 * before[sid], f"{sid} slowed from {before[sid]:.2f} to {during[sid]:.2f}/s"
        assert before["cam1"] > 8.0 and before["ped2"] > 4.0  # the streams ran at their real-time rates
        assert during["cam0"] < 0.2 * before["cam0"]
        get = metrics.registry.get_sample_value
        assert get("streamad_source_reconnects_total", {"stream": "cam0"}) >= 1  # read timeout -> reconnect
        assert get("streamad_source_status", {"stream": "cam0", "status": "live"}) == 0.0

        servers[0].thaw()
        n = processed()["cam0"]
        wait_until(lambda: processed()["cam0"] >= n + 20, 30, "the thawed camera to be scored again")
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive() and results and results[0].stats.errors == {}
