"""A camera owner's whole path, against a real GStreamer RTSP server: fit from the live camera, calibrate a
label-free threshold on held-out footage of it, serve the rest.

vtest.avi (OpenCV's hall with walking people, 10 frames/s, 79.5 s; normal footage) is cut into three parts, each
served by its own RTSP server (every client gets its part from the start, in real time):

* train 0-26 s: ``streamad fit`` records 25.5 s of it (``duration_s``) into ``fit.record_dir`` and fits AI-VAD's
  velocity model (examples/ped2.yaml's operators) on the recording;
* validation 26-62 s: 35.5 s of it are recorded and calibrate ``false_alarm_rate`` at 1 event per hour;
* serve 62-79.5 s: ``streamad serve`` scores 17 s of it live; on this normal footage the events stay within the
  method's stated tolerance on new footage, ``max(1, 2 x events_per_hour x hours)`` events
  (streamad/models/label_free.py).

Then live held-out footage too short to calibrate (10 s) is refused with how much is needed. About 100 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from serve_process import REPO, ServeProcess, wait_until
from servers import transcode_h264

PARTS = {"train": (0.0, 26.0), "validation": (26.0, 62.0), "serve": (62.0, 79.5)}
BOUND_S = {"train": 25.5, "validation": 35.5, "serve": 17.0}  # recorded / served stream time, inside each part
EVENTS_PER_HOUR = 1.0


@pytest.fixture(scope="module")
def vtest_parts(vtest_h264: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three parts of vtest (384x288 H.264 MP4s, cut by ffmpeg)."""
    d = tmp_path_factory.mktemp("vtest_parts")
    return {name: transcode_h264(vtest_h264, d / f"{name}.mp4", start_s=a, end_s=b) for name, (a, b) in PARTS.items()}


