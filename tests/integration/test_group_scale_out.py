"""Scale-out through Kafka: three `streamad serve CONFIG --group G` workers share six real-time video streams
through a real broker (tansu); a SIGKILLed worker's streams come back on the survivors within 20 s; once the
killed worker is restarted and a fourth joins, the streams spread over four workers. Who serves what is read from each worker's /metrics only
(``streamad_frames_processed_total{stream}`` increasing)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serve_process import ServeProcess, pipeline_yaml
from servers import MissingBinaryError

GROUP = "cams"
SESSION_TIMEOUT_S = 6  # heartbeat 1 s (a sixth)
MOVE_BOUND_S = 20.0


def _mp4_from_frames(folder: Path, dst: Path) -> Path:
    """A Ped2 clip (a folder of 10 frames/s JPEGs) as an H.264 MP4, as a camera recording would be."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise MissingBinaryError("ffmpeg is missing: apt-get install -y --no-install-recommends ffmpeg")
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-framerate", "10", "-i", str(folder / "%03d.jpg"),
                    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "25", "-bf", "0",
                    str(dst)], check=True, capture_output=True, timeout=120)
    return dst


@pytest.fixture(scope="module")
def six_videos(data_root: Path, vtest_h264: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """stream id -> video: vtest (384x288, 79.5 s) and Ped2 Test001-005 (360x240, 12-18 s each), 10 frames/s."""
    out = tmp_path_factory.mktemp("videos")
    test = data_root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test"
    videos = {"vtest": vtest_h264}
    for i in range(1, 6):
        videos[f"ped2-test00{i}"] = _mp4_from_frames(test / f"Test00{i}", out / f"Test00{i}.mp4")
    return videos


class GroupWorker(ServeProcess):
    """``python -m streamad.cli serve CONFIG --group G --bootstrap B --session-timeout 6`` (its own workdir,
    so its own spool and log)."""

    def __init__(self, config: Path, model_dir: Path, workdir: Path, http_port: int, bootstrap: str) -> None:
        super().__init__(config, model_dir, workdir, http_port)
        self.bootstrap = bootstrap

    def start(self, timeout_s: float = 90.0) -> "GroupWorker":  # type: ignore[override]
        self._launch([sys.executable, "-m", "streamad.cli", "serve", str(self.config), "--model",
                      str(self.model_dir), "--group", GROUP, "--bootstrap", self.bootstrap,
                      "--session-timeout", str(SESSION_TIMEOUT_S)], self.http_port, "streamad worker", timeout_s,
                     self.log_path, env=self.env, cwd=self.workdir, stdout_path=self.out_path)
        return self

    def processed(self) -> dict[str, float]:
        """``streamad_frames_processed_total`` per stream (empty when /metrics does not answer)."""
        return {dict(labels)["stream"]: v for (name, labels), v in self.metrics().items()
                if name == "streamad_frames_processed_total"}

    def held(self) -> set[str]:
        """Streams this worker says it holds (``streamad_group_stream{group,stream} == 1``)."""
        return {dict(labels)["stream"] for (name, labels), v in self.metrics().items()
                if name == "streamad_group_stream" and v == 1.0}


def _serving(workers: dict[str, GroupWorker], window_s: float = 2.5) -> dict[str, set[str]]:
    """worker name -> streams whose processed-frames counter grew on it during ``window_s`` seconds."""
    before = {n: w.processed() for n, w in workers.items()}
    time.sleep(window_s)
    after = {n: w.processed() for n, w in workers.items()}
    return {n: {s for s, v in after[n].items() if v > before[n].get(s, 0.0)} for n in workers}


def _settled(workers: dict[str, GroupWorker], streams: set[str], timeout_s: float) -> dict[str, set[str]]:
    """Poll until every stream grows on exactly one worker and every worker serves at least one; the last
    observation (AssertionError with it after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    seen: dict[str, set[str]] = {}
    while time.monotonic() < deadline:
        seen = _serving(workers)
        owners = {s: [n for n, got in seen.items() if s in got] for s in streams}
        if all(len(o) == 1 for o in owners.values()) and all(seen.values()):
            return seen
    logs = "\n".join(f"--- {n}\n{w.log()[-3000:]}" for n, w in workers.items())
    raise AssertionError(f"streams not spread one worker each within {timeout_s:g} s; last seen {seen}\n{logs}")


def test_three_workers_share_six_streams_survive_a_kill_and_spread_to_a_fourth(
        kafka_broker, ped2_model: Path, six_videos: dict[str, Path], tmp_path: Path) -> None:
    streams = [{"kind": "video_file", "id": sid, "path": str(path), "realtime": True, "loop": True,
                "every_nth": 2} for sid, path in six_videos.items()]
    ids = set(six_videos)
    workers: dict[str, GroupWorker] = {}

    def start(name: str) -> GroupWorker:
        workdir = tmp_path / name
        workdir.mkdir()
        port = ServeProcess.port()
        cfg = pipeline_yaml(workdir / "pipeline.yaml", streams,
                            runtime={"http": {"port": port}, "max_active_streams": 8, "grace_period_s": 5})
        w = GroupWorker(cfg, ped2_model, workdir, port, kafka_broker.bootstrap)
        workers[name] = w
        return w.start()

    try:
        for name in ("w1", "w2", "w3"):
            start(name)
        # every stream on exactly one worker, every worker busy (2 + 2 + 2 with the sticky assignor)
        first = _settled(workers, ids, timeout_s=120)
        assert sorted(len(s) for s in first.values()) == [2, 2, 2], first
        for n, w in workers.items():  # the worker's own account of what it holds agrees with its counters
            assert w.held() == first[n], (n, w.held(), first[n])

        # SIGKILL one worker: its streams come back on the survivors within 20 s of the kill
        victim = "w2"
        moved = first[victim]
        survivors = {n: w for n, w in workers.items() if n != victim}
        baseline = {n: w.processed() for n, w in survivors.items()}
        workers[victim].kill()
        t_kill = time.monotonic()
        back: dict[str, float] = {}
        while len(back) < len(moved) and time.monotonic() - t_kill < MOVE_BOUND_S + 10:
            for n, w in survivors.items():
                for s, v in w.processed().items():
                    if s in moved and s not in back and v > baseline[n].get(s, 0.0):
                        back[s] = time.monotonic() - t_kill
            time.sleep(0.25)
        assert set(back) == moved, f"streams {sorted(moved - set(back))} not served again within " \
                                   f"{MOVE_BOUND_S + 10:g} s of the kill"
        assert max(back.values()) <= MOVE_BOUND_S, back
        del workers[victim]
        after_kill = _settled(workers, ids, timeout_s=30)
        assert sorted(len(s) for s in after_kill.values()) == [3, 3], after_kill

        print(f"streams of the killed worker served again after {back} s")

        # the killed worker is restarted (it rejoins) and a fourth worker joins: the six streams spread over four
        # workers, still one worker per stream
        start("w2-restarted")
        start("w4")
        spread = _settled(workers, ids, timeout_s=90)
        assert len(spread) == 4 and all(spread.values()), spread
        assert sorted(len(s) for s in spread.values()) == [1, 1, 2, 2], spread
        assert all(w.running for w in workers.values())
        # SIGTERM: a worker drains its streams, leaves the group and exits cleanly
        assert workers["w4"].stop(timeout_s=30) == 0, workers["w4"].log()[-3000:]
        assert "served " in workers["w4"].out()
    finally:
        for w in workers.values():
            w.kill()


def test_a_control_topic_with_too_few_partitions_is_a_clear_error(kafka_broker, ped2_model: Path,
                                                                   six_videos: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    admin.create_topics([NewTopic("streamad.control.small", 2, 1)])
    admin.close()
    streams = [{"kind": "video_file", "id": sid, "path": str(path)} for sid, path in six_videos.items()]
    cfg = pipeline_yaml(tmp_path / "pipeline.yaml", streams)
    run = subprocess.run([sys.executable, "-m", "streamad.cli", "serve", str(cfg), "--model", str(ped2_model),
                          "--group", "small", "--bootstrap", kafka_broker.bootstrap], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "control topic streamad.control.small has 2 partitions but the config lists 6 streams" in run.stderr
