"""Issue 18 items 2, 5, 6 and 7-8 (the Kafka sink's half), without a broker: a sink that cannot write applies
backpressure and never drops an alert; an oversized alert does not wedge the pipeline; ``spool_max_bytes`` has a
floor; alerts left undelivered at the end of a run are counted; ``delivery_problem()`` and the metrics show a
stall."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Iterator, Literal

import pytest
from pydantic import ValidationError

from conftest import make_alert_scores
from helpers import frame
from streamad.frames import EndOfStream, Frame, Scores
from streamad.metrics import Metrics
from streamad.parts import BuildContext, Operator, PartConfig, Sink, Source
from streamad.runtime.pipeline import Pipeline, StageSpec
from streamad.sinks.kafka import DEAD_LETTER_FILE, KafkaSink
from streamad.sinks.spool import SpoolWriteError

UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: every delivery attempt fails


class Frames(Source):
    def __init__(self, stream_id: str, n: int) -> None:
        self.stream_id, self.n = stream_id, n

    def frames(self) -> Iterator[Frame]:
        for i in range(self.n):
            yield frame(i, self.stream_id)


class ToAlerts(Operator):
    """Frame i of a stream becomes the i-th scored frame of ``shared`` (each carrying one alert event)."""

    class Config(PartConfig):
        kind: Literal["to_alerts"] = "to_alerts"

    def process(self, f: Frame) -> list[Scores]:
        return [self.shared[f.index]]


class DiskFullForAWhile(Sink):
    """Records what it was given; its first ``failures`` writes fail as a full disk does."""

    kind = "disk_full_for_a_while"

    def __init__(self, failures: int, release: threading.Event | None = None) -> None:
        super().__init__(PartConfig(kind=self.kind), BuildContext())
        self.failures, self.release, self.got = failures, release, []

    def write(self, scores: Scores) -> None:
        if self.failures > 0 or (self.release is not None and not self.release.is_set()):
            self.failures -= 1
            raise SpoolWriteError("cannot write spool segment x.seg: [Errno 28] No space left on device")
        self.got.extend(e.event_id + e.type for e in scores.events)


def _pipeline(sinks: list[Sink], metrics: Metrics, n_events: int = 3, **kw: Any) -> tuple[Pipeline, list[Scores]]:
    scores = make_alert_scores("cam", n_updates=n_events - 2, start_frame=0)
    stage = StageSpec("to_alerts", ToAlerts, ToAlerts.Config(), shared=scores)
    return Pipeline([Frames("cam", len(scores))], [stage], metrics, sinks=sinks, **kw), scores


def test_a_full_disk_holds_the_pipeline_back_and_drops_nothing() -> None:
    metrics = Metrics()
    sink = DiskFullForAWhile(failures=2)
    pipe, scores = _pipeline([sink], metrics)
    stats = pipe.run()
    assert sink.got == [e.event_id + e.type for s in scores for e in s.events]  # every alert, in order
    assert stats.undelivered == 0
    waits = metrics.registry.get_sample_value("streamad_sink_full_waits_total",
                                              {"sink": "disk_full_for_a_while", "reason": "write_error"})
    assert waits == 2
    assert not metrics.registry.get_sample_value("streamad_sink_errors_total", {"sink": "disk_full_for_a_while"})


def test_stopping_while_a_sink_stays_full_counts_the_alerts_it_never_took() -> None:
    sink = DiskFullForAWhile(failures=0, release=threading.Event())  # full until the end of the run
    stop = threading.Event()
    pipe, _ = _pipeline([sink], Metrics(), grace_period_s=0.5)
    t = threading.Timer(0.5, stop.set)
    t.start()
    stats = pipe.run(stop)
    t.join()
    assert sink.got == [] and stats.undelivered >= 1 and not stats.drained


def _kafka(tmp_path: Path, metrics: Metrics | None = None, **fields: Any) -> KafkaSink:
    cfg = KafkaSink.Config(bootstrap_servers=UNREACHABLE, topic="alerts", spool_dir=str(tmp_path / "spool"),
                           retry_backoff_s=0.1, retry_backoff_max_s=0.2, send_timeout_s=0.2, flush_timeout_s=0,
                           **fields)
    return KafkaSink(cfg, BuildContext(metrics=metrics or Metrics()))


def test_spool_max_bytes_below_one_mib_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"spool_max_bytes must be at least 1048576 \(1 MiB\), got 500"):
        KafkaSink.Config(bootstrap_servers=UNREACHABLE, spool_max_bytes=500)


def test_an_alert_larger_than_the_spool_goes_to_the_dead_letter_file_and_the_pipeline_goes_on(
        tmp_path: Path) -> None:
    metrics = Metrics()
    sink = _kafka(tmp_path, metrics, spool_max_bytes=2**20)  # the smallest spool allowed
    big, small = make_alert_scores("cam", n_updates=0)
    big.events[0].regions = [{"box": [0, 0, 1, 1], "score": 0.9, "contributions": {}, "pad": "x" * 2**20}]
    try:
        sink.write(big)  # returns at once: never "full", never retried
        sink.write(small)
        assert sink.spool.depth == 1
    finally:
        sink.close()
    kept = (tmp_path / "spool" / DEAD_LETTER_FILE).read_text().splitlines()
    assert [json.loads(line)["type"] for line in kept] == ["start"]
    assert sink.undelivered() == 2  # the dead letter and the spooled alert the broker never took
    assert metrics.registry.get_sample_value("streamad_sink_dead_letters_total", {"sink": "kafka:alerts"}) == 1


def test_two_kafka_sinks_have_their_own_series_and_report_an_outage(tmp_path: Path) -> None:
    metrics = Metrics()
    a = _kafka(tmp_path / "a", metrics)
    b = _kafka(tmp_path / "b", metrics)
    try:
        assert (a.metrics_label, b.metrics_label) == ("kafka:alerts", "kafka:alerts#2")
        assert a.delivery_problem() is None
        for s in make_alert_scores("cam", n_updates=1):
            a.write(s)
        reg = metrics.registry
        assert reg.get_sample_value("streamad_spool_depth", {"sink": "kafka:alerts"}) == 3
        assert reg.get_sample_value("streamad_spool_depth", {"sink": "kafka:alerts#2"}) == 0
        assert reg.get_sample_value("streamad_spool_bytes", {"sink": "kafka:alerts"}) > 0
        # the broker never answers: once alerts waited past send_timeout_s + retry_backoff_max_s, it is a problem
        deadline = threading.Event()
        for _ in range(100):  # bounded: at most 100 * 0.1 s
            if a.delivery_problem() is not None:
                break
            deadline.wait(0.1)
        problem = a.delivery_problem()
        assert problem is not None and problem.startswith("kafka sink kafka:alerts: no alert delivered to")
        assert "3 waiting in" in problem and b.delivery_problem() is None
        assert reg.get_sample_value("streamad_sink_stalled_seconds", {"sink": "kafka:alerts"}) > 0.4
        assert reg.get_sample_value("streamad_sink_stalled_seconds", {"sink": "kafka:alerts#2"}) == 0
    finally:
        a.close()
        b.close()
    assert a.undelivered() == 3 and b.undelivered() == 0


@pytest.mark.parametrize("carrier", ["frame", "end_of_stream"])
def test_a_failed_spool_write_is_reported_and_the_retry_spools_no_event_twice(tmp_path: Path, carrier: str) -> None:
    """Whether the events ride on a frame (write) or on the stream's end (end_stream: the end of an event still
    open), a retry after a failed spool write spools each event once."""
    sink = _kafka(tmp_path)
    frame_scores = make_alert_scores("cam", n_updates=0)[0]
    events = frame_scores.events * 2  # two events in one message
    if carrier == "frame":
        frame_scores.events, msg, call = events, frame_scores, sink.write
    else:
        msg, call = EndOfStream("cam", events=events), sink.end_stream
    spool = sink.spool
    real_write, calls = spool._write, []

    def fail_second(seq: int, line: bytes) -> None:  # the disk fills between the frame's two events
        calls.append(seq)
        if len(calls) == 2:
            raise SpoolWriteError(f"cannot write spool segment {spool.directory}/x.seg: [Errno 28] No space left")
        real_write(seq, line)

    spool._write = fail_second  # type: ignore[method-assign]
    try:
        with pytest.raises(SpoolWriteError):
            call(msg)
        assert sink.delivery_problem() == ("kafka sink kafka:alerts: cannot spool alerts: cannot write spool "
                                           f"segment {spool.directory}/x.seg: [Errno 28] No space left")
        call(msg)  # the runtime's retry
        assert spool.depth == 2 and sink.delivery_problem() is None
    finally:
        sink.close()
