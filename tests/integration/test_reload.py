"""Config reload of a running ``streamad serve`` (a child process): SIGHUP, or a change of the config file,
re-reads the streams. A stream whose entry did not change keeps running untouched (its frame numbering never
restarts, it never ends: same source, same operator state); a removed stream drains and ends; a new one starts;
an invalid config is logged and the running pipeline goes on as it was.

Streams: vtest.avi as H.264 (79.5 s) played in real time by ``video_file`` sources, printed frame by frame by
the stdout sink (``all_frames``)."""

from __future__ import annotations

import contextlib
import re
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from serve_process import ServeProcess, pipeline_yaml, wait_until


def _write(path: Path, video: Path, ids: list[str], port: int, watch: bool, queue_size: int = 16) -> None:
    streams = [{"kind": "video_file", "path": str(video), "id": i, "realtime": True} for i in ids]
    pipeline_yaml(path, streams, sinks=[{"kind": "stdout", "all_frames": True}],
                  runtime={"http": {"port": port}, "watch_config": watch, "watch_interval_s": 0.3,
                           "queue_size": queue_size, "grace_period_s": 5})


def _frames_by_stream(stdout: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for m in re.finditer(r"^frame stream=(\S+) frame=(\d+) ", stdout, re.M):
        out[m.group(1)].append(int(m.group(2)))
    return out


def _status(proc: ServeProcess, stream: str) -> str:
    _, health = proc.json("/healthz")
    return health.get("streams", {}).get(stream, {}).get("status", "gone")


def _processed(proc: ServeProcess, stream: str) -> float:
    return proc.value("streamad_frames_processed_total", stream=stream)


@contextlib.contextmanager
def _serving_a_and_b(video: Path, model: Path, tmp_path: Path, watch: bool) -> Iterator[tuple[ServeProcess, Path]]:
    """``streamad serve`` of streams A and B, both scored already; yields the process and its config file."""
    port = ServeProcess.port()
    cfg = tmp_path / "reload.yaml"
    _write(cfg, video, ["A", "B"], port, watch=watch)
    with ServeProcess(cfg, model, tmp_path, port) as proc:
        wait_until(lambda: _processed(proc, "A") >= 20 and _processed(proc, "B") >= 20, 60, "A and B scored")
        yield proc, cfg


def _assert_untouched(frames: list[int]) -> None:
    """One uninterrupted run of the stream: every frame number from 0 on exactly once (a restarted source would
    number its frames from 0 again; the first clip also scores the edge frames before it, so the order may start
    3, 0, 1, 2, 4 ...)."""
    assert frames and len(frames) == len(set(frames)) and set(frames) == set(range(len(frames))), frames[:50]


def test_sighup_reloads_streams_and_leaves_unchanged_ones_alone(vtest_h264: Path, ped2_model: Path,
                                                                tmp_path: Path) -> None:
    with _serving_a_and_b(vtest_h264, ped2_model, tmp_path, watch=False) as (proc, cfg):
        _write(cfg, vtest_h264, ["A", "C"], proc.http_port, watch=False, queue_size=8)
        time.sleep(1.5)  # watching is off: nothing happens until SIGHUP
        assert _status(proc, "B") == "live" and _status(proc, "C") == "gone"
        proc.signal(signal.SIGHUP)
        wait_until(lambda: _status(proc, "B") == "gone" and _processed(proc, "C") >= 20, 30, "B gone, C scored")
        a_before = _processed(proc, "A")
        wait_until(lambda: _processed(proc, "A") >= a_before + 20, 20, "A to go on")
        assert _status(proc, "A") == "live"
        samples = proc.metrics()  # the removed stream's series are gone once its end was delivered
        assert samples, "no /metrics"
        assert not [k for k in samples if ("stream", "B") in k[1]], [k for k in samples if ("stream", "B") in k[1]]
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.log()[-3000:]
    log = proc.log()
    assert "streams: 1 kept, 1 stopped, 1 started" in log
    assert "config reload: runtime changed; restart streamad to apply that" in log
    frames = _frames_by_stream(proc.out())
    _assert_untouched(frames["A"])
    _assert_untouched(frames["B"])
    _assert_untouched(frames["C"])
    assert len(frames["A"]) > len(frames["C"]) + 20


def test_file_change_reloads_and_an_invalid_config_changes_nothing(vtest_h264: Path, ped2_model: Path,
                                                                  tmp_path: Path) -> None:
    with _serving_a_and_b(vtest_h264, ped2_model, tmp_path, watch=True) as (proc, cfg):
        valid = cfg.read_text()
        cfg.write_text(valid.replace("streams:", "streams: [\n"))  # malformed YAML
        wait_until(lambda: "config reload (the file changed)" in proc.log(), 10, "the reload error")
        assert "malformed YAML" in proc.log()
        cfg.write_text(valid.replace("kind: video_file", "kind: video_fil"))  # valid YAML, unknown kind
        wait_until(lambda: proc.log().count("the running pipeline goes on unchanged") >= 2, 10, "the second error")
        cfg.write_text(valid.replace(str(vtest_h264), str(tmp_path / "missing.mp4"), 1))  # a stream that fails
        wait_until(lambda: proc.log().count("the running pipeline goes on unchanged") >= 3, 10, "the third error")
        assert "file not found" in proc.log()
        a, b = _processed(proc, "A"), _processed(proc, "B")
        wait_until(lambda: _processed(proc, "A") >= a + 10 and _processed(proc, "B") >= b + 10, 20,
                   "A and B to go on after the rejected configs")
        assert _status(proc, "A") == "live" and _status(proc, "B") == "live"

        _write(cfg, vtest_h264, ["A", "C"], proc.http_port, watch=True)
        wait_until(lambda: _status(proc, "B") == "gone" and _processed(proc, "C") >= 20, 30, "B gone, C scored")
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.log()[-3000:]
    frames = _frames_by_stream(proc.out())
    _assert_untouched(frames["A"])
    _assert_untouched(frames["B"])
    assert "config reloaded (the file changed)" in proc.log()
