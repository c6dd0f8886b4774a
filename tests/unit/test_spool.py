"""The durable alert spool: order, acknowledgement, crash recovery, bounds, concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streamad.sinks.spool import Spool, SpoolError, SpoolFullError, SpoolRecordTooLargeError


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def _drain(spool: Spool) -> list[tuple[int, str | None, str]]:
    out = []
    while (rec := spool.peek()) is not None:
        out.append((rec.seq, rec.key, rec.value))
        spool.ack(rec.seq)
    return out


def test_records_come_back_in_order_and_ack_deletes_them(tmp_path: Path) -> None:
    with Spool(tmp_path / "s", segment_bytes=200) as spool:
        seqs = [spool.append(f"cam{i % 2}", json.dumps({"n": i})) for i in range(10)]
        assert seqs == list(range(10))
        assert spool.depth == 10
        assert len(_segments(tmp_path / "s")) > 1  # segment_bytes=200 forced several files
        first = spool.peek()
        assert (first.seq, first.key, json.loads(first.value)) == (0, "cam0", {"n": 0})
        assert spool.peek().seq == 0  # peek does not consume
        spool.ack(4)
        assert spool.depth == 5 and spool.peek().seq == 5
        assert json.loads((tmp_path / "s" / "acked.json").read_text()) == {"acked": 4}
        assert [r[0] for r in _drain(spool)] == list(range(5, 10))
        assert spool.depth == 0 and spool.size_bytes == 0
        assert _segments(tmp_path / "s") == []  # every record acknowledged: no segment left on disk
        assert spool.peek(timeout=0.05) is None
        with pytest.raises(ValueError, match="cannot ack seq 99"):
            spool.ack(99)


def test_reopen_without_ack_resends_unacknowledged_records(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        for i in range(6):
            spool.append("cam", f"alert {i}")
        spool.ack(1)
    with Spool(tmp_path) as spool:
        assert spool.depth == 4
        assert spool.append("cam", "alert 6") == 6  # numbering continues across restarts
        assert [(r[0], r[2]) for r in _drain(spool)] == [(i, f"alert {i}") for i in range(2, 7)]
    with Spool(tmp_path) as spool:
        assert spool.depth == 0
        assert spool.append("cam", "alert 7") == 7


def test_process_killed_without_close_loses_nothing_appended(tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "from streamad.sinks.spool import Spool\n"
        "s = Spool(sys.argv[1])\n"
        "for i in range(20): s.append('cam', 'alert %d' % i)\n"
        "s.ack(7)\n"
        "os._exit(9)  # a crash: no close, no flush, lock dropped by the kernel\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    with Spool(tmp_path) as spool:
        assert [r[2] for r in _drain(spool)] == [f"alert {i}" for i in range(8, 20)]


def test_torn_last_line_is_cut_and_spool_stays_usable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(tmp_path) as spool:
        for i in range(3):
            spool.append("cam", f"alert {i}")
    seg = _segments(tmp_path)[-1]
    intact = seg.read_bytes()
    with open(seg, "ab") as f:
        f.write(b'{"seq":3,"key":"cam","val')  # an append cut short by a crash
    with Spool(tmp_path) as spool:
        assert spool.depth == 3
        assert seg.read_bytes() == intact  # the torn bytes were cut
        assert spool.append("cam", "alert 3") == 3
    assert "torn" in caplog.text
    with Spool(tmp_path) as spool:  # the file written after the repair reads back cleanly
        assert [r[2] for r in _drain(spool)] == [f"alert {i}" for i in range(4)]


def test_damage_before_valid_records_is_skipped_and_named_and_the_rest_recovered(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(tmp_path) as spool:
        for i in range(3):
            spool.append("cam", f"alert {i}")
    seg = _segments(tmp_path)[-1]
    lines = seg.read_bytes().split(b"\n")
    lines[1] = b'{"seq":1,"key":"cam","val'  # a torn line in the middle, good records after it
    seg.write_bytes(b"\n".join(lines))
    with Spool(tmp_path) as spool:  # opens: it never refuses to start over its content
        assert [r[2] for r in _drain(spool)] == ["alert 0", "alert 2"]
    assert f"{seg.name}: skipped unreadable line 2" in caplog.text


def test_second_user_of_a_directory_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path):
        with pytest.raises(SpoolError, match="in use"):
            Spool(tmp_path)
    Spool(tmp_path).close()  # released on close


def test_full_spool_blocks_then_raises_and_never_drops(tmp_path: Path) -> None:
    value = "x" * 100
    with Spool(tmp_path, max_bytes=1000, segment_bytes=250) as spool:
        n = 0
        with pytest.raises(SpoolFullError, match="full"):
            for _ in range(100):
                spool.append("cam", value, timeout=0.2)
                n += 1
        assert 5 <= n < 10 and spool.depth == n  # the failed append left no trace
        assert spool.size_bytes <= 1000
        t0 = time.monotonic()
        with pytest.raises(SpoolFullError):
            spool.append("cam", value, timeout=0.3)
        assert 0.25 < time.monotonic() - t0 < 2.0
        with pytest.raises(SpoolRecordTooLargeError, match="exceeds"):
            spool.append("cam", "y" * 2000)

        # a blocked append proceeds as soon as the deliverer frees a segment
        def deliver_later() -> None:
            time.sleep(0.3)
            spool.ack(spool.peek().seq + 2)

        threading.Thread(target=deliver_later).start()
        t0 = time.monotonic()
        seq = spool.append("cam", value, timeout=5)
        assert 0.2 < time.monotonic() - t0 < 4.0
        assert seq == n and spool.depth == n - 3 + 1


def test_concurrent_appender_and_deliverer_keep_order(tmp_path: Path) -> None:
    total = 400
    got: list[str] = []
    with Spool(tmp_path, max_bytes=4000, fsync=False) as spool:
        max_size = 0

        def deliver() -> None:
            nonlocal max_size
            deadline = time.monotonic() + 30
            while len(got) < total and time.monotonic() < deadline:
                rec = spool.peek(timeout=0.5)
                if rec is not None:
                    got.append(rec.value)
                    max_size = max(max_size, spool.size_bytes)
                    spool.ack(rec.seq)

        t = threading.Thread(target=deliver)
        t.start()
        for i in range(total):  # 400 * ~40 bytes is 4x the bound: appends must wait for the deliverer
            spool.append(f"cam{i % 3}", f"alert {i:05d}", timeout=10)
        t.join(timeout=30)
        assert got == [f"alert {i:05d}" for i in range(total)]
        assert max_size <= 4000
        assert spool.wait_empty(1.0) and spool.depth == 0


_FAILING_WRITER = """
import json, resource, signal, sys
from streamad.sinks.spool import Spool, SpoolWriteError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
spool = Spool(sys.argv[1], max_bytes=2**20, segment_bytes=2**20)
acked, failures = [], []
for i in range(12):
    if i == 4:
        resource.setrlimit(resource.RLIMIT_FSIZE, (spool.size_bytes + 30, hard))  # the next record breaks off
    if i == 8:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
    try:
        acked.append((spool.append("cam", "alert %d " % i + "x" * 60), "alert %d " % i + "x" * 60))
    except SpoolWriteError as e:
        failures.append(str(e))
