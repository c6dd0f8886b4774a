"""Shared pytest fixtures: real servers on 127.0.0.1 (logic in tests/servers.py, reusable outside pytest)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from servers import ChildProcess, MotoS3, PrometheusServer, RtspServer, TansuBroker, transcode_h264  # tests/ is on sys.path
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
def durable_kafka_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A tansu broker whose topics live in an S3 bucket of a local moto_server, so that ``.kill()`` and
    ``.start()`` keep every acknowledged message (a memory broker loses them). Both stopped by PID at teardown."""
    s3 = MotoS3(tmp_path).start()
    broker = TansuBroker(log_dir=tmp_path, s3=s3)
    try:
        yield broker.start()
    finally:
        broker.stop()
        s3.stop()


@pytest.fixture(scope="session")
def vtest_h264(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """../shared/data/opencv/vtest.avi (768x576, 10 frames/s, 795 frames, 79.5 s) transcoded by ffmpeg to an
    H.264 MP4 at 384x288 pixels (same rate and length), for the RTSP server."""
    src = data_root / "opencv" / "vtest.avi"
    assert src.is_file(), f"{src} not found: the shared data folder lacks opencv/vtest.avi"
    return transcode_h264(src, tmp_path_factory.mktemp("vtest") / "vtest.mp4", width=384, height=288)


def _server_factory(make: Callable[..., ChildProcess]) -> Iterator[Callable[..., ChildProcess]]:
    """A fixture body: yields ``start(*args, **kw)`` that builds a server with ``make``, starts it and returns
    it; every server it started is stopped by PID at teardown."""
    started: list[ChildProcess] = []

    def start(*args: object, **kw: object) -> ChildProcess:
        server = make(*args, **kw)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def start_rtsp(tmp_path: Path) -> Iterator[Callable[..., RtspServer]]:
    """Factory ``start_rtsp(media=None, **kw) -> RtspServer`` (started; see :class:`servers.RtspServer` for the
    live test pattern options); every server it started is stopped by PID at teardown (thawed first)."""
    yield from _server_factory(lambda media=None, **kw: RtspServer(tmp_path, media, **kw))  # type: ignore[misc]


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """Factory ``start_prometheus(targets, workdir=None) -> PrometheusServer`` (started; ``.url``, ``.query``,
    ``.wait_for``); every server it started is stopped by PID at teardown."""
    count = iter(range(1_000_000))
    yield from _server_factory(  # type: ignore[misc]
        lambda targets, workdir=None: PrometheusServer(targets, workdir or tmp_path / f"prometheus{next(count)}"))


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

pytest_plugins = ["ped2_fixtures", "image_fixtures"]
