"""Fit from a camera: what a user sees when ``streamad fit`` reads ``kind: live`` streams.

A "camera" here is the first seconds of ../shared/data/opencv/vtest.avi as MPEG-TS served over HTTP by a thread
of this test (FFmpeg reads it as fast as it can, so the bounds are reached in well under a second); the real
GStreamer RTSP camera is in tests/integration/test_fit_from_camera.py.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np
import pytest
import yaml

from streamad.config import load_config
from streamad.errors import ConfigError
from streamad.runtime.fit_streams import FIT_MAX_RECONNECTS
from streamad.runtime.jobs import fit
from streamad.sources.live import LiveSource
from streamad.sources.recording import Recorder, newest_recording, recording_path

REPO = Path(__file__).resolve().parents[2]
FPS = 10
FRAMES = 120  # 12 s of vtest


@pytest.fixture(scope="module")
def camera_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 12 s of vtest.avi at 192x144, 10 frames/s, as an MPEG-TS file."""
    from ped2_fixtures import DATA

    src = DATA / "opencv" / "vtest.avi"
    assert src.is_file(), f"{src} not found"
    out = tmp_path_factory.mktemp("cam") / "cam.ts"
    with av.open(str(src)) as inp, av.open(str(out), "w", format="mpegts") as dst:
        stream = dst.add_stream("libx264", rate=FPS, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = 192, 144, "yuv420p"
        for i, frame in enumerate(inp.decode(video=0)):
            if i >= FRAMES:
                break
            img = cv2.resize(frame.to_ndarray(format="rgb24"), (192, 144), interpolation=cv2.INTER_AREA)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in stream.encode(f):
                dst.mux(p)
        for p in stream.encode():
            dst.mux(p)
    return out


@pytest.fixture(scope="module")
def camera_url(camera_file: Path) -> Iterator[str]:
    """``http://127.0.0.1:PORT/cam.ts`` served by a thread of this process (stopped at the end)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(camera_file.parent))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{camera_file.name}"
    finally:
        server.shutdown()
        server.server_close()


def _ops() -> list[dict]:
    return yaml.safe_load((REPO / "examples" / "ped2.yaml").read_text())["operators"]


def _config(tmp_path: Path, train: list[dict], validation: list[dict] | None = None, *, threshold: dict | None = None,
            record_dir: str | None = None, name: str = "pipeline.yaml") -> Path:
    fit_section: dict = {"train": train, "threshold": threshold or {"method": "manual", "value": 1.0}}
    if validation is not None:
        fit_section["validation"] = validation
    if record_dir is not None:
        fit_section["record_dir"] = record_dir
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"name": "cam", "fit": fit_section, "operators": _ops()}, sort_keys=False))
    return path


def _streamad(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "streamad.cli", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)


# -- config refusals -------------------------------------------------------------------------------------------
def test_an_unbounded_live_stream_is_refused_naming_its_key_path(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, [{"kind": "video_file", "path": "/nonexistent.mp4"}],
                              [{"kind": "live", "url": "rtsp://127.0.0.1:1/cam"}]))
    with pytest.raises(ConfigError, match=r"fit\.validation\[0\]: a live stream needs duration_s or max_frames "
                                          r"to be fitted on"):
        fit(cfg, tmp_path / "model", quiet=True)
    assert not (tmp_path / "model").exists()


def test_duration_s_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"fit\.train\[0\]\.duration_s: .*greater than 0"):
        load_config(_config(tmp_path, [{"kind": "live", "url": "rtsp://127.0.0.1:1/cam", "duration_s": 0}]))


def test_live_held_out_footage_too_short_for_false_alarm_rate_is_refused_before_recording(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, [{"kind": "live", "url": "rtsp://127.0.0.1:1/cam", "duration_s": 600}],
                              [{"kind": "live", "url": "rtsp://127.0.0.1:1/cam", "duration_s": 20}],
                              threshold={"method": "false_alarm_rate", "events_per_hour": 1}))
    with pytest.raises(ConfigError, match=r"fit\.validation: 20 s of held-out live footage .* need at least 30 s"):
        fit(cfg, tmp_path / "model", quiet=True)


# -- the duration bound ----------------------------------------------------------------------------------------
def test_duration_s_ends_a_live_stream_cleanly_at_that_stream_time(camera_url: str) -> None:
    src = LiveSource("cam", camera_url, duration_s=2.5)
    frames = list(src.frames())  # ends by itself: no close(), no error
    assert len(frames) == 25  # 2.5 s at 10 frames/s
    assert frames[-1].pts < 2.5 and frames[0].pts == 0.0
    assert src.expected_frames() == 25


# -- recordings ------------------------------------------------------------------------------------------------
def test_recording_names_sort_by_utc_time_and_sanitise_the_stream_id(tmp_path: Path) -> None:
    when = dt.datetime(2026, 12, 5, 4, 35, 12, 123456, tzinfo=dt.timezone.utc)
    p = recording_path(tmp_path, "train", "10.0.0.5:554/stream1", when)
    assert p == tmp_path / "train" / "10.0.0.5_554_stream1" / "20261205T043512.123456Z.mp4"
    with pytest.raises(ValueError, match="split"):
        recording_path(tmp_path, "test", "cam")


def test_a_recording_appears_under_its_name_only_when_complete(tmp_path: Path) -> None:
    path = tmp_path / "train" / "cam" / "a.mp4"
    rec = Recorder(path, 10)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (145, 193, 3), np.uint8) for _ in range(15)]  # odd size: cropped to even
    for i, img in enumerate(images):
        rec.add(img, i / 10)
    assert not path.exists() and rec.part.exists()  # a crash now leaves only the hidden .part file
    assert newest_recording(path.parent) is None  # ... which is never picked up
    assert rec.close() == path
    assert not rec.part.exists()
    with av.open(str(path)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert float(c.streams.video[0].average_rate) == 10
    assert len(decoded) == 15 and decoded[0].shape == (144, 192, 3)
    aborted = Recorder(tmp_path / "train" / "cam" / "b.mp4", 10)
    aborted.add(images[0], 0.0)
    aborted.abort()
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.mp4"]


# -- fit from a live stream, recorded, and --refresh ------------------------------------------------------------
def test_fit_records_the_camera_lists_the_recording_and_refits_to_the_same_model(camera_url: str,
                                                                                 tmp_path: Path) -> None:
    cfg_path = _config(tmp_path, [{"kind": "live", "url": camera_url, "id": "gate/cam 1", "max_frames": 80}],
                       record_dir="recordings")
    res = _streamad("fit", str(cfg_path), "-o", "model", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rec_folder = tmp_path / "recordings" / "train" / "gate_cam_1"
    (recording,) = list(rec_folder.iterdir())
    info = json.loads((tmp_path / "model" / "model.json").read_text())
    listed = info["extra"]["fit"]["recordings"] if "extra" in info else info["fit"]["recordings"]
    assert listed == {"record_dir": "recordings", "train": {"gate/cam 1": f"train/gate_cam_1/{recording.name}"},
                      "validation": {}}
    with av.open(str(recording)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 80
    assert "fitted on 77 clips" in res.stdout  # 80 frames, 4-frame clips

    # the same fit from the recording as a plain file stream gives the same model (reproducible)
    again = _config(tmp_path, [{"kind": "video_file", "path": str(recording), "id": "gate/cam 1"}], name="file.yaml")
    assert _streamad("fit", str(again), "-o", "model_file", cwd=tmp_path).returncode == 0
    # --refresh records nothing and refits on the newest recording: again the same model
    res = _streamad("fit", str(cfg_path), "-o", "model_refresh", "--refresh", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(list(rec_folder.iterdir())) == 1
    w = np.load(tmp_path / "model" / "weights.npz")
    for other in ("model_file", "model_refresh"):
        w2 = np.load(tmp_path / other / "weights.npz")
        assert sorted(w.files) == sorted(w2.files)
        for k in w.files:
            np.testing.assert_array_equal(w[k], w2[k], err_msg=f"{other}: {k}")


def test_a_capped_camera_is_recorded_whole_and_fitted_at_the_frame_rate_serve_scores(camera_url: str,
                                                                                     tmp_path: Path) -> None:
    # every_nth: 2 is what serve scores of this camera: the fit (and the calibration) must see the same frames,
    # while the recording keeps every frame so a refit with another cap needs no new recording
    cfg_path = _config(tmp_path, [{"kind": "live", "url": camera_url, "id": "cam", "max_frames": 80,
                                   "every_nth": 2}], record_dir="recordings")
    res = _streamad("fit", str(cfg_path), "-o", "model", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (recording,) = list((tmp_path / "recordings" / "train" / "cam").iterdir())
    with av.open(str(recording)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 80
    assert "fitted on 37 clips" in res.stdout  # 40 frames kept, 4-frame clips


def test_refresh_picks_the_newest_recording_and_names_the_folder_when_there_is_none(camera_file: Path,
                                                                                   tmp_path: Path) -> None:
    folder = tmp_path / "rec" / "train" / "cam"
    folder.mkdir(parents=True)
    with av.open(str(camera_file)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    for name, n in (("20261201T000000.000000Z.mp4", 30), ("20261204T000000.000000Z.mp4", 50)):
        with Recorder(folder / name, 10) as rec:
            for i in range(n):
                rec.add(frames[i], i / 10)
    (folder / ".20261205T000000.000000Z.mp4.part").write_bytes(b"half a file")  # a crashed recording
    live = {"kind": "live", "url": "rtsp://user:pw@127.0.0.1:1/x", "id": "cam", "duration_s": 60}
    cfg = load_config(_config(tmp_path, [live], record_dir=str(tmp_path / "rec")))
    res = fit(cfg, tmp_path / "model", quiet=True, refresh=True)
    assert res.train_clips == 47  # the 50-frame recording of 2026-12-04, not the older one nor the .part file
    info = (tmp_path / "model" / "model.json").read_text()
    assert "train/cam/20261204T000000.000000Z.mp4" in info

    missing = load_config(_config(tmp_path, [{**live, "id": "other"}], record_dir=str(tmp_path / "rec"),
                                  name="missing.yaml"))
    with pytest.raises(ConfigError, match=rf"fit\.train\[0\]: --refresh found no recording of stream other in "
                                          rf"{tmp_path / 'rec' / 'train' / 'other'}"):
        fit(missing, tmp_path / "model2", quiet=True, refresh=True)
    unset = load_config(_config(tmp_path, [live], name="unset.yaml"))
    with pytest.raises(ConfigError, match=r"fit\.record_dir: --refresh .* not set"):
        fit(unset, tmp_path / "model3", quiet=True, refresh=True)


# -- too little footage, a camera that is down -----------------------------------------------------------------
def test_too_few_frames_says_how_many_were_read_and_needed(camera_url: str, tmp_path: Path) -> None:
    # without edge padding, 3 frames make no 4-frame clip: refused before fitting
    cfg_path = _config(tmp_path, [{"kind": "live", "url": camera_url, "id": "cam", "max_frames": 3}])
    doc = yaml.safe_load(cfg_path.read_text())
    doc["operators"][0]["pad_edges"] = False
    cfg_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ValueError, match=r"fit\.train: too few frames to fit on: read 3 frames from 1 stream\(s\) "
                                         r"\(cam\), which gave 0 training clips; the model needs at least 1 \(a clip "
                                         r"is 4 consecutive frames .*clip_length_in_frames, so at least 4 frames"):
        fit(load_config(cfg_path), tmp_path / "model", quiet=True)
    # with padding (examples/ped2.yaml) the one padded clip holds 3 regions, fewer than a 5-component GMM's
    padded = _config(tmp_path, [{"kind": "live", "url": camera_url, "id": "cam", "max_frames": 3}], name="padded.yaml")
    doc = yaml.safe_load(padded.read_text())
    next(op for op in doc["operators"] if op["kind"] == "video_model")["model"]["n_components_velocity"] = 5
    padded.write_text(yaml.safe_dump(doc, sort_keys=False))
    cfg = load_config(padded)
    with pytest.raises(ValueError, match=r"fit\.train: cannot fit on what was read \(read 3 frames from 1 "
                                         r"stream\(s\) \(cam\)\): GMM with 5 components needs at least as many "
                                         r"training regions, got \d"):
        fit(cfg, tmp_path / "model", quiet=True)
    assert not (tmp_path / "model").exists()


def test_a_camera_that_cannot_connect_ends_the_fit_with_a_redacted_error(tmp_path: Path) -> None:
    from servers import free_port

    port = free_port()  # nothing listens: connection refused
    url = f"rtsp://admin:S3cretPw@127.0.0.1:{port}/stream1"
    cfg_path = _config(tmp_path, [{"kind": "live", "url": url, "duration_s": 60, "reconnect_initial_s": 0.05,
                                   "reconnect_max_s": 0.1}], record_dir="rec")
    res = _streamad("fit", str(cfg_path), "-o", "model", "--quiet", cwd=tmp_path)
    assert res.returncode == 1
    assert "S3cretPw" not in res.stderr + res.stdout
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: fit.train[0]: cannot record live stream 127.0.0.1:" + str(port) + "/stream1")
    assert f"rtsp://admin:***@127.0.0.1:{port}/stream1" in last
    assert "refused" in last.lower() and f"gave up after {FIT_MAX_RECONNECTS} reconnects" in last
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "model").exists()
    assert not any(p.is_file() for p in (tmp_path / "rec").rglob("*"))  # no half recording left behind


def test_the_camera_example_is_valid_and_bounded() -> None:
    from streamad.runtime.fit_streams import check_live_bounds

    cfg = load_config(REPO / "examples" / "camera_fit.yaml", env={"CAMERA_URL": "rtsp://admin:pw@10.0.0.5/s1"})
    assert [c.duration_s for c in cfg.fit.train] == [600] and [c.duration_s for c in cfg.fit.validation] == [300]
    assert cfg.fit.threshold.method == "false_alarm_rate" and cfg.fit.threshold.events_per_hour == 1
    assert cfg.fit.record_dir == "runs/camera/recordings"
    check_live_bounds(cfg)  # bounded, and 300 s of held-out footage is enough