print(json.dumps({"acked": acked, "failures": failures}))
"""  # exits without close(), as a crash would


def test_a_write_failing_mid_record_leaves_the_spool_readable_and_loses_nothing_acknowledged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = subprocess.run([sys.executable, "-c", _FAILING_WRITER, str(tmp_path)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    got = json.loads(out)
    acked = [(seq, value) for seq, value in got["acked"]]
    assert len(got["failures"]) == 4 and "File too large" in got["failures"][0]
    assert [v.split()[1] for _, v in acked] == ["0", "1", "2", "3", "8", "9", "10", "11"]
    seqs = [seq for seq, _ in acked]
    assert seqs == [0, 1, 2, 3, 8, 9, 10, 11], "a failed attempt's number is never reused"
    with Spool(tmp_path) as spool:  # every record acknowledged to the caller comes back, nothing else
        assert [(r[0], r[2]) for r in _drain(spool)] == acked
    assert "skipped" not in caplog.text and "torn" not in caplog.text  # the failed writes left no bytes behind


def test_an_oversized_record_is_refused_at_once_and_leaves_nothing(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1000) as spool:
        t0 = time.monotonic()
        with pytest.raises(SpoolRecordTooLargeError, match=rf"exceeds the spool's max_bytes=1000 \({tmp_path}"):
            spool.append("cam", "y" * 2000, timeout=30)
        assert time.monotonic() - t0 < 5  # not retried as "full": it can never fit
        assert spool.depth == 0 and spool.append("cam", "ok") == 0
