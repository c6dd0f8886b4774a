"""Issue 17 items 3-4 with real GStreamer RTSP cameras and ``streamad serve`` as a child process:

* two cameras with two different models (each stream's ``model_dir``, one through ``{stream}``) in one process:
  each camera's alerts name its own model directory and version, and ``/metrics`` shows each directory loaded once;
* a model directory refitted (``save_model`` over it) while ``serve`` scores a camera: the alerts after the swap
  carry the new ``model.version``, the event that was open goes on (same ``event_id``: no stream restart, no
  reconnect), and every frame read was scored (in == processed, nothing dropped);
* a stream naming a missing model directory: ``serve`` exits 4 at start with one line naming the stream and the
  directory.

The models are small AI-VAD velocity models of examples/ped2.yaml fitted on 60 frames of one Ped2 training clip
each, with a manual threshold so low that every frame of the test pattern is anomalous (an event opens at once and
sends an update every 0.5 s of stream time: alerts keep coming)."""

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
from streamad.config import load_config
from streamad.runtime.jobs import fit

PED2_TRAIN = ("UCSD_Anomaly_Dataset.v1p2", "UCSDped2", "Train")
ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def _operators() -> list[dict]:
    ops = yaml.safe_load((REPO / "examples" / "ped2.yaml").read_text())["operators"]
    return [{**op, "update_interval_s": 0.5} if op["kind"] == "alert" else op for op in ops]


def _fit(data_root: Path, clip: str, out: Path, workdir: Path) -> Path:
    """Fit the pipeline's model on the first 60 frames of Ped2 training clip ``clip`` into ``out``."""
    doc = {"name": clip, "operators": _operators(),
           "fit": {"train": [{"kind": "image_folder", "path": str(data_root.joinpath(*PED2_TRAIN, clip)),
                              "id": clip, "max_frames": 60}],
                   "threshold": {"method": "manual", "value": -1.0e6}}}
    p = workdir / f"fit-{clip}-{out.name}.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    fit(load_config(p), out, quiet=True)
    return out


