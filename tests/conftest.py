"""Shared pytest fixtures: real servers on 127.0.0.1 (logic in tests/servers.py, reusable outside pytest)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from servers import PrometheusServer, TansuBroker  # tests/ is on sys.path (rootdir conftest)
from streamad.frames import Event, Scores


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A running tansu Kafka broker (memory storage): ``.bootstrap`` ``"127.0.0.1:PORT"``, ``.stop()``,
    ``.kill()``, ``.start()`` (same port) for restart tests. Stopped by PID at teardown."""
    broker = TansuBroker(log_dir=tmp_path).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """Factory ``start_prometheus(targets, workdir=None) -> PrometheusServer`` (started; ``.url``, ``.query``,
    ``.wait_for``); every server it started is stopped by PID at teardown."""
    started: list[PrometheusServer] = []

    def start(targets: list[str], workdir: Path | None = None) -> PrometheusServer:
        server = PrometheusServer(targets, workdir or tmp_path / f"prometheus{len(started)}")
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def make_alert_scores(stream_id: str, n_updates: int = 1, start_frame: int = 10, fps: float = 25.0,
                      t0: float = 1_700_000_000.0) -> list[Scores]:
    """The scored frames of one alert's lifecycle on ``stream_id``: a ``start``, ``n_updates`` ``update`` and an
    ``end`` event, each on its own frame (consecutive indexes from ``start_frame``), with a new ``event_id``.
    Region scores are numpy floats, as a model leaves them."""
    event_id = uuid.uuid4().hex
    types = ["start"] + ["update"] * n_updates + ["end"]
    out, peak, total = [], 0.0, 0.0
    for seq, kind in enumerate(types):
        frame = start_frame + seq
        score = 0.6 + 0.1 * (seq % 3)
        peak, total = max(peak, score), total + score
        box = np.array([10, 20, 50, 80], np.float32)
        event = Event(event_id=event_id, stream_id=stream_id, type=kind, seq=seq,
                      start_time=_iso(t0 + start_frame / fps), time=_iso(t0 + frame / fps),
                      start_pts=start_frame / fps, pts=frame / fps, start_frame=start_frame, frame=frame,
                      end_frame=frame if kind == "end" else None, peak_score=peak, mean_score=total / (seq + 1),
                      threshold=0.5, model={"name": "aivad", "version": "test"},
                      regions=[{"box": box.tolist(), "score": np.float32(score),
                                "contributions": {"velocity": np.float32(score / 2)}}],
                      frames=seq + 1)
        out.append(Scores(stream_id=stream_id, index=frame, pts=frame / fps, wall_time=t0 + frame / fps,
                          raw_score=score * 10, score=score * 10, boxes=box[None], region_scores=np.array(
                              [score], np.float32), normalized=score, anomalous=True, events=[event],
                          model={"name": "aivad", "version": "test"}, width=320, height=240))
    return out


@pytest.fixture
def alert_scores() -> Callable[..., list[Scores]]:
    """:func:`make_alert_scores`: scored frames carrying one alert lifecycle (start, updates, end)."""
    return make_alert_scores

pytest_plugins = ["ped2_fixtures"]
