"""``streamad serve`` on a real RTSP camera (GStreamer serving vtest.avi as H.264): the server is killed, stays
away, comes back; streamad reconnects within 5 s of its return and goes on scoring; metrics and health endpoints
show the reconnect; SIGTERM drains and exits within the grace period."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from serve_process import ServeProcess, pipeline_yaml, wait_until

GRACE_S = 5.0


def test_serve_reconnects_within_5s_of_the_server_return(start_rtsp, vtest_h264: Path, ped2_model: Path,
                                                         tmp_path: Path) -> None:
    server = start_rtsp(vtest_h264)
    port = ServeProcess.port()
    cfg = pipeline_yaml(tmp_path / "camera.yaml", streams=[{"kind": "live", "url": server.url, "id": "cam"}],
                        sinks=[{"kind": "jsonl", "path": "alerts.jsonl"}],
                        runtime={"http": {"port": port}, "grace_period_s": GRACE_S})
    with ServeProcess(cfg, ped2_model, tmp_path, port) as proc:
        def processed() -> float:
            return proc.value("streamad_frames_processed_total", stream="cam")

        def frames_in() -> float:
            return proc.value("streamad_frames_in_total", stream="cam")

        wait_until(lambda: processed() >= 20, 60, "the first scored frames")
        status, ready = proc.json("/readyz")
        assert status == 200 and ready["streams"]["cam"]["status"] == "live", ready

        server.kill()
        wait_until(lambda: proc.json("/readyz")[0] == 503, 10, "/readyz to report the lost camera")
        _, health = proc.json("/healthz")
        assert health["status"] == "ok" and health["streams"]["cam"]["status"] in ("backoff", "connecting")
        time.sleep(4.0)  # the camera stays away: streamad backs off (capped at 2 s) without giving up
        assert proc.value("streamad_source_reconnects_total", stream="cam") >= 2

        before_in, before_scored = frames_in(), processed()
        server.start()
        back = time.monotonic()
        wait_until(lambda: frames_in() > before_in, 10, "frames after the server's return", every_s=0.05)
        reconnect_s = time.monotonic() - back
        print(f"reconnected {reconnect_s:.2f} s after the RTSP server's return")
        assert reconnect_s <= 5.0

        wait_until(lambda: processed() >= before_scored + 30, 30, "scoring to go on after the reconnect")
        status, ready = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(proc.json("/readyz")), 10,
                                   "/readyz 200 again")
        assert ready["streams"]["cam"]["reconnects"] >= 2
        samples = proc.metrics()
        assert proc.value("streamad_source_status", samples, stream="cam", status="live") == 1.0
        assert proc.value("streamad_source_reconnects_total", samples, stream="cam") >= 2
        assert proc.value("streamad_stream_errors_total", samples, stream="cam") == 0.0

        t = time.monotonic()
        proc.signal(signal.SIGTERM)
        rc = proc.wait(GRACE_S + 10)
        took = time.monotonic() - t
        assert rc == 0, proc.log()[-3000:]
        assert took <= GRACE_S + 2.0, f"SIGTERM took {took:.1f} s, grace period {GRACE_S} s"
        assert "served" in proc.out()
