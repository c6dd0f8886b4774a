"""A durable local spool: alerts are on disk before the pipeline moves on, and leave only once delivered.

Layout of a spool directory::

    00000000000000000000.seg   append-only segment files, one JSON record a line:
    00000000000000000042.seg       {"seq": 42, "key": "cam1", "value": "{...alert json...}"}
    acked.json                 acknowledgement watermark {"acked": 41}: every record with seq <= 41 was delivered
    LOCK                       held (flock) by the one process that uses the spool

* :meth:`Spool.append` writes one record and ``fsync``\\ s it before returning (at-least-once: a record that was
  appended survives a crash of this process or of the machine).
* The deliverer reads the oldest un-acknowledged record with :meth:`Spool.peek`, delivers it, then calls
  :meth:`Spool.ack`. The watermark file is replaced atomically (tmp file, fsync, rename, fsync of the folder), and
  segments whose records are all acknowledged are deleted.
* Segments are written unbuffered (``os.write`` on a file descriptor opened ``O_APPEND``). When a write fails
  (disk full ``ENOSPC``, file-size limit ``EFBIG``, I/O error), what part of the line reached the file is cut with
  ``os.ftruncate`` and :class:`SpoolWriteError` is raised: the record was not appended, the caller may retry, and
  the sequence number of the failed attempt is never reused. If even the cut fails, the segment is closed and the
  next append starts a new one.
* On open, un-acknowledged records are recovered in order. A torn last line (an append cut short by a crash, so
  never acknowledged to the caller) is cut off with a warning. A line that cannot be read anywhere else (a torn
  line followed by good records, or a record out of sequence order) is skipped with an error log naming the file
  and line: the records around it are recovered and the spool opens (it never refuses to start over its content).
* Bounded: the segment files never exceed ``max_bytes`` together. When the spool is full, :meth:`Spool.append`
  blocks until the deliverer frees space, up to a timeout, then raises :class:`SpoolFullError`. A single record
  larger than ``max_bytes`` can never be stored: :class:`SpoolRecordTooLargeError` (not retryable). Nothing is
  ever dropped silently.

Thread-safe for one appending thread and one delivering thread (one lock and condition guard all state).
"""

from __future__ import annotations

import collections
import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from streamad.errors import SinkFullError, StreamadError
from streamad.fsync import fsync_path

__all__ = ["Spool", "SpoolRecord", "SpoolError", "SpoolFullError", "SpoolWriteError", "SpoolRecordTooLargeError"]

log = logging.getLogger(__name__)

_SEGMENT_SUFFIX = ".seg"
_WATERMARK = "acked.json"


class SpoolError(StreamadError):
    """The spool directory cannot be used: locked by another process, unreadable, damaged, or closed."""


class SpoolFullError(SpoolError, SinkFullError):
    """The spool stayed full (``max_bytes``) for longer than the append timeout: the deliverer is not keeping up.
    Retryable (a :class:`~streamad.errors.SinkFullError`): the runtime holds the pipeline back and tries again."""

    reason = "spool_full"


class SpoolWriteError(SpoolError, SinkFullError):
    """Writing a segment failed (disk full, file-size limit, I/O error); the record was not appended and the spool
    is intact. Retryable (a :class:`~streamad.errors.SinkFullError`): the runtime holds the pipeline back and tries
    again, so a full disk applies backpressure and never drops an alert."""

    reason = "write_error"


class SpoolRecordTooLargeError(SpoolError):
    """One record is larger than the spool's ``max_bytes``: it can never be stored (not retryable)."""


@dataclass(frozen=True)
class SpoolRecord:
    """One spooled message.

    Attributes:
        seq: spool sequence number, increasing by one per append, kept across restarts.
        key: message key (for Kafka: the stream id), or ``None``.
        value: message text (for Kafka: the alert JSON).
    """

    seq: int
    key: str | None
    value: str


@dataclass
class _Segment:
    path: Path
    last_seq: int
    size: int



