"""The live source (``kind: live``) against real servers on 127.0.0.1: a GStreamer RTSP server streaming
vtest.avi (TCP and UDP), an HTTP server, a missing capture device; disconnects of every kind reconnect."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
import time
from pathlib import Path

import pytest

from serve_process import wait_until
from streamad.config import load_config_text
from streamad.errors import ConfigError, SourceError
from streamad.metrics import Metrics
from streamad.parts import BuildContext
from streamad.sources.live import LiveSource, StreamClock, live_stream_id


def _build(url: str, metrics: Metrics | None = None, **fields) -> LiveSource:
    (src,) = LiveSource.Config(kind="live", url=url, **fields).build(BuildContext(metrics=metrics), "streams[0]")
    return src


def _status(metrics: Metrics, stream: str) -> str | None:
    for s in ("connecting", "live", "backoff", "ended", "failed"):
        if metrics.registry.get_sample_value("streamad_source_status", {"stream": stream, "status": s}) == 1.0:
            return s
    return None


def _reconnects(metrics: Metrics, stream: str) -> float:
    return metrics.registry.get_sample_value("streamad_source_reconnects_total", {"stream": stream}) or 0.0


class Reader:
    """Reads a source's frames in a thread, keeping ``(arrival time, frame)`` without the pixels."""

    def __init__(self, src: LiveSource) -> None:
        self.src, self.frames, self.error = src, [], None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for f in self.src.frames():
                f.image = f.image[:1, :1]
                self.frames.append((time.monotonic(), f))
        except Exception as e:  # recorded for the test to assert on
            self.error = e

    def close(self) -> None:
        self.src.close()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the live source did not end within its read timeout after close()"


def test_stream_id_never_holds_credentials() -> None:
    assert live_stream_id("rtsp://admin:hunter2@10.0.0.5:554/live/ch1?token=abc") == "10.0.0.5:554/live/ch1"
    assert live_stream_id("https://cams.example.com/hls/yard.m3u8") == "cams.example.com/hls/yard.m3u8"
    assert live_stream_id("/dev/video0") == "video0"
    src = _build("rtsp://admin:s3cret-Pa55@127.0.0.1:1/cam", id="rtsp://admin:s3cret-Pa55@cam")
    assert "s3cret-Pa55" not in src.stream_id and "s3cret-Pa55" not in src.where


def test_config_errors_name_the_field_and_hide_the_password() -> None:
    text = "operators: [{kind: resize, scale: 0.5}]\nstreams: [{kind: live, url: 'ftp://u:pa55word-x@host/cam'}]\n"
    cfg = load_config_text(text)
    with pytest.raises(ConfigError) as e:
        cfg.streams[0].build(BuildContext(), "streams[0]")
    assert "streams[0].url" in str(e.value) and "pa55word-x" not in str(e.value)
    with pytest.raises(ConfigError, match=r"streams\[0\]\.realtime"):
        _build("rtsp://127.0.0.1:1/cam", realtime=True)
    with pytest.raises(ConfigError, match=r"streams\[0\]\.reconnect_max_s"):
        _build("rtsp://127.0.0.1:1/cam", reconnect_initial_s=5, reconnect_max_s=1)
    with pytest.raises(ConfigError, match=r"streams\[0\]\.transport"):
        load_config_text(text.replace("url: 'ftp", "transport: sctp, url: 'rtsp"))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_frames_carry_stream_pts_and_wall_clock(start_rtsp, vtest_h264: Path, transport: str) -> None:
    server = start_rtsp(vtest_h264)
    metrics = Metrics()
    src = _build(server.url_with("viewer", "pw-in-url-1"), metrics, transport=transport, max_frames=25)
    assert src.stream_id == f"127.0.0.1:{server.port}/cam"
    t0 = time.time()
    frames = list(src.frames())
    assert len(frames) == 25 and [f.index for f in frames] == list(range(25))
    assert all(f.image.shape == (288, 384, 3) and str(f.image.dtype) == "uint8" for f in frames)
    pts = [f.pts for f in frames]
    assert pts[0] == 0.0 and all(abs((b - a) - 0.1) < 0.02 for a, b in zip(pts, pts[1:]))  # vtest: 10 frames/s
    walls = [f.wall_time for f in frames]
    assert t0 <= walls[0] <= walls[-1] <= time.time() and walls == sorted(walls)
    assert walls[-1] - walls[5] > 1.0  # served in real time: 19 frame periods after frame 5 (burst at start)
    assert _status(metrics, src.stream_id) == "live"


def test_killed_server_is_a_disconnect_and_the_stream_goes_on(start_rtsp, vtest_h264: Path) -> None:
    server = start_rtsp(vtest_h264)
    metrics = Metrics()
    src = _build(server.url, metrics, reconnect_initial_s=0.2, reconnect_max_s=0.5)
    reader = Reader(src)
    try:
        wait_until(lambda: len(reader.frames) >= 10, 20, "frames from the server")
        server.kill()
        wait_until(lambda: _status(metrics, src.stream_id) in ("backoff", "connecting"), 5, "the disconnect")
        n = len(reader.frames)
        time.sleep(1.0)
        assert len(reader.frames) == n and _reconnects(metrics, src.stream_id) >= 1  # refused, retried
        server.start()
        wait_until(lambda: len(reader.frames) >= n + 10, 15, "frames after the server came back")
        assert _status(metrics, src.stream_id) == "live" and reader.error is None
    finally:
        reader.close()
    pts = [f.pts for _, f in reader.frames]
    assert all(b > a for a, b in zip(pts, pts[1:])), "pts must keep increasing across the reconnect"
    assert [f.index for _, f in reader.frames] == list(range(len(reader.frames)))


