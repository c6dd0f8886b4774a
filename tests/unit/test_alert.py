"""The alert event lifecycle: start after min_frames, updates at most every update_interval_s, end after
cooldown_frames, end at end of stream; the reasons in words that regions and events carry."""

from __future__ import annotations

import json

import numpy as np

from helpers import run_operator, scores
from streamad.explain import event_reasons, region_reasons
from streamad.frames import EndOfStream, Scores
from streamad.sinks.jsonl import event_json


def events_of(outputs):
    return [(e.type, e.frame, e.seq) for s in outputs for e in s.events]


def normalized_run(pattern: str, fps: float = 10.0):
    """'.' = 0.2 (normal), 'X' = 0.9 (anomalous) per frame."""
    return [scores(i, 0.0, normalized=0.9 if c == "X" else 0.2, fps=fps) for i, c in enumerate(pattern)]


def test_start_needs_min_frames_and_end_needs_cooldown() -> None:
    out = run_operator("alert", normalized_run("..XX..XXXX....X...."), min_frames=3, cooldown_frames=3,
                       update_interval_s=0)
    assert len(out) == 19 and [s.index for s in out] == list(range(19))  # every frame passes, in order
    ev = [e for s in out for e in s.events]
    assert [(e.type, e.frame) for e in ev] == [("start", 8), ("end", 12)]
    start, end = ev
    assert start.start_frame == 6 and end.end_frame == 9 and end.frames == 4  # the short run at 2-3 raised nothing
    assert start.event_id == end.event_id and (start.seq, end.seq) == (0, 1)
    assert start.peak_score == 0.9 and start.threshold == 0.5
    assert start.regions and start.regions[0]["box"] == [1.0, 2.0, 5.0, 6.0]
    assert "velocity" in start.regions[0]["contributions"] and start.regions[0]["reasons"] == ["fast"]
    assert start.time.endswith("Z") and start.start_time <= end.time


def test_updates_respect_the_interval_in_stream_seconds() -> None:
    out = run_operator("alert", normalized_run("X" * 35 + "." * 5), min_frames=1, cooldown_frames=5,
                       update_interval_s=1.0)
    assert events_of(out) == [("start", 0, 0), ("update", 10, 1), ("update", 20, 2), ("update", 30, 3),
                              ("end", 39, 4)]


def test_open_event_ends_with_the_stream() -> None:
    out = run_operator("alert", normalized_run("..XXXXX"), min_frames=2, cooldown_frames=10, update_interval_s=0)
    ev = [e for s in out for e in s.events]
    assert [e.type for e in ev] == ["start", "end"]
    assert ev[1].frame == 6 and ev[1].end_frame == 6
    # the last frame left without the end; the end travels on the stream's EndOfStream
    assert out[-2].index == 6 and [e.type for e in out[-2].events] == []
    assert isinstance(out[-1], EndOfStream) and [e.type for e in out[-1].events] == ["end"]


def test_frames_pass_at_once_even_while_an_event_is_open() -> None:
    """A live camera's frames are never delayed by the alert: each frame leaves with the call that brought it, with
    its events; the end of an event still open when the stream ends comes from end_events (it travels on the
    stream's EndOfStream), after the last frame left."""
    from streamad.operators.alert import Alert

    op = Alert(Alert.Config(min_frames=2, cooldown_frames=2, update_interval_s=0), None, "s")
    outs = [op.process(s) for s in normalized_run("..XX...XX")]
    assert [[f.index for f in o] for o in outs] == [[i] for i in range(9)]
    # 3 starts the event (min_frames 2); 5 ends it (cooldown 2); 8 starts another
    assert [[e.type for e in o[0].events] for o in outs] == [[], [], [], ["start"], [], ["end"], [], [], ["start"]]
    assert op.flush() == []
    end = op.end_events()  # the event started at 8 is still open when the stream ends
    assert [(e.type, e.frame, e.end_frame, e.seq) for e in end] == [("end", 8, 8, 1)]
    assert op.end_events() == []  # ended once


def test_open_event_ends_on_the_end_of_stream_through_the_pipeline(tmp_path) -> None:
    """Through the runtime, the end of an event still open at the stream's end reaches the sinks (here the JSONL
    file), after the start, and is counted in streamad_events."""
    from streamad.metrics import Metrics
    from streamad.operators.alert import Alert
    from streamad.parts import BuildContext
    from streamad.runtime.pipeline import Pipeline, StageSpec
    from streamad.sinks.jsonl import JsonlSink

    class Replay:
        stream_id, live = "s", False

        def frames(self):
            return iter(normalized_run("..XXXX"))

        def close(self) -> None:
            pass

    metrics = Metrics()
    stage = StageSpec("alert", Alert, Alert.Config(min_frames=2, update_interval_s=0))
    sink = JsonlSink(JsonlSink.Config(path=str(tmp_path / "alerts.jsonl")), BuildContext())
    pipe = Pipeline([Replay()], [stage], metrics, sinks=[sink])
    pipe.run()
    got = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [(e["type"], e["frame"], e["end_frame"]) for e in got] == [("start", 3, None), ("end", 5, 5)]
    assert metrics.registry.get_sample_value("streamad_events_total", {"stream": "s", "type": "end"}) == 1.0