class Spool:
    """Append-only, fsync'd, bounded on-disk queue with an acknowledgement watermark.

    Args:
        directory: spool folder (created with its parents).
        max_bytes: upper bound of the segment files' total size in bytes.
        segment_bytes: a new segment file is started once the current one would exceed this (default
            ``max_bytes / 8``, at most 8 MiB); whole segments are deleted once acknowledged.
        full_timeout_s: how long :meth:`append` waits for space when the spool is full (seconds).
        fsync: ``fsync`` every append and watermark update (turn off only in throwaway tests).

    Raises:
        SpoolError: the directory is used by another process, or a segment or the watermark is damaged (the
            message names the file and line).
    """

    def __init__(self, directory: str | Path, max_bytes: int = 64 * 2**20, segment_bytes: int | None = None,
                 full_timeout_s: float = 30.0, fsync: bool = True) -> None:
        if max_bytes <= 0:
            raise ValueError(f"spool max_bytes must be > 0, got {max_bytes}")
        self.directory = Path(directory)
        self.max_bytes = int(max_bytes)
        self.segment_bytes = int(segment_bytes or max(1, min(8 * 2**20, self.max_bytes // 8)))
        self.full_timeout_s = float(full_timeout_s)
        self._fsync = fsync
        self._cond = threading.Condition()
        self._pending: collections.deque[SpoolRecord] = collections.deque()
        self._segments: list[_Segment] = []
        self._active: int | None = None  # O_APPEND descriptor of the last segment while this process appends to it
        self.waiting_for_space = False  # an append is blocked on a full spool (read without the lock, for health)
        self._closed = False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.directory / "LOCK", "a+b")
        except OSError as e:
            raise SpoolError(f"cannot create spool directory {self.directory}: {e}") from e
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise SpoolError(f"spool directory {self.directory} is in use by another process (or another sink in "
                             f"this one); give each pipeline its own spool_dir") from None
        try:
            self._recover()
        except BaseException:
            self._release_lock()
            raise

    # ----------------------------------------------------------------------------------------------- recovery
    def _recover(self) -> None:
        self._acked = self._read_watermark()
        paths = sorted(self.directory.glob("*" + _SEGMENT_SUFFIX), key=lambda p: p.name)
        last_seq = -1
        for i, path in enumerate(paths):
            records, good_size = self._read_segment(path, is_last=i == len(paths) - 1, after=last_seq)
            if records:
                last_seq = records[-1].seq
            if not records or records[-1].seq <= self._acked:
                self._unlink(path)  # fully acknowledged (a crash came between watermark and delete) or empty
                continue
            self._segments.append(_Segment(path, last_seq, good_size))
            self._pending.extend(r for r in records if r.seq > self._acked)
        self._next_seq = max(last_seq, self._acked) + 1
        if self._pending:
            log.info("spool %s: recovered %d unacknowledged records (seq %d..%d)", self.directory,
                     len(self._pending), self._pending[0].seq, self._pending[-1].seq)

    def _read_watermark(self) -> int:
        path = self.directory / _WATERMARK
        if not path.exists():
            return -1
        try:
            acked = json.loads(path.read_text(encoding="utf-8"))["acked"]
            if not isinstance(acked, int):
                raise TypeError(f"acked is {type(acked).__name__}, expected int")
            return acked
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SpoolError(f"spool watermark {path} is unreadable ({e}); expected {{\"acked\": <int>}}") from e

    def _read_segment(self, path: Path, is_last: bool, after: int) -> tuple[list[SpoolRecord], int]:
        """Records of one segment and the byte length of its intact part (a torn tail of the last one is cut)."""
        try:
            data = path.read_bytes()
        except OSError as e:
            raise SpoolError(f"cannot read spool segment {path}: {e}") from e
        records: list[SpoolRecord] = []
        offset, bad_at, bad_line = 0, None, 0
        lines = data.split(b"\n")
        for lineno, raw in enumerate(lines, start=1):
            complete = lineno < len(lines)  # the piece after the last newline is an unfinished line (or empty)
            if not complete and not raw:
                break
            rec = self._parse(raw) if complete else None
            if rec is None or rec.seq <= (records[-1].seq if records else after):
                if bad_at is None:
                    bad_at, bad_line = offset, lineno
            else:
                if bad_at is not None:  # a torn or out-of-order line with good records after it: skip it
                    log.error("spool segment %s: skipped unreadable line %d (%d bytes; a write cut short or damage "
                              "on disk); the records after it are recovered", path, bad_line, offset - bad_at)
                    bad_at = None
                records.append(rec)
            offset += len(raw) + 1
        if bad_at is None:
            return records, len(data)
        if not is_last:
            log.error("spool segment %s: skipped %d unreadable bytes at its end (line %d)", path,
                      len(data) - bad_at, bad_line)
            return records, len(data)
        log.warning("spool segment %s: cut %d bytes of a torn last record (an append interrupted by a crash, "
                    "never confirmed to the pipeline)", path, len(data) - bad_at)
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, bad_at)
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:  # the torn bytes stay: the next run skips them again, and appends go to a new segment
            log.error("spool segment %s: cannot cut the torn last record: %s", path, e)
            return records, len(data)
        return records, bad_at

    @staticmethod
    def _parse(raw: bytes) -> SpoolRecord | None:
        try:
            d = json.loads(raw)
        except ValueError:
            return None
        if (not isinstance(d, dict) or not isinstance(d.get("seq"), int) or not isinstance(d.get("value"), str)
                or not isinstance(d.get("key"), (str, type(None)))):
            return None
        return SpoolRecord(d["seq"], d["key"], d["value"])

    # ----------------------------------------------------------------------------------------------- public API
    @property
    def depth(self) -> int:
        """Number of records appended and not yet acknowledged."""
        with self._cond:
            return len(self._pending)

    @property
    def depth_nowait(self) -> int:
        """:attr:`depth` read without taking the lock (for health checks that must never block; may be a moment
        stale)."""
        return len(self._pending)

    @property
    def size_bytes(self) -> int:
        """Bytes of segment files on disk (counts acknowledged records until their whole segment is deleted)."""
        with self._cond:
            return sum(s.size for s in self._segments)

    def append(self, key: str | None, value: str, timeout: float | None = None) -> int:
        """Write one record durably (written and fsync'd when this returns) and return its sequence number.

        Args:
            key: message key (utf-8 text) or ``None``.
            value: message text.
            timeout: seconds to wait for space when the spool is full (default ``full_timeout_s``).

        Raises:
            SpoolFullError: still full after ``timeout`` seconds (retryable).
            SpoolWriteError: the write failed (disk full, file-size limit, I/O error); nothing was appended and the
                spool stays readable (retryable).
            SpoolRecordTooLargeError: the record alone exceeds ``max_bytes`` (never storable).
            SpoolError: the spool is closed.
        """
        timeout = self.full_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._check_open()
                seq = self._next_seq
                line = (json.dumps({"seq": seq, "key": key, "value": value}, ensure_ascii=False,
                                   separators=(",", ":")) + "\n").encode("utf-8")
                if len(line) > self.max_bytes:
                    raise SpoolRecordTooLargeError(f"record of {len(line)} bytes exceeds the spool's max_bytes={self.max_bytes}"
                                         f" ({self.directory}); raise spool_max_bytes")
                used = sum(s.size for s in self._segments)
                if used + len(line) <= self.max_bytes:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    self.waiting_for_space = False
                    raise SpoolFullError(
                        f"spool {self.directory} is full ({used} of max_bytes={self.max_bytes} bytes, "
                        f"{len(self._pending)} records unacknowledged) and stayed full for {timeout:g} s: the "
                        f"destination is not taking messages; raise spool_max_bytes or fix the destination")
                self.waiting_for_space = True
                self._cond.wait(left)
            self.waiting_for_space = False
            self._next_seq = seq + 1  # also when the write fails: a failed attempt's number is never reused
            self._write(seq, line)
            self._pending.append(SpoolRecord(seq, key, value))
            self._cond.notify_all()
            return seq

    def peek(self, timeout: float = 0.0) -> SpoolRecord | None:
        """The oldest unacknowledged record, waiting up to ``timeout`` seconds for one; ``None`` if none came
        or the spool is closed. The record stays in the spool until :meth:`ack`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._pending and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._pending[0] if self._pending and not self._closed else None

    def ack(self, seq: int) -> None:
        """Acknowledge every record up to and including ``seq`` (delivered); deletes fully acknowledged segments.

        Raises:
            ValueError: ``seq`` was never appended.
            SpoolError: the spool is closed or the watermark cannot be written.
        """
        with self._cond:
            self._check_open()
            if seq <= self._acked:
                return
            if seq >= self._next_seq:
                raise ValueError(f"spool {self.directory}: cannot ack seq {seq}, last appended is {self._next_seq - 1}")
            self._write_watermark(seq)
            self._acked = seq
            while self._pending and self._pending[0].seq <= seq:
                self._pending.popleft()
            while self._segments and self._segments[0].last_seq <= seq:
                seg = self._segments.pop(0)
                if not self._segments:
                    self._close_active()
                self._unlink(seg.path)
            self._cond.notify_all()

    def wait_empty(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every record is acknowledged; ``True`` if the spool is empty."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return not self._pending

    def close(self) -> None:
        """Close files and release the directory lock; unacknowledged records stay for the next open.
        Wakes threads blocked in :meth:`append` (they raise) and :meth:`peek` (returns ``None``). Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self.waiting_for_space = False
            self._close_active()
            self._cond.notify_all()
        self._release_lock()

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------- internals
    def _check_open(self) -> None:
        if self._closed:
            raise SpoolError(f"spool {self.directory} is closed")

    def _close_active(self) -> None:
        fd, self._active = self._active, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as e:
                log.warning("spool %s: closing the active segment: %s", self.directory, e)

    def _open_segment(self, seq: int) -> _Segment:
        self._close_active()
        path = self.directory / f"{seq:020d}{_SEGMENT_SUFFIX}"
        try:
            self._active = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            if self._fsync:
                fsync_path(self.directory)
        except OSError as e:
            self._close_active()
            self._unlink(path)
            raise SpoolWriteError(f"cannot create spool segment {path}: {e}") from e
        seg = _Segment(path, seq - 1, 0)
        self._segments.append(seg)
        return seg

    def _write(self, seq: int, line: bytes) -> None:
        """Append ``line`` to the active segment (a new one if none or if it would pass ``segment_bytes``) and
        fsync it; on failure cut the partial line and raise :class:`SpoolWriteError`."""
        seg = self._segments[-1] if self._segments and self._active is not None else None
        if seg is None or (seg.size > 0 and seg.size + len(line) > self.segment_bytes):
            seg = self._open_segment(seq)
        fd = self._active
        assert fd is not None
        try:
            view = memoryview(line)
            while view:  # a write may be short (e.g. up to a file-size limit); the next one then raises
                view = view[os.write(fd, view):]
            if self._fsync:
                os.fsync(fd)
        except OSError as e:
            self._undo_write(seg)
            raise SpoolWriteError(f"cannot write spool segment {seg.path}: {e}; the record was not spooled "
                                  f"(the spool is intact)") from e
        seg.size += len(line)
        seg.last_seq = seq

    def _undo_write(self, seg: _Segment) -> None:
        """Cut what part of a failed append reached ``seg`` (through the descriptor: nothing is buffered); a
        segment left empty is deleted. If the cut fails, the segment is closed for good: later appends go to a
        new segment and recovery skips the torn line."""
        try:
            os.ftruncate(self._active, seg.size)  # type: ignore[arg-type]
        except OSError as e:
            log.error("spool segment %s: cannot cut a failed append (%s); continuing in a new segment", seg.path, e)
            self._close_active()
            return
        if seg.size == 0:
            self._close_active()
            self._segments.remove(seg)
            self._unlink(seg.path)

    def _write_watermark(self, seq: int) -> None:
        path = self.directory / _WATERMARK
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps({"acked": seq}))
                f.flush()
                if self._fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
            if self._fsync:
                fsync_path(self.directory)
        except OSError as e:
            raise SpoolError(f"cannot write spool watermark {path}: {e}") from e

    def _unlink(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("spool: cannot delete acknowledged segment %s: %s", path, e)

    def _release_lock(self) -> None:
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        finally:
            self._lock_file.close()