def test_frozen_server_times_out_reconnects_and_close_is_prompt(start_rtsp, vtest_h264: Path) -> None:
    server = start_rtsp(vtest_h264)
    metrics = Metrics()
    src = _build(server.url, metrics, read_timeout_s=1.0, open_timeout_s=1.0, reconnect_initial_s=0.2,
                 reconnect_max_s=0.5)
    reader = Reader(src)
    try:
        wait_until(lambda: len(reader.frames) >= 10, 20, "frames from the server")
        server.freeze()
        frozen_at = time.monotonic()
        wait_until(lambda: _reconnects(metrics, src.stream_id) >= 1, 10, "a reconnect after the read timeout")
        assert time.monotonic() - frozen_at < 5.0
        n = len(reader.frames)
        server.thaw()
        wait_until(lambda: len(reader.frames) >= n + 10, 20, "frames after the thaw")
        server.freeze()  # close() while the read blocks on a hung server returns within the read timeout
        time.sleep(0.3)
        t = time.monotonic()
    finally:
        reader.close()
        server.thaw()
    assert time.monotonic() - t < 3.0 and reader.error is None


def test_refused_connection_backs_off_and_gives_up_only_when_configured() -> None:
    metrics = Metrics()
    port = _closed_port()
    src = _build(f"rtsp://cam-user:Refused-Secret-9@127.0.0.1:{port}/cam", metrics, max_reconnects=3,
                 reconnect_initial_s=0.05, reconnect_max_s=0.2)
    t = time.monotonic()
    with pytest.raises(SourceError) as e:
        list(src.frames())
    assert time.monotonic() - t < 5.0
    msg = str(e.value)
    assert "max_reconnects" in msg and "Connection refused" in msg and "Refused-Secret-9" not in msg
    assert _reconnects(metrics, src.stream_id) == 3 and _status(metrics, src.stream_id) == "failed"

    forever = _build(f"rtsp://127.0.0.1:{port}/cam", metrics, reconnect_initial_s=0.05, reconnect_max_s=0.1)
    reader = Reader(forever)
    wait_until(lambda: _reconnects(metrics, forever.stream_id) >= 10, 10, "ten reconnects")
    reader.close()
    assert reader.error is None and not reader.frames


def test_missing_capture_device_is_retried_like_a_camera() -> None:
    metrics = Metrics()
    src = _build("/dev/video97", metrics, max_reconnects=1, reconnect_initial_s=0.05)
    assert src.stream_id == "video97" and src.input_format == "v4l2"
    with pytest.raises(SourceError, match="No such file or directory"):
        list(src.frames())
    assert _reconnects(metrics, "video97") == 1


def test_http_video_url_through_the_same_class(vtest_h264: Path, tmp_path: Path) -> None:
    # MPEG-TS plays over plain HTTP without range requests; 20 frames, so reading 45 needs two reconnects
    ts = tmp_path / "clip.ts"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(vtest_h264), "-frames:v", "20", "-c", "copy",
                    "-f", "mpegts", str(ts)], check=True, timeout=60)
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        metrics = Metrics()
        src = _build(f"http://127.0.0.1:{httpd.server_address[1]}/clip.ts", metrics, max_frames=45,
                     reconnect_initial_s=0.05)
        frames = list(src.frames())
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(frames) == 45 and _reconnects(metrics, src.stream_id) == 2  # end of file = disconnect
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))


def test_stream_clock_is_monotonic_across_sessions_and_odd_timestamps() -> None:
    clock = StreamClock()
    clock.new_session(0.1)
    assert [round(clock.pts(raw, 100.0), 3) for raw in (None, 5.1, 5.2, 5.2, 4.0, 4.1)] == \
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]  # missing first stamp; repeated stamp; clock jumped back
    clock.new_session(0.1, now=100.05)  # reconnect: resumes after the last pts plus at least one period
    assert clock.pts(77.0, 100.2) == pytest.approx(0.6)
    assert clock.pts(77.1, 100.3) == pytest.approx(0.7)
    clock.new_session(0.1, now=103.3)  # away 3 s: the pts axis follows the wall clock across the outage
    assert clock.pts(None, 103.4) == pytest.approx(3.7)


def _closed_port() -> int:
    from servers import free_port

    return free_port()  # nothing listens there


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_example_rtsp_config_loads_and_builds(tmp_path: Path) -> None:
    from serve_process import REPO
    from streamad.config import load_config

    env = {"CAM_PASSWORD": "Example-Pa55", "STREAMAD_DATA": str(tmp_path)}
    cfg = load_config(REPO / "examples" / "rtsp.yaml", env=env)
    sources = [s for i, c in enumerate(cfg.streams) for s in c.build(BuildContext(), f"streams[{i}]")]
    assert [s.stream_id for s in sources] == ["gate", "yard"] and all(s.live for s in sources)
    assert (cfg.streams[0].max_fps, cfg.streams[1].every_nth) == (10, 2)
    assert cfg.runtime.http.host == "127.0.0.1" and cfg.runtime.live_policy == "drop_oldest"
