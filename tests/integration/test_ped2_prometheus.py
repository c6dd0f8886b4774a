"""A real Prometheus scrapes a running `streamad serve`: the frames-processed counter and the latency histograms come
back through /api/v1/query; SIGTERM then drains and exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from servers import free_port

REPO = Path(__file__).resolve().parents[2]


def test_prometheus_scrapes_frames_and_latency(start_prometheus, ped2_model: Path, data_root: Path,
                                               tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "live.yaml"
    cfg.write_text(f"""\
extends: {REPO / 'examples' / 'ped2.yaml'}
streams:
  - kind: ucsd_ped
    category: UCSDped2
    split: test
    videos: [Test001, Test002]
    realtime: true
sinks:
  - kind: prometheus
    port: {port}
""")
    env = {**os.environ, "STREAMAD_DATA": str(data_root)}
    proc = subprocess.Popen([sys.executable, "-m", "streamad.cli", "serve", str(cfg), "--model", str(ped2_model)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        prom = start_prometheus([f"127.0.0.1:{port}"])
        got = prom.wait_for('streamad_frames_processed_total{stream="UCSDped2/Test001"} > 0', timeout_s=30)
        assert float(got[0]["value"][1]) > 0
        lat = prom.wait_for('sum by (le) (streamad_stage_latency_seconds_bucket{stage="optical_flow"}) > 0',
                            timeout_s=20)
        assert {r["metric"]["le"] for r in lat} >= {"0.01", "+Inf"}
        e2e = prom.wait_for("histogram_quantile(0.5, sum by (le) (rate("
                            "streamad_end_to_end_latency_seconds_bucket[10s])))", timeout_s=20)
        assert 0.0 < float(e2e[0]["value"][1]) < 10.0
        assert prom.wait_for('streamad_source_status{status="live"} == 1', timeout_s=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "served" in out and "signal SIGTERM" in err
