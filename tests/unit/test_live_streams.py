"""The engine with streams that come and go (config reload), per-stream frame-rate caps, health snapshots and
cross-stream batching; synthetic sources and operators, so every count is exact."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator, Literal

import pytest

from helpers import frame
from serve_process import wait_until
from streamad.config import load_config_text
from streamad.errors import ConfigError
from streamad.frames import EndOfStream, Frame
from streamad.metrics import Metrics
from streamad.parts import Operator, PartConfig, Source
from streamad.runtime.pipeline import Pipeline, StageSpec
from streamad.runtime.ratecap import RateCap


class Ticker(Source):
    """A live source: frame i every ``period_s`` seconds (pts = i * period) until closed."""

    live = True

    def __init__(self, stream_id: str, period_s: float = 0.005, fps: float | None = None) -> None:
        self.stream_id, self.period_s = stream_id, period_s
        self.pts_step = 1.0 / fps if fps else period_s
        self._stop = threading.Event()

    def frames(self) -> Iterator[Frame]:
        i = 0
        while not self._stop.wait(self.period_s):
            f = frame(i, self.stream_id)
            f.pts = i * self.pts_step
            yield f
            i += 1

    def close(self) -> None:
        self._stop.set()


class Counter(Operator):
    """Per-stream state: numbers the frames it saw (``label`` = 1, 2, ...)."""

    class Config(PartConfig):
        kind: Literal["counter"] = "counter"

    def __init__(self, config: Any, shared: Any, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        self.seen = 0

    def process(self, f: Frame) -> list[Frame]:
        self.seen += 1
        f.label = self.seen
        return [f]


class Batched(Counter):
    """Counts like :class:`Counter` and records each batch's streams; fails on frame 3 of stream ``bad``, and
    on frame 5 of stream ``s3`` the whole batch call raises (before touching any state)."""

    batches: list[list[str]] = []

    def process(self, f: Frame) -> list[Frame]:
        if f.stream_id == "bad" and f.index == 3:
            raise ValueError("boom")
        return super().process(f)

    @classmethod
    def process_batch(cls, ops: list[Operator], msgs: list[Any]) -> list[list[Any] | Exception]:
        if any(m.stream_id == "s3" and m.index == 5 for m in msgs) and len(msgs) > 1:
            raise RuntimeError("the batched model call failed")  # the runtime retries these one by one
        cls.batches.append([m.stream_id for m in msgs])
        time.sleep(0.002)  # a model call: long enough for other streams' frames to queue up
        return super().process_batch(ops, msgs)


class Collect:
    def __init__(self) -> None:
        self.items: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, msg: Any) -> None:
        with self.lock:
            self.items.append(msg)

    def frames(self, sid: str) -> list[Frame]:
        with self.lock:
            return [m for m in self.items if isinstance(m, Frame) and m.stream_id == sid]

    def ends(self, sid: str) -> int:
        with self.lock:
            return sum(1 for m in self.items if isinstance(m, EndOfStream) and m.stream_id == sid)


def _start(pipe: Pipeline) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    t = threading.Thread(target=pipe.run, args=(stop,), daemon=True)
    t.start()
    return stop, t


def test_streams_come_and_go_while_the_others_keep_their_state() -> None:
    out = Collect()
    pipe = Pipeline([Ticker("a"), Ticker("b")], [StageSpec("counter", Counter, Counter.Config())], Metrics(),
                    consumers=[out], persistent=True, live_policy="block")
    stop, runner = _start(pipe)
    try:
        wait_until(lambda: len(out.frames("a")) >= 20 and len(out.frames("b")) >= 20, 10, "a and b")
        pipe.add_source(Ticker("c"))
        with pytest.raises(ValueError, match="already running"):
            pipe.add_source(Ticker("a"))
        assert pipe.remove_stream("b").wait(5)
        wait_until(lambda: out.ends("b") == 1, 5, "b's end to reach the consumers")
        b_total = len(out.frames("b"))
        wait_until(lambda: len(out.frames("c")) >= 20, 10, "c")
        assert len(out.frames("b")) == b_total and sorted(pipe.stream_ids()) == ["a", "c"]
        pipe.add_source(Ticker("b"))  # the same id again: a new stream with fresh state
        wait_until(lambda: len(out.frames("b")) >= b_total + 10, 10, "b again")
        health = pipe.health()
        assert health["running"] and health["threads_alive"] and set(health["streams"]) == {"a", "b", "c"}
        for sid in ("a", "c"):
            pipe.remove_stream(sid).wait(5)
        pipe.remove_stream("b").wait(5)
        time.sleep(0.7)
        assert runner.is_alive(), "a persistent pipeline outlives its streams until stopped"
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
    labels_a = [f.label for f in out.frames("a")]
    assert labels_a == list(range(1, len(labels_a) + 1))  # a was never reset by the others coming and going
    labels_b = [f.label for f in out.frames("b")]
    assert labels_b[:b_total] == list(range(1, b_total + 1)) and labels_b[b_total] == 1
    with pytest.raises(RuntimeError, match="has ended"):
        pipe.add_source(Ticker("d"))


def test_stop_ends_live_sources_blocked_in_a_wait() -> None:
    class Stuck(Ticker):
        def frames(self) -> Iterator[Frame]:  # a camera in a long backoff: yields nothing until closed
            self._stop.wait(60)
            return iter(())

    pipe = Pipeline([Stuck("cam")], [StageSpec("counter", Counter, Counter.Config())], Metrics(),
                    persistent=True, grace_period_s=2)
    stop, runner = _start(pipe)
    time.sleep(0.5)
    t = time.monotonic()
    stop.set()
    runner.join(5)
    assert not runner.is_alive() and time.monotonic() - t < 2.0


def test_rate_cap_every_nth_and_max_fps() -> None:
    cap = RateCap(every_nth=3)
    assert [i for i in range(10) if cap.keep(frame(i))] == [0, 3, 6, 9]
    cap = RateCap(max_fps=5)  # 25 frames/s stream: every 5th frame, timestamp jitter tolerated
    kept = [i for i in range(25) if cap.keep(frame(i, fps=25.0))]
    assert kept == [0, 5, 10, 15, 20]
    jitter = RateCap(max_fps=5)
    assert [jitter.keep(frame(0, fps=1000.0)), jitter.keep(frame(195, fps=1000.0))] == [True, True]
    both = RateCap(every_nth=2, max_fps=5)  # every 2nd of 25 frames/s = 12.5/s, then at most 5/s
    assert [i for i in range(25) if both.keep(frame(i, fps=25.0))] == [0, 6, 12, 18, 24]
    restart = RateCap(max_fps=1)
    assert [restart.keep(f) for f in (frame(50), frame(52), frame(0), frame(3))] == [True, False, True, False]
    assert RateCap.of(type("C", (), {"every_nth": None, "max_fps": None})()) is None
    with pytest.raises(ValueError):
        RateCap(every_nth=0)


def test_rate_cap_in_the_pipeline_counts_its_drops() -> None:
    out = Collect()
    metrics = Metrics()
    pipe = Pipeline([Ticker("cam", period_s=0.002, fps=25.0)], [StageSpec("counter", Counter, Counter.Config())],
                    metrics, consumers=[out], persistent=True, rate_caps={"cam": RateCap(max_fps=5)})
    stop, runner = _start(pipe)
    wait_until(lambda: len(out.frames("cam")) >= 20, 10, "capped frames")
    stop.set()
    runner.join(10)
    get = metrics.registry.get_sample_value
    seen = get("streamad_frames_in_total", {"stream": "cam"})
    capped = get("streamad_frames_dropped_total", {"stream": "cam", "reason": "rate_cap"})
    kept = len(out.frames("cam"))
    assert [f.index % 5 for f in out.frames("cam")] == [0] * kept
    assert seen == kept + capped and capped >= 4 * (kept - 1)


def test_rate_cap_fields_are_validated_with_their_key_path() -> None:
    text = "operators: [{kind: resize, scale: 0.5}]\nstreams:\n  - {kind: live, url: 'rtsp://h/c', every_nth: 0}\n"
    with pytest.raises(ConfigError, match=r"streams\[0\]\.every_nth"):
        load_config_text(text)
    with pytest.raises(ConfigError, match=r"streams\[0\]\.max_fps"):
        load_config_text(text.replace("every_nth: 0", "max_fps: -1"))


def test_batches_span_streams_and_a_failing_stream_stays_alone() -> None:
    Batched.batches = []
    out = Collect()
    metrics = Metrics()
    streams = [Ticker(s, period_s=0.001) for s in ("s1", "s2", "s3", "bad")]
    pipe = Pipeline(streams, [StageSpec("batched", Batched, Batched.Config(kind="counter"))], metrics,
                    consumers=[out], persistent=True, batch_size=8, live_policy="block")
    stop, runner = _start(pipe)
    wait_until(lambda: all(len(out.frames(s)) >= 100 for s in ("s1", "s2", "s3")), 20, "frames of every stream")
    stop.set()
    runner.join(10)
    multi = [b for b in Batched.batches if len(set(b)) > 1]
    assert multi and max(len(b) for b in Batched.batches) <= 8
    for sid in ("s1", "s2", "s3"):
        labels = [f.label for f in out.frames(sid)]
        assert labels == list(range(1, len(labels) + 1))  # in order, none lost, none twice
    assert pipe.errors.keys() == {"bad"} and len(out.frames("bad")) == 3
    assert metrics.registry.get_sample_value("streamad_stream_errors_total", {"stream": "bad"}) == 1.0


def test_health_and_readiness_endpoints_bind_loopback() -> None:
    import json
    import urllib.error
    import urllib.request

    from streamad.config import HttpConfig
    from streamad.runtime.http import Health, OpsServer

    metrics = Metrics()
    health = Health()
    server = OpsServer(health, metrics, HttpConfig().host, 0)
    assert server._server.server_address[0] == "127.0.0.1"  # loopback unless runtime.http.host says otherwise

    def get(path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    try:
        assert get("/healthz")[0] == 200 and get("/readyz") == (503, {"ready": False, "streams": {},
                                                                      "reasons": {"pipeline": "starting"}})
        cam = Ticker("cam")
        pipe = Pipeline([cam], [StageSpec("counter", Counter, Counter.Config())], metrics, persistent=True)
        health.attach(pipe)
        stop, runner = _start(pipe)
        metrics.set_status("cam", "connecting")  # a live source reports its own status
        # not ready while connecting (once the pipeline thread runs: before, the reason is "not running")
        wait_until(lambda: get("/readyz")[1]["reasons"] == {"cam": "connecting"}, 5, "not ready while connecting")
        assert get("/readyz")[0] == 503
        metrics.set_status("cam", "live")
        status, body = get("/readyz")
        assert status == 200 and body["streams"]["cam"] == {"status": "live", "live": True, "reconnects": 0}
        metrics.reconnects.labels("cam").inc()
        metrics.set_status("cam", "backoff")
        status, body = get("/healthz")
        assert status == 200 and body["streams"]["cam"]["reconnects"] == 1 and get("/readyz")[0] == 503
        assert "# TYPE streamad_frames_in_total counter" in urllib.request.urlopen(
            f"http://127.0.0.1:{server.port}/metrics", timeout=5).read().decode()
        stop.set()
        runner.join(10)
        assert get("/readyz")[1]["reasons"]["pipeline"] == "not running"
    finally:
        server.stop()