def _streamad(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "streamad.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


def _live(url: str, part: str, **kw: object) -> dict:
    return {"kind": "live", "url": url, "id": "hall", "duration_s": BOUND_S[part], **kw}


def test_fit_from_a_live_camera_calibrate_and_serve(start_rtsp, vtest_parts: dict[str, Path], tmp_path: Path) -> None:
    cams = {name: start_rtsp(path, mount=f"/{name}") for name, path in vtest_parts.items()}
    url = {name: cam.url_with("owner", "Hall-Pw-7") for name, cam in cams.items()}
    base = {"extends": str(REPO / "examples" / "ped2.yaml"), "name": "hall", "model_dir": "model"}
    fit_cfg = tmp_path / "fit.yaml"
    fit_cfg.write_text(yaml.safe_dump({**base, "fit": {
        "train": [_live(url["train"], "train")], "validation": [_live(url["validation"], "validation")],
        "threshold": {"method": "false_alarm_rate", "events_per_hour": EVENTS_PER_HOUR},
        "record_dir": "recordings"}}, sort_keys=False))

    t0 = time.monotonic()
    res = _streamad("fit", str(fit_cfg), cwd=tmp_path)
    fit_s = time.monotonic() - t0
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Hall-Pw-7" not in res.stdout + res.stderr
    assert "fit: record train" in res.stderr and "/255 [" in res.stderr  # bar with a total: n/255 [elapsed<ETA]
    # the footage used is kept and listed, so the fit can be repeated
    recs = {split: sorted((tmp_path / "recordings" / split / "hall").glob("*.mp4"))
            for split in ("train", "validation")}
    assert all(len(v) == 1 for v in recs.values()), recs
    model = json.loads((tmp_path / "model" / "model.json").read_text())
    text = json.dumps(model)
    for split, (rec,) in recs.items():
        assert f"{split}/hall/{rec.name}" in text
    cal = model["postprocess"]["calibration"]
    assert cal["events_per_hour"] == EVENTS_PER_HOUR
    assert 30 / 3600 <= cal["held_out_hours"] <= 36 / 3600
    assert cal["events_at_threshold"] <= cal["events_budget"] == 0  # under an hour of footage: no event allowed

    # serve the rest of the footage live; count the events it raises
    port = ServeProcess.port()
    serve_cfg = tmp_path / "serve.yaml"
    serve_cfg.write_text(yaml.safe_dump({**base, "streams": [_live(url["serve"], "serve")],
                                         "sinks": [{"kind": "jsonl", "path": "alerts.jsonl"}],
                                         "runtime": {"http": {"port": port}}}, sort_keys=False))
    with ServeProcess(serve_cfg, tmp_path / "model", tmp_path, port) as proc:
        def done() -> bool:  # the stream reached its duration_s and every frame it read was scored
            m = proc.metrics()
            n_in = proc.value("streamad_frames_in_total", m, stream="hall")
            return n_in >= 160 and proc.value("streamad_frames_processed_total", m, stream="hall") >= n_in - 3
        wait_until(done, 60, "17 s of the serve part scored")
        time.sleep(1.0)
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.log()[-2000:]
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()] \
        if (tmp_path / "alerts.jsonl").exists() else []
    starts = [a for a in alerts if a.get("type") == "start"]
    hours = BOUND_S["serve"] / 3600
    tolerance = max(1.0, 2 * EVENTS_PER_HOUR * hours)
    print(f"fit {fit_s:.1f} s; serve part: {len(starts)} events in {BOUND_S['serve']} s "
          f"({len(starts) / hours:.0f}/h; allowed {tolerance:g} events)")
    assert len(starts) <= tolerance

    # live held-out footage too short to calibrate: told how much is needed (train from its recording)
    short_cfg = tmp_path / "short.yaml"
    short_cfg.write_text(yaml.safe_dump({**base, "fit": {
        "train": [{"kind": "video_file", "path": str(recs["train"][0]), "id": "hall"}],
        "validation": [{"kind": "live", "url": url["validation"], "id": "hall", "max_frames": 100}],
        "threshold": {"method": "false_alarm_rate", "events_per_hour": EVENTS_PER_HOUR}}}, sort_keys=False))
    res = _streamad("fit", str(short_cfg), "-o", "model_short", "--quiet", cwd=tmp_path)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: fit.validation: ") and "too short to calibrate false_alarm_rate" in last
    assert "need at least 30 s" in last
    assert not (tmp_path / "model_short").exists()


def test_fit_per_stream_records_every_camera_at_once_even_with_one_core(start_rtsp, vtest_parts: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    """Twenty cameras recorded for 10 minutes must take 10 minutes, not 10 per core: with one core for the fits,
    two cameras are still recorded at the same time (their recordings start together) and both models are
    written."""
    from datetime import datetime

    from streamad.config import load_config
    from streamad.runtime.per_stream import fit_per_stream

    cams = [start_rtsp(vtest_parts["train"], mount=f"/cam{i}") for i in range(2)]
    train = [{"kind": "live", "url": cam.url, "id": f"cam{i}", "duration_s": 8.0,
              "model_dir": str(tmp_path / "models" / "{stream}")} for i, cam in enumerate(cams)]
    cfg_path = tmp_path / "cams.yaml"
    cfg_path.write_text(yaml.safe_dump({"extends": str(REPO / "examples" / "ped2.yaml"), "name": "cams",
                                        "fit": {"train": train, "record_dir": str(tmp_path / "rec"),
                                                "threshold": {"method": "manual", "value": 1.0}}}))
    res = fit_per_stream(load_config(cfg_path), quiet=True, cores=1)
    assert set(res.models) == {"cam0", "cam1"} and not res.errors
    starts = []
    for i in range(2):
        (rec,) = (tmp_path / "rec" / "train" / f"cam{i}").glob("*.mp4")
        starts.append(datetime.strptime(rec.stem, "%Y%m%dT%H%M%S.%fZ").timestamp())
        assert (tmp_path / "models" / f"cam{i}" / "model.json").is_file()
    # one after the other, the second recording would start 8 s of recording plus a fit after the first
    assert abs(starts[0] - starts[1]) < 5.0, starts
