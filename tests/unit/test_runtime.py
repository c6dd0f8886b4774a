"""The dataflow engine: per-stream order and state, isolation of a failing stream, backpressure policies."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator, Literal

import pytest

from helpers import frame
from streamad.frames import EndOfStream, Frame, ready_time
from streamad.metrics import Metrics
from streamad.parts import Operator, PartConfig, Source
from streamad.runtime.pipeline import Pipeline, StageSpec


class ListSource(Source):
    def __init__(self, stream_id: str, n: int, live: bool = False, fail_at: int | None = None,
                 delay_s: float = 0.0) -> None:
        self.stream_id, self.n, self.live, self.fail_at, self.delay_s = stream_id, n, live, fail_at, delay_s

    def frames(self) -> Iterator[Frame]:
        for i in range(self.n):
            if i == self.fail_at:
                raise OSError(f"{self.stream_id}.avi: corrupt packet at frame {i}")
            if self.delay_s:
                time.sleep(self.delay_s)
            yield frame(i, self.stream_id)


class Count(Operator):
    """Numbers frames per stream (state) and raises on stream 'bad' at its 5th frame."""

    class Config(PartConfig):
        kind: Literal["count"] = "count"
        delay_s: float = 0.0

    def __init__(self, config: Any, shared: Any, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        self.seen = 0

    def process(self, f: Frame) -> list[Frame]:
        if self.stream_id == "bad" and self.seen == 4:
            raise ValueError("boom")
        self.seen += 1
        f.label = self.seen
        if self.config.delay_s:
            time.sleep(self.config.delay_s)
        return [f]


def run(sources: list[Source], delay_s: float = 0.0, **kw: Any) -> tuple[list[Any], Pipeline]:
    out: list[Any] = []
    stage = StageSpec("count", Count, Count.Config(kind="count", delay_s=delay_s))
    pipe = Pipeline(sources, [stage], Metrics(), consumers=[out.append], **kw)
    pipe.run()
    return out, pipe


def test_each_stream_keeps_its_order_and_its_own_state() -> None:
    out, pipe = run([ListSource("a", 50), ListSource("b", 30), ListSource("c", 40)], max_active_streams=2)
    for sid, n in (("a", 50), ("b", 30), ("c", 40)):
        frames = [m for m in out if isinstance(m, Frame) and m.stream_id == sid]
        assert [f.index for f in frames] == list(range(n))
        assert [f.label for f in frames] == list(range(1, n + 1))  # per-stream operator state
    assert [m.stream_id for m in out if isinstance(m, EndOfStream)] != []
    assert pipe.stats.delivered == 120 and pipe.stats.errors == {}


def test_a_failing_stream_never_takes_down_the_others() -> None:
    srcs = [ListSource("ok1", 40), ListSource("bad", 40), ListSource("broken", 40, fail_at=10), ListSource("ok2", 40)]
    out, pipe = run(srcs)
    count = {sid: sum(1 for m in out if isinstance(m, Frame) and m.stream_id == sid) for sid in
             ("ok1", "bad", "broken", "ok2")}
    assert count == {"ok1": 40, "bad": 4, "broken": 10, "ok2": 40}  # frames read before the failure still delivered
    assert "operator count: ValueError: boom" in pipe.stats.errors["bad"]
    assert "corrupt packet" in pipe.stats.errors["broken"]
    eos = {m.stream_id: m.error for m in out if isinstance(m, EndOfStream)}
    assert eos["ok1"] is None and eos["broken"] and eos["bad"]
    assert pipe.metrics.stream_errors.labels("bad")._value.get() == 1  # noqa: SLF001


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_live_stream_faster_than_the_model_drops_and_counts(policy: str) -> None:
    out, pipe = run([ListSource("cam", 200, live=True)], delay_s=0.002, queue_size=4, live_policy=policy)
    got = [m.index for m in out if isinstance(m, Frame)]
    dropped = pipe.metrics.frames_dropped.labels("cam", "backpressure")._value.get()  # noqa: SLF001
    assert dropped > 0 and len(got) + dropped == 200  # every frame is delivered or counted as dropped
    assert got == sorted(got)
    if policy == "drop_oldest":
        assert got[-1] == 199  # the newest frame always survives


def test_file_stream_is_lossless_under_backpressure() -> None:
    out, pipe = run([ListSource("file", 200)], delay_s=0.001, queue_size=2)
    assert [m.index for m in out if isinstance(m, Frame)] == list(range(200))
    assert pipe.metrics.frames_dropped.labels("file", "backpressure")._value.get() == 0  # noqa: SLF001


def test_stop_drains_and_returns() -> None:
    stop = threading.Event()
    out: list[Any] = []
    stage = StageSpec("count", Count, Count.Config(kind="count"))
    pipe = Pipeline([ListSource("cam", 10_000, live=True, delay_s=0.001)], [stage], Metrics(), consumers=[out.append],
                    grace_period_s=5)
    t = threading.Thread(target=pipe.run, args=(stop,))
    t.start()
    time.sleep(0.5)
    stop.set()
    t.join(10)
    assert not t.is_alive() and pipe.stats.drained
    frames = [m for m in out if isinstance(m, Frame)]
    assert 0 < len(frames) < 10_000 and isinstance(out[-1], EndOfStream)


def test_duplicate_stream_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        Pipeline([ListSource("x", 1), ListSource("x", 1)], [], Metrics())


class Hold(Operator):
    """Passes frame ``i`` on when frame ``i + 3`` arrives (as centred smoothing does), the rest at the end."""

    K = 3

    class Config(PartConfig):
        kind: Literal["hold"] = "hold"

    def __init__(self, config: Any, shared: Any, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        self.held: list[Frame] = []

    def process(self, f: Frame) -> list[Frame]:
        self.held.append(f)
        return [self.held.pop(0)] if len(self.held) > self.K else []

    def flush(self) -> list[Frame]:
        out, self.held = self.held, []
        return out


class Camera(ListSource):
    """Frames stamped with the real time they are read, ``delay_s`` apart."""

    def frames(self) -> Iterator[Frame]:
        for f in super().frames():
            f.wall_time = time.time()
            yield f


def test_processing_latency_leaves_out_the_frames_a_stage_holds_by_design() -> None:
    """End-to-end latency counts the wait for the 3 later frames a held frame needs; processing latency starts
    when the frame that released it arrived (the stream's end for the last 3), so an alert on it does not fire for
    a slow camera under centred smoothing."""
    n, k = 12, Hold.K
    out: list[Any] = []
    metrics = Metrics()
    Pipeline([Camera("a", n, delay_s=0.02)], [StageSpec("hold", Hold, Hold.Config())], metrics,
             consumers=[out.append]).run()
    frames = [m for m in out if isinstance(m, Frame)]
    assert [f.index for f in frames] == list(range(n))
    wall = [f.wall_time for f in frames]
    for f in frames[:n - k]:
        assert ready_time(f) == wall[f.index + k], f.index
    for f in frames[n - k:]:
        assert ready_time(f) >= wall[-1], f.index
    get = metrics.registry.get_sample_value
    e2e = get("streamad_end_to_end_latency_seconds_sum", {"stream": "a"})
    proc = get("streamad_processing_latency_seconds_sum", {"stream": "a"})
    assert get("streamad_processing_latency_seconds_count", {"stream": "a"}) == n
    held = sum(wall[i + k] - wall[i] for i in range(n - k))
    assert held >= 0.9 * (n - k) * k * 0.02  # the source's pacing
    assert e2e - proc >= held - 1e-6
