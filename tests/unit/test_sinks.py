"""stdout and jsonl sinks, sink registration, and credential redaction in messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamad.builtin import load_builtin_parts
from streamad.errors import ConfigError
from streamad.frames import EndOfStream, Scores
from streamad.parts import BuildContext
from streamad.redact import redact, register_secret
from streamad.registry import SINKS


def _build(kind: str, **fields: object):
    load_builtin_parts()
    cls = SINKS.get(kind)
    return cls(cls.Config(kind=kind, **fields), BuildContext())


def _plain_frame(stream: str, index: int) -> Scores:
    return Scores(stream_id=stream, index=index, pts=index / 25, wall_time=0.0, raw_score=1.5, score=1.5,
                  boxes=np.zeros((0, 4), np.float32), region_scores=np.zeros(0, np.float32), normalized=0.2,
                  anomalous=False)


def test_builtin_sinks_are_registered() -> None:
    load_builtin_parts()
    assert {"stdout", "jsonl", "kafka", "prometheus"} <= set(SINKS.names())


def test_jsonl_appends_one_object_per_event(tmp_path: Path, alert_scores) -> None:
    path = tmp_path / "out" / "nested" / "alerts.jsonl"  # parent folders do not exist yet
    cam1, cam2 = alert_scores("cam1", n_updates=2), alert_scores("cam2", n_updates=0)
    sink = _build("jsonl", path=str(path), fsync=True)
    frames = [cam1[0], _plain_frame("cam1", 11), cam2[0], cam1[1], cam2[1], cam1[2], cam1[3]]
    written = []
    for i, scores in enumerate(frames):
        sink.write(scores)
        written += [e.to_json() for e in scores.events]
        assert len(path.read_text().splitlines()) == len(written)  # flushed per event, not at close
    sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(d["stream_id"], d["type"], d["seq"]) for d in lines] == [
        ("cam1", "start", 0), ("cam2", "start", 0), ("cam1", "update", 1), ("cam2", "end", 1),
        ("cam1", "update", 2), ("cam1", "end", 3)]
    assert lines[0] == json.loads(json.dumps(written[0], default=float))  # numpy floats written as numbers
    assert isinstance(lines[0]["regions"][0]["score"], float)
    assert lines[-1]["end_frame"] == lines[-1]["frame"] and lines[0]["end_frame"] is None

    again = _build("jsonl", path=str(path))  # a restart appends, never truncates
    again.write(alert_scores("cam3", n_updates=0)[0])
    again.close()
    assert len(path.read_text().splitlines()) == 7


def test_jsonl_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"jsonl sink: cannot open path .*file/alerts.jsonl"):
        _build("jsonl", path=str(blocker / "alerts.jsonl"))


def test_stdout_prints_a_line_per_event(capsys: pytest.CaptureFixture[str], alert_scores) -> None:
    frames = alert_scores("ped2/Test001", n_updates=1, start_frame=120)
    sink = _build("stdout")
    sink.write(_plain_frame("ped2/Test001", 119))
    for scores in frames:
        sink.write(scores)
        assert capsys.readouterr().out.count("\n") == 1  # printed as it happens
    sink.close()
    event = frames[0].events[0]
    sink.write(frames[0])
    line = capsys.readouterr().out.strip()
    for part in ("start", "stream=ped2/Test001", f"event={event.event_id}", "frame=120", "t=4.800s",
                 "score=0.600", "peak=0.600", "regions=1"):
        assert part in line, (part, line)


def test_stdout_all_frames_prints_every_frame(capsys: pytest.CaptureFixture[str], alert_scores) -> None:
    sink = _build("stdout", all_frames=True)
    frames = [_plain_frame("cam", i) for i in range(5)] + alert_scores("cam", n_updates=0, start_frame=5)
    for scores in frames:
        sink.write(scores)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 7 + 2  # 7 frame lines + start and end lines
    assert out[0].startswith("frame stream=cam frame=0 ") and out[0].endswith("normal")
    assert sum(line.startswith("ALERT") for line in out) == 2


def test_event_sinks_deliver_the_events_an_end_of_stream_carries(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  alert_scores) -> None:
    """The end of an event still open when its stream ended travels on EndOfStream (no frame left to carry it):
    jsonl appends it and stdout prints it, after the frames' events."""
    start, *_, end_frame = alert_scores("cam", n_updates=0, start_frame=5)
    end = end_frame.events.pop()
    path = tmp_path / "alerts.jsonl"
    jsonl, stdout = _build("jsonl", path=str(path)), _build("stdout")
    for sink in (jsonl, stdout):
        sink.write(start)
        sink.write(end_frame)  # the stream's last frame, without the end
        sink.end_stream(EndOfStream("cam", events=[end]))
        sink.end_stream(EndOfStream("other"))  # nothing to deliver
    jsonl.close()
    assert [json.loads(line)["type"] for line in path.read_text().splitlines()] == ["start", "end"]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["start", "end"]
    assert f"event={end.event_id}" in lines[1] and "score=-" in lines[1]


def test_redact_masks_passwords_in_urls_and_registered_secrets() -> None:
    assert redact("cannot open rtsp://admin:hunter2@10.0.0.5:554/live") == \
        "cannot open rtsp://admin:***@10.0.0.5:554/live"
    assert redact("http://u:p%40ss@host/x and kafka://bob:pw@b:9092") == \
        "http://u:***@host/x and kafka://bob:***@b:9092"
    assert redact("sasl_plain_password=abc123 other") == "sasl_plain_password=*** other"
    assert redact("rtsp://cam.local/live user@example.com") == "rtsp://cam.local/live user@example.com"
    register_secret("Zq9-very-secret")
    assert "Zq9-very-secret" not in redact(RuntimeError("SASL authentication failed for Zq9-very-secret"))