def _regions_frame(i: int, contributions: dict[str, list[float]], normalized: float = 0.9) -> Scores:
    """A scored frame whose regions have the given per-stream contributions (region score = their sum)."""
    contrib = {k: np.array(v, np.float32) for k, v in contributions.items()}
    n = len(next(iter(contrib.values())))
    return Scores(stream_id="s", index=i, pts=i / 10, wall_time=1_700_000_000.0 + i / 10, raw_score=1.0, score=1.0,
                  boxes=np.array([[10 * k, 10, 10 * k + 8, 30] for k in range(n)], np.float32),
                  region_scores=np.sum(list(contrib.values()), axis=0), contributions=contrib,
                  normalized=normalized, anomalous=normalized >= 0.5, model={"name": "aivad", "version": "t"},
                  width=320, height=240)


def test_region_reasons_name_the_streams_beyond_normal_training_values() -> None:
    assert region_reasons({"velocity": 0.2, "deep": 1.4}) == ["unusual object"]
    assert region_reasons({"velocity": 1.1, "pose": 1.6, "deep": 0.4}) == ["unusual pose", "fast"]
    assert region_reasons({"velocity": 0.3, "pose": 0.7}) == ["unusual pose"]  # none reaches 1.0: the largest
    assert region_reasons({"velocity": np.float32(1.0)}) == ["fast"]  # the threshold itself counts
    assert region_reasons({"velocity": 0.3, "pose": 0.7}, threshold=0.25) == ["unusual pose", "fast"]
    assert region_reasons({"audio": 2.0}) == ["unusual audio"]
    assert region_reasons({}) == []  # no per-stream scores (image models): no reason is invented
    assert event_reasons([{"velocity": 1.2, "deep": 0.1}, {"velocity": 0.2, "deep": 1.9}]) == ["unusual object",
                                                                                             "fast"]


def test_alert_regions_and_event_carry_reasons_in_words() -> None:
    # region 0: deep 1.4 + velocity 0.2 (score 1.6); region 1: velocity 1.1 + deep 1.3 (2.4); region 2: 0.3 + 0.1
    def frames() -> list[Scores]:
        return [_regions_frame(i, {"velocity": [0.2, 1.1, 0.3], "deep": [1.4, 1.3, 0.1]}) for i in range(3)]

    ev = [e for s in run_operator("alert", frames(), min_frames=1, update_interval_s=0) for e in s.events]
    assert [e.type for e in ev] == ["start", "end"]
    regions = ev[0].regions  # highest region score first
    assert [r["reasons"] for r in regions] == [["unusual object", "fast"], ["unusual object"], ["fast"]]
    assert regions[1]["contributions"] == {"velocity": 0.2, "deep": 1.4} and regions[1]["box"] == [0.0, 10.0, 8.0,
                                                                                                   30.0]
    assert ev[0].reasons == ["unusual object", "fast"]  # deep peaked at 1.4, velocity at 1.1
    line = json.loads(event_json(ev[0]))
    assert line["reasons"] == ["unusual object", "fast"] and line["regions"][2]["reasons"] == ["fast"]

    strict = run_operator("alert", frames(), min_frames=1, update_interval_s=0, explain_threshold=1.35)
    first = next(e for s in strict for e in s.events)
    assert [r["reasons"] for r in first.regions] == [["unusual object"], ["unusual object"], ["fast"]]
    assert first.reasons == ["unusual object", "fast"]  # velocity is named only by the third region's fallback


def _event_ids(origin: str | None, version: str = "t", stream: str = "s", **cfg) -> list[str]:
    frames = normalized_run("..XXXX....XXX.....")
    for f in frames:
        f.origin, f.model = origin, {"name": "aivad", "version": version}
    out = run_operator("alert", frames, stream=stream, min_frames=2, cooldown_frames=3, update_interval_s=0,
                       **cfg)
    return [e.event_id for s in out for e in s.events if e.type == "start"]


def test_event_ids_of_a_file_stream_are_reproducible_and_change_with_file_model_settings_and_stream() -> None:
    first = _event_ids("file-a")
    assert len(first) == 2 and len(set(first)) == 2
    assert _event_ids("file-a") == first  # the same file replayed: the same ids (dedup by event_id works)
    for other in (_event_ids("file-b"), _event_ids("file-a", version="t2"), _event_ids("file-a", stream="s2"),
                  _event_ids("file-a", threshold=0.6)):
        assert len(other) == 2 and not set(other) & set(first), other


def test_event_ids_of_a_live_stream_are_unique_per_run() -> None:
    a, b = _event_ids(None), _event_ids(None)
    assert len(set(a + b)) == 4
