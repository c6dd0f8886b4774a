"""The alert event lifecycle: start after min_frames, updates at most every update_interval_s, end after
cooldown_frames, end at end of stream."""

from __future__ import annotations

from helpers import run_operator, scores


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
    assert "velocity" in start.regions[0]["contributions"]
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
    assert out[-1].index == 6 and out[-1].events[-1].type == "end"
