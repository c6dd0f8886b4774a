"""``streamad serve`` with two real RTSP cameras (GStreamer test patterns): one camera's server is stopped for good,
its stream goes past ``max_reconnects`` and fails; ``/readyz`` turns 503 naming it as ``failed`` (and stays so:
the failed stream is not forgotten), ``/healthz`` stays 200, and the other camera goes on being scored (issue 18
item 3)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from serve_process import REPO, ServeProcess, pipeline_yaml, wait_until


def test_a_camera_past_max_reconnects_makes_readyz_503_while_the_other_is_served(start_rtsp, ped2_model: Path,
                                                                                 tmp_path: Path) -> None:
    gone, kept = start_rtsp(fps=10), start_rtsp(fps=10)
    fast_give_up = {"open_timeout_s": 2, "read_timeout_s": 1, "reconnect_initial_s": 0.2, "reconnect_max_s": 0.4,
                    "max_reconnects": 1}
    port = ServeProcess.port()
    cfg = pipeline_yaml(tmp_path / "two.yaml", runtime={"http": {"port": port}, "grace_period_s": 5},
                        streams=[{"kind": "live", "url": gone.url, "id": "gone", **fast_give_up},
                                 {"kind": "live", "url": kept.url, "id": "kept"}])
    # the child imports this checkout's streamad (not another installed copy): its cwd is tmp_path
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with ServeProcess(cfg, ped2_model, tmp_path, port, env=env) as proc:
        def processed(sid: str) -> float:
            return proc.value("streamad_frames_processed_total", stream=sid)

        wait_until(lambda: processed("gone") >= 5 and processed("kept") >= 5, 60, "both cameras to be scored")
        wait_until(lambda: proc.json("/readyz")[0] == 200, 10, "/readyz 200 with both cameras live")

        gone.kill()
        try:
            status, ready = wait_until(lambda: (lambda r: r if r[1]["reasons"].get("gone") == "failed" else None)(
                proc.json("/readyz")), 20, "/readyz to name the camera that gave up")
        except AssertionError as e:
            raise AssertionError(f"{e}; /readyz: {proc.json('/readyz')}; log: {proc.log()[-3000:]}") from None
        assert status == 503 and ready["reasons"] == {"gone": "failed"}, ready
        assert ready["streams"]["gone"]["status"] == "failed" and ready["streams"]["gone"]["error"]
        assert ready["streams"]["kept"]["status"] == "live"
        assert proc.value("streamad_source_status", stream="gone", status="failed") == 1.0
        assert proc.json("/healthz")[0] == 200  # the process is alive: restarting it would not bring the camera

        before = processed("kept")
        time.sleep(2.0)
        assert processed("kept") >= before + 5  # the other camera is still being scored
        status, ready = proc.json("/readyz")
        assert status == 503 and ready["reasons"] == {"gone": "failed"}  # still not ready: the failure is kept
