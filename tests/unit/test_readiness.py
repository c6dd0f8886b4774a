"""Readiness and metrics of streams that fail, come and go (issue 18 items 3, 4, 7, 8), through the real engine,
the real ``image_folder`` source on UCSD Ped2 frames, config reload's :class:`StreamSet` and the real ops server
(``/readyz``, ``/healthz``, ``/metrics`` over HTTP on 127.0.0.1). The only test doubles are a scoring operator
(no model: the frame's mean pixel is its score) and a test-only :class:`Sink` whose ``delivery_problem()`` and
``write`` the test controls (the sink interface, not a mocked server)."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serve_process import wait_until
from streamad.config import load_config_text
from streamad.frames import EndOfStream, Frame, Scores
from streamad.metrics import Metrics
from streamad.parts import BuildContext, Operator, PartConfig, Sink
from streamad.runtime.http import Health, OpsServer
from streamad.runtime.pipeline import Pipeline, StageSpec
from streamad.runtime.reload import StreamSet, StreamStartError


class MeanScore(Operator):
    """Scores a frame by its mean pixel (``delay_s`` of work per frame): Scores for the sinks, no model."""

    class Config(PartConfig):
        kind: Literal["mean_score"] = "mean_score"
        delay_s: float = 0.0

    def process(self, f: Frame) -> list[Scores]:
        if self.config.delay_s:
            time.sleep(self.config.delay_s)
        s = float(f.image.mean()) / 255.0
        return [Scores(f.stream_id, f.index, f.pts, f.wall_time, s, s, np.zeros((0, 4), np.float32),
                       np.zeros(0, np.float32), normalized=s)]


class ProbeSink(Sink):
    """A test-only sink: ``problem`` is what ``delivery_problem()`` reports; ``gate`` (when set) holds every
    write until it is set (a destination that takes no more)."""

    kind = "probe"

    def __init__(self) -> None:
        super().__init__(PartConfig(kind="probe"), BuildContext())
        self.problem: str | None = None
        self.gate: threading.Event | None = None
        self.written = 0
        self.ended: list[EndOfStream] = []

    def write(self, scores: Scores) -> None:
        if self.gate is not None:
            self.gate.wait(20)
        self.written += 1

    def end_stream(self, eos: EndOfStream) -> None:
        self.ended.append(eos)

    def delivery_problem(self) -> str | None:
        return self.problem


@pytest.fixture
def frames_dir(data_root: Path, tmp_path: Path) -> Callable[..., Path]:
    """``make(name, n, corrupt_at=None)``: a folder of the first ``n`` Ped2 Test001 frames under ``tmp_path``,
    frame ``corrupt_at`` truncated to 40 bytes (a broken JPEG)."""
    src = sorted((data_root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test" / "Test001").glob("*.jpg"))

    def make(name: str, n: int, corrupt_at: int | None = None) -> Path:
        d = tmp_path / name
        d.mkdir()
        for i, p in enumerate(src[:n]):
            shutil.copy(p, d / p.name)
            if i == corrupt_at:
                (d / p.name).write_bytes(p.read_bytes()[:40])
        return d

    return make


class Ops:
    """A pipeline (persistent, as ``serve`` runs one) behind the real ops server, running in a thread."""

    def __init__(self, sources: list, sinks: list[Sink] = (), delay_s: float = 0.0, **kw: Any) -> None:
        self.metrics = Metrics()
        self.health = Health()
        self.server = OpsServer(self.health, self.metrics, "127.0.0.1", 0)
        stage = StageSpec("mean_score", MeanScore, MeanScore.Config(delay_s=delay_s))
        self.pipe = Pipeline(sources, [stage], self.metrics, sinks=list(sinks), persistent=True, **kw)
        self.health.attach(self.pipe)
        self.stop = threading.Event()
        self.runner = threading.Thread(target=self.pipe.run, args=(self.stop,), daemon=True)
        self.runner.start()

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.server.port}{path}", timeout=5) as r:
                body = r.read().decode()
                return r.status, (json.loads(body) if path != "/metrics" else body)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def wait_reason(self, key: str, timeout_s: float, value: str | None = None) -> tuple[int, Any]:
        """Poll ``/readyz`` until its ``reasons`` hold ``key`` (with ``value`` when given); returns
        ``(status, body)``."""
        def probe() -> tuple[int, Any] | None:
            got = self.get("/readyz")
            reason = got[1]["reasons"].get(key)
            return got if reason is not None and value in (None, reason) else None

        return wait_until(probe, timeout_s, f"/readyz to give a reason for {key!r}")

    def stream_series(self, sid: str) -> list[str]:
        """Names of the /metrics series labelled ``stream=<sid>``."""
        text = self.get("/metrics")[1]
        return [s.name for fam in text_string_to_metric_families(text) for s in fam.samples
                if s.labels.get("stream") == sid]

    def close(self) -> None:
        self.stop.set()
        self.runner.join(15)
        self.server.stop()
        assert not self.runner.is_alive()


def _streams(text: str, ctx: BuildContext) -> tuple[StreamSet, list]:
    """A StreamSet built from a ``streams:`` YAML list (as ``serve`` builds its first one)."""
    s = StreamSet()
    return s, s.build(_configs(text), ctx, "streams")


def _configs(text: str) -> list[PartConfig]:
    return load_config_text("operators: [{kind: resize, scale: 0.5}]\nstreams:\n" + text).streams


def test_a_corrupt_file_stream_is_failed_in_readyz_until_a_reload_removes_it(frames_dir: Any) -> None:
    good, bad = frames_dir("good", 6), frames_dir("bad", 6, corrupt_at=3)
    ctx = BuildContext(data_root=good.parent)
    streams, built = _streams("  - {kind: image_folder, path: good}\n  - {kind: image_folder, path: bad}\n", ctx)
    ops = Ops([src for src, _ in built])
    try:
        status, body = ops.wait_reason("bad", 10, "failed")
        if body["streams"]["good"]["status"] != "ended":  # the two streams run side by side: good may still read
            wait_until(lambda: ops.pipe.health()["streams"]["good"]["status"] == "ended", 10, "good to end")
            status, body = ops.get("/readyz")
        assert status == 503 and body["reasons"] == {"bad": "failed"}  # good ended normally: that is ready
        assert body["streams"]["good"]["status"] == "ended"
        assert "SourceError" in body["streams"]["bad"]["error"] and "004.jpg" in body["streams"]["bad"]["error"]
        assert ops.get("/healthz")[0] == 200  # the process itself is fine
        streams.apply(streams.plan(_configs("  - {kind: image_folder, path: good}\n"), ctx, "streams"), ops.pipe)
        status, body = ops.get("/readyz")
        assert status == 200 and set(body["streams"]) == {"good"}
        wait_until(lambda: not ops.stream_series("bad"), 5, "the removed stream's series to go")
        assert "streamad_frames_in_total" in ops.stream_series("good")  # an ended file keeps its series
    finally:
        ops.close()


def test_readyz_reports_a_sink_delivery_problem_until_it_clears(frames_dir: Any) -> None:
    sink = ProbeSink()
    ops = Ops([], sinks=[sink])
    try:
        wait_until(lambda: ops.get("/readyz")[0] == 200, 5, "ready with no stream")
        sink.problem = "broker 127.0.0.1:9 unreachable for 30 s; 12 alerts spooled"
        status, body = ops.get("/readyz")
        assert status == 503 and body["reasons"] == {"sink:probe": sink.problem}
        assert body["delivery"] == {"probe": sink.problem}
        assert ops.get("/healthz")[0] == 200  # alive: a restart would not bring the broker back
        sink.problem = None
        assert ops.get("/readyz") == (200, {"ready": True, "reasons": {}, "streams": {}, "delivery": {}})
    finally:
        ops.close()


def test_readyz_reports_delivery_stalled_in_a_sink_write(frames_dir: Any) -> None:
    sink = ProbeSink()
    sink.gate = threading.Event()
    ctx = BuildContext(data_root=frames_dir("cam", 20).parent)
    _, built = _streams("  - {kind: image_folder, path: cam}\n", ctx)
    ops = Ops([src for src, _ in built], sinks=[sink], queue_size=2, stall_after_s=0.5)
    try:
        status, body = ops.wait_reason("delivery", 10)
        assert status == 503 and body["reasons"]["delivery"].startswith("stalled: no message delivered")
        assert ops.get("/healthz")[0] == 200
        sink.gate.set()
        wait_until(lambda: sink.ended, 10, "the stream's end to reach the sink")
        assert ops.get("/readyz")[0] == 200 and sink.written == 20
    finally:
        sink.gate.set()
        ops.close()


def test_a_stream_that_did_not_start_is_not_recorded_and_the_next_reload_starts_it(frames_dir: Any) -> None:
    a, b = frames_dir("a", 30), frames_dir("b", 5)
    ctx = BuildContext(data_root=a.parent)
    streams, built = _streams("  - {kind: image_folder, path: a, id: cam}\n", ctx)
    ops = Ops([src for src, _ in built], delay_s=0.05, queue_size=8)  # cam's old self takes > 0.4 s to drain
    try:
        wait_until(lambda: ops.metrics.registry.get_sample_value("streamad_frames_processed_total",
                                                                 {"stream": "cam"}), 10, "cam to be served")
        changed = _configs("  - {kind: image_folder, path: b, id: cam}\n  - {kind: image_folder, path: b, id: x}\n")
        with pytest.raises(StreamStartError, match=r"cam: .*did not end within 0\.01 s") as err:
            streams.apply(streams.plan(changed, ctx, "streams"), ops.pipe, wait_s=0.01)
        assert set(err.value.failed) == {"cam"}
        assert [e.stream_ids for e in streams.entries] == [["x"]]  # x started; cam is not recorded as served
        retry = streams.plan(changed, ctx, "streams")
        assert [s.stream_id for s, _ in retry.added] == ["cam"] and retry.kept == ["x"]
        streams.apply(retry, ops.pipe)  # waits for the old cam to drain, then starts the new one
        wait_until(lambda: sum(1 for e in ops.pipe.health()["streams"].values() if e["status"] == "ended") == 2,
                   15, "the new cam (5 frames of b) and x to be served to their ends")
        assert ops.metrics.registry.get_sample_value("streamad_frames_in_total", {"stream": "cam"}) >= 5
    finally:
        ops.close()


def test_a_reload_that_removes_or_renames_a_stream_removes_its_series(frames_dir: Any) -> None:
    ctx = BuildContext(data_root=frames_dir("a", 8).parent)
    frames_dir("b", 8)
    streams, built = _streams("  - {kind: image_folder, path: a, id: x}\n  - {kind: image_folder, path: b, id: y}\n",
                              ctx)
    ops = Ops([src for src, _ in built])
    try:
        wait_until(lambda: ops.stream_series("x") and ops.stream_series("y"), 10, "x and y series")
        renamed = _configs("  - {kind: image_folder, path: b, id: y2}\n")  # x removed, y renamed to y2
        streams.apply(streams.plan(renamed, ctx, "streams"), ops.pipe)
        wait_until(lambda: "streamad_frames_processed_total" in ops.stream_series("y2"), 10, "y2 to be served")
        wait_until(lambda: not ops.stream_series("x") and not ops.stream_series("y"), 5, "x and y series to go")
        assert set(ops.get("/readyz")[1]["streams"]) == {"y2"}
    finally:
        ops.close()