def _config(path: Path, port: int, streams: list[dict], **runtime: object) -> Path:
    doc = {"name": "cams", "operators": _operators(), "streams": streams,
           "sinks": [{"kind": "jsonl", "path": str(path.parent / "alerts.jsonl")}],
           "runtime": {"http": {"port": port}, "grace_period_s": 5, "watch_config": False, **runtime}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _alerts(workdir: Path) -> list[dict]:
    p = workdir / "alerts.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _version(model_dir: Path) -> str:
    meta = json.loads((model_dir / "model.json").read_text())
    return f"{meta['model']['version']}:{meta['created']}"


def test_two_cameras_are_scored_by_their_own_models_each_loaded_once(start_rtsp, data_root: Path,
                                                                     tmp_path: Path) -> None:
    models = tmp_path / "models"
    gate = _fit(data_root, "Train001", models / "gate", tmp_path)
    yard = _fit(data_root, "Train002", models / "yard", tmp_path)
    assert _version(gate) != _version(yard)
    cam_gate, cam_yard = start_rtsp(fps=10), start_rtsp(fps=10)
    port = ServeProcess.port()
    cfg = _config(tmp_path / "two.yaml", port, [
        {"kind": "live", "url": cam_gate.url, "id": "gate", "model_dir": str(models / "{stream}")},
        {"kind": "live", "url": cam_yard.url, "id": "yard", "model_dir": str(yard)}])
    # --model names no model at all: every stream names its own, the pipeline's is not needed
    with ServeProcess(cfg, tmp_path / "no-pipeline-model", tmp_path, port, env=ENV) as proc:
        def cameras_alerted() -> bool:
            return {"gate", "yard"} <= {a["stream_id"] for a in _alerts(tmp_path)}

        try:
            wait_until(cameras_alerted, 60, "alerts of both cameras")
        except AssertionError as e:
            raise AssertionError(f"{e}; log: {proc.log()[-3000:]}") from None
        samples = proc.metrics()
        assert proc.value("streamad_model_loads_total", samples, model_dir=str(gate)) == 1.0
        assert proc.value("streamad_model_loads_total", samples, model_dir=str(yard)) == 1.0
        assert not [k for k in samples if k[0] == "streamad_model_loads_total"
                    and dict(k[1])["model_dir"] not in (str(gate), str(yard))]
        for sid in ("gate", "yard"):
            age = proc.value("streamad_model_age_seconds", samples, stream=sid)
            assert 0 < age < 600, age
            assert (samples.get(("streamad_frames_above_threshold_total", (("stream", sid),)), 0)
                    == pytest.approx(proc.value("streamad_frames_processed_total", samples, stream=sid), abs=50))
        assert proc.stop() == 0, proc.log()[-3000:]
    for a in _alerts(tmp_path):
        want = {"gate": gate, "yard": yard}[a["stream_id"]]
        assert a["model"] == {"name": "aivad", "version": _version(want), "dir": str(want)}, a


@pytest.mark.parametrize("notice", ["poll", "sighup"])
def test_a_model_refitted_while_serving_is_swapped_in_without_losing_a_frame_or_restarting(
        notice: str, start_rtsp, data_root: Path, tmp_path: Path) -> None:
    """``poll``: ``serve`` notices the new ``model.json`` itself (every 0.5 s); ``sighup``: polling is off, and
    nothing changes until SIGHUP."""
    cam_dir = _fit(data_root, "Train001", tmp_path / "models" / "cam", tmp_path)
    old_version = _version(cam_dir)
    cam = start_rtsp(fps=10)
    port = ServeProcess.port()
    # 250 frames at 10 fps: the camera's stream ends after ~25 s, then every frame read must have been scored
    cfg = _config(tmp_path / "one.yaml", port,
                  [{"kind": "live", "url": cam.url, "id": "cam", "model_dir": str(cam_dir), "max_frames": 250}],
                  model_watch_interval_s=0.5 if notice == "poll" else 0, live_policy="block")
    with ServeProcess(cfg, tmp_path / "no-pipeline-model", tmp_path, port, env=ENV) as proc:
        try:
            wait_until(lambda: any(a["model"]["version"] == old_version for a in _alerts(tmp_path)), 60,
                       "alerts of the first model")
        except AssertionError as e:
            raise AssertionError(f"{e}; log: {proc.log()[-3000:]}") from None
        processed_before = proc.value("streamad_frames_processed_total", stream="cam")
        assert processed_before < 150, "the camera's frames ran out before the refit: raise max_frames"
        _fit(data_root, "Train002", cam_dir, tmp_path)  # save_model over the directory serve is using
        new_version = _version(cam_dir)
        assert new_version != old_version
        if notice == "sighup":
            time.sleep(2.0)
            assert all(a["model"]["version"] == old_version for a in _alerts(tmp_path)), "swapped without SIGHUP"
            proc.signal(signal.SIGHUP)
        wait_until(lambda: any(a["model"]["version"] == new_version for a in _alerts(tmp_path)), 30,
                   "alerts of the refitted model")
        wait_until(lambda: proc.value("streamad_source_status", stream="cam", status="ended") == 1.0, 60,
                   "the camera's 250 frames to be read")
        wait_until(lambda: proc.value("streamad_frames_processed_total", stream="cam") >= 250, 30,
                   "every frame to be scored")
        samples = proc.metrics()
        assert proc.value("streamad_frames_in_total", samples, stream="cam") == 250
        assert proc.value("streamad_frames_processed_total", samples, stream="cam") == 250
        assert not [k for k in samples if k[0] == "streamad_frames_dropped_total" and dict(k[1])["stream"] == "cam"
                    and samples[k] > 0]
        assert proc.value("streamad_source_reconnects_total", samples, stream="cam") == 0
        assert proc.value("streamad_model_loads_total", samples, model_dir=str(cam_dir)) == 2.0
        assert proc.value("streamad_model_load_errors_total", samples, model_dir=str(cam_dir)) == 0
        assert proc.stop() == 0, proc.log()[-3000:]
    alerts = _alerts(tmp_path)
    versions = [a["model"]["version"] for a in alerts]
    first_new = versions.index(new_version)
    assert set(versions[:first_new]) == {old_version} and set(versions[first_new:]) == {new_version}, versions
    # one event, opened under the old model and continued under the new one: the stream was never restarted
    assert len({a["event_id"] for a in alerts}) == 1 and [a["type"] for a in alerts].count("start") == 1
    assert alerts[-1]["type"] == "end"
    assert "swapped model" in proc.log()


def test_a_stream_naming_a_missing_model_directory_stops_serve_at_start_with_exit_4(
        start_rtsp, data_root: Path, tmp_path: Path) -> None:
    good = _fit(data_root, "Train001", tmp_path / "models" / "gate", tmp_path)
    cam = start_rtsp(fps=10)
    cfg = _config(tmp_path / "missing.yaml", ServeProcess.port(), [
        {"kind": "live", "url": cam.url, "id": "gate", "model_dir": str(good)},
        {"kind": "live", "url": cam.url, "id": "yard", "model_dir": str(tmp_path / "models" / "{stream}")}])
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "streamad.cli", "serve", str(cfg), "--model", str(good)],
                         capture_output=True, text=True, timeout=90, cwd=tmp_path, env={**os.environ, **ENV})
    assert res.returncode == 4, res.stdout + res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "stream yard" in errors[0] and str(tmp_path / "models" / "yard") in errors[0], \
        res.stderr
    assert "Traceback" not in res.stderr
    assert time.monotonic() - t0 < 60 and not _alerts(tmp_path)
