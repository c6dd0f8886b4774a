"""``kafka`` sink: at-least-once delivery of alert events to a Kafka topic, through a durable local spool.

Path of one alert (design.md "Alerts"):

1. :meth:`KafkaSink.write` appends the event to the spool (:mod:`streamad.sinks.spool`, fsync'd) and returns:
   the pipeline never waits for the broker, and an alert is on disk before the pipeline moves on.
2. A background thread takes the oldest spooled event, sends it (key = ``stream_id``, value = the alert JSON,
   both utf-8) and waits for the broker's acknowledgement (``acks="all"``); only then is it removed from the spool.
   One message at a time, so each stream's events reach the topic in order even across retries.
3. On failure (broker down, restarting, timing out) it retries with capped exponential backoff and jitter
   (``retry_backoff_s`` doubling to ``retry_backoff_max_s``), counting ``streamad_sink_retries_total{sink}``
   and recreating the producer. The broker need not be up when the sink starts.
4. :meth:`KafkaSink.close` waits up to ``flush_timeout_s`` for the spool to drain; what is left stays spooled
   and is resent by the next run that uses the same ``spool_dir`` (:meth:`KafkaSink.undelivered` counts it, and
   ``streamad serve`` then exits with :data:`~streamad.errors.EXIT_UNDELIVERED`).

Faults (issue 18):

* The disk is full or the spool cannot be written (``ENOSPC``, ``EFBIG``, I/O error): ``write`` raises
  :class:`~streamad.sinks.spool.SpoolWriteError`, a :class:`~streamad.errors.SinkFullError`, and the runtime
  retries it, holding the pipeline back (``streamad_sink_full_waits_total{reason="write_error"}``); the spool
  stays intact and nothing is dropped. A full spool (broker down long) does the same with ``reason="spool_full"``.
* An alert larger than the whole spool (``spool_max_bytes``, at least 1 MiB) can never be spooled: it is appended
  to ``<spool_dir>/dead-letter.jsonl`` (fsync'd), logged as an error and counted
  (``streamad_sink_dead_letters_total``, :meth:`KafkaSink.undelivered`); it is never sent, and the pipeline goes on.
* :meth:`KafkaSink.delivery_problem` (``/readyz``) names the problem while the spool is full or cannot be written,
  or while alerts have waited longer than ``send_timeout_s + retry_backoff_max_s`` with no delivery succeeding.

Metrics (label ``sink="kafka:<topic>"``): ``streamad_spool_depth``, ``streamad_spool_bytes``,
``streamad_sink_retries_total`` (failed sends), ``streamad_sink_stalled_seconds`` (seconds alerts have waited with
no delivery succeeding; an outage shows from its first second), ``streamad_sink_dead_letters_total``.

Duplicates happen, and consumers must drop them by ``(event_id, type, seq)``, as :func:`consume_events` does. They
come from a crash between the broker's acknowledgement and the spool's; from a frozen or slow broker, when a send
timed out (and is resent) although the broker had in fact written it; and from a file stream replayed after a
restart, whose events get the same ``event_id`` (reproducible for files: :func:`streamad.operators.alert.event_id`).

kafka-python 3 enables producer idempotence by default, and such a producer fails for good after a broker restart
(``InitProducerId ... UnknownError``), so the producer is built with ``enable_idempotence=False``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import weakref
from pathlib import Path
from collections import OrderedDict
from typing import Any, Callable, Iterator, Literal

from pydantic import Field, field_validator

from streamad.backoff import backoff_delay
from streamad.errors import ConfigError
from streamad.frames import EndOfStream, Event, Scores
from streamad.kafka_connection import KafkaConnection
from streamad.parts import BuildContext, Sink, SinkConfig
from streamad.redact import redact, register_secret
from streamad.registry import SINKS
from streamad.sinks.jsonl import event_json
from streamad.sinks.spool import Spool, SpoolRecordTooLargeError, SpoolWriteError

__all__ = ["KafkaSink", "consume_events", "backoff_delay"]

log = logging.getLogger(__name__)

MIN_SPOOL_BYTES = 2**20
"""Smallest ``spool_max_bytes`` (1 MiB): room for thousands of alerts of a few hundred bytes."""

DEAD_LETTER_FILE = "dead-letter.jsonl"
"""File in the spool folder where alerts too large for the spool are kept (one alert JSON a line)."""

_LABELS: "weakref.WeakKeyDictionary[Any, set[str]]" = weakref.WeakKeyDictionary()  # sink labels taken, per Metrics

_CODEC_PACKAGES = {"gzip": None, "snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}


@SINKS.register("kafka")
class KafkaSink(Sink):
    """Publishes alert events to ``topic`` (key = stream id), at least once, via a local spool.

    Raises (at construction):
        ConfigError: a compression codec whose Python package is missing.
        SpoolError: the spool directory cannot be used (locked by another process, damaged).
    """

    class Config(KafkaConnection, SinkConfig):
        """Kafka sink settings: the cluster (:class:`~streamad.kafka_connection.KafkaConnection`'s keys, at the top
        level of the sink entry) and how alerts reach it.

        Attributes:
            bootstrap_servers: ``host:port[,host:port...]`` of the brokers.
            topic: alert topic.
            spool_dir: spool folder (default ``.streamad/spool/<topic>`` in the working directory).
            spool_max_bytes: bound of the spool on disk (bytes, at least 1 MiB).
            spool_full_timeout_s: how long ``write`` waits for space when the spool is full before failing.
            retry_backoff_s, retry_backoff_max_s: first and largest pause between delivery attempts (seconds).
            send_timeout_s: how long one delivery attempt waits for the broker's acknowledgement (seconds).
            flush_timeout_s: how long ``close`` waits for the spool to drain (seconds).
            compression_type: ``gzip``, ``snappy``, ``lz4``, ``zstd`` or none.
            security_protocol, sasl_mechanism, sasl_plain_username, sasl_plain_password, ssl_cafile,
            ssl_certfile, ssl_keyfile: the connection's security settings
            (:class:`~streamad.kafka_connection.KafkaConnection`), passed to ``kafka.KafkaProducer`` as is (the
            password is never logged).
            client_id: passed to ``kafka.KafkaProducer``.
        """

        kind: Literal["kafka"] = "kafka"
        topic: str = Field("streamad.alerts", min_length=1)
        spool_dir: str | None = None
        spool_max_bytes: int = 64 * 2**20
        spool_full_timeout_s: float = Field(30.0, ge=0)
        retry_backoff_s: float = Field(0.5, gt=0)
        retry_backoff_max_s: float = Field(10.0, gt=0)
        send_timeout_s: float = Field(10.0, gt=0)
        flush_timeout_s: float = Field(10.0, ge=0)
        compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
        client_id: str | None = None

        @field_validator("spool_max_bytes")
        @classmethod
        def _spool_big_enough(cls, v: int) -> int:
            if v < MIN_SPOOL_BYTES:
                raise ValueError(f"spool_max_bytes must be at least {MIN_SPOOL_BYTES} (1 MiB), got {v}: the spool "
                                 f"must hold the alerts of a broker outage, and any single alert")
            return v

    def __init__(self, config: Config, ctx: BuildContext) -> None:
        super().__init__(config, ctx)
        if config.sasl_plain_password is not None:
            register_secret(config.sasl_plain_password.get_secret_value())
        self._check_codec(config.compression_type)
        self.spool_dir = Path(config.spool_dir or Path(".streamad") / "spool" / config.topic).expanduser()
        self.spool = Spool(self.spool_dir, max_bytes=config.spool_max_bytes,
                           full_timeout_s=config.spool_full_timeout_s)
        self._label = self._take_label(ctx.metrics, f"kafka:{config.topic}")
        self._write_problem: str | None = None  # why the last write could not spool (cleared by the next success)
        self._last_error: str | None = None  # the last failed delivery attempt
        self._waiting_since: float | None = time.monotonic() if self.spool.depth else None  # no progress since
        self._dead_letters = 0
        self._left: int | None = None  # spool depth at close
        self._resume: tuple[Scores | EndOfStream, int] | None = None  # first n events spooled before a failure
        metrics = ctx.metrics
        self._retries = metrics.sink_retries.labels(self._label) if metrics is not None else None
        self._depth = metrics.spool_depth.labels(self._label) if metrics is not None else None
        self._dead_counter = metrics.sink_dead_letters.labels(self._label) if metrics is not None else None
        if metrics is not None:
            metrics.sink_stalled.labels(self._label).set_function(self.stalled_s)
            metrics.spool_bytes.labels(self._label).set_function(lambda: self.spool.size_bytes)
        self._update_depth()
        if self.spool.depth:
            log.warning("kafka sink: %d alerts spooled in %s by an earlier run were not acknowledged; resending",
                        self.spool.depth, self.spool_dir)
        self._producer: Any = None
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._deliver_loop, name=f"kafka-sink-{config.topic}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------------ pipeline
    @property
    def metrics_label(self) -> str:
        """``kafka:<topic>`` (``#2`` ... added for a further Kafka sink on the same topic in this pipeline)."""
        return self._label

    def write(self, scores: Scores) -> None:
        """Spool the frame's events (durably) and return; delivery happens in the background. When called again
        with the same frame after a failure, the events already spooled are not spooled twice. An event larger
        than the spool goes to the dead-letter file (module doc).

        Raises:
            SpoolFullError: the spool stayed full for ``spool_full_timeout_s`` (broker unreachable for long).
            SpoolWriteError: the spool (or the dead-letter file) cannot be written now (disk full, I/O error).
            Both are :class:`~streamad.errors.SinkFullError`: retry later, nothing was lost.
        """
        self._spool_events(scores, scores.events)

    def end_stream(self, eos: EndOfStream) -> None:
        """Spool the events the stream's end raised (the ``end`` of an event still open), like :meth:`write`
        (same errors; called again with the same ``eos`` after a failure, it spools only what is left)."""
        self._spool_events(eos, eos.events)

    def _spool_events(self, carrier: Scores | EndOfStream, events: list[Event]) -> None:
        done = self._resume[1] if self._resume is not None and self._resume[0] is carrier else 0
        for i, event in enumerate(events[done:], start=done):
            text = event_json(event)
            try:
                self.spool.append(event.stream_id, text)
            except SpoolRecordTooLargeError as e:
                self._dead_letter(text, e)
            except Exception as e:  # SpoolFullError, SpoolWriteError: the runtime retries this frame
                self._write_problem = str(e)
                self._resume = (carrier, i)
                raise
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
        self._resume = None
        self._write_problem = None
        if events:
            self._update_depth()

    def delivery_problem(self) -> str | None:
        """Why alerts are not being delivered now, or ``None``; never blocks. The reasons:

        * ``kafka sink kafka:<topic>: spool <dir> is full (...)``: an alert is waiting for spool space;
        * ``kafka sink kafka:<topic>: cannot spool alerts: <error>``: the last spool write failed (disk full,
          I/O error, or the spool stayed full for ``spool_full_timeout_s``);
        * ``kafka sink kafka:<topic>: no alert delivered to <servers> for <n> s (<m> waiting in <dir>); last error:
          <error>``: alerts have waited longer than ``send_timeout_s + retry_backoff_max_s`` with no delivery;
        * ``kafka sink kafka:<topic>: the delivery thread has stopped``.
        """
        who = f"kafka sink {self._label}"
        if self.spool.waiting_for_space:
            return (f"{who}: spool {self.spool_dir} is full ({self.spool.depth_nowait} alerts, "
                    f"spool_max_bytes={self.config.spool_max_bytes}); the pipeline is held back")
        problem = self._write_problem
        if problem is not None:
            return f"{who}: cannot spool alerts: {redact(problem)}"
        stalled = self.stalled_s()
        if stalled > self.config.send_timeout_s + self.config.retry_backoff_max_s:
            return (f"{who}: no alert delivered to {redact(self.config.bootstrap_servers)} for {stalled:.0f} s "
                    f"({self.spool.depth_nowait} waiting in {self.spool_dir}); last error: "
                    f"{redact(self._last_error or 'none yet (first attempt in progress)')}")
        if not self._closed and not self._thread.is_alive():
            return f"{who}: the delivery thread has stopped"
        return None

    def stalled_s(self) -> float:
        """Seconds alerts have waited with no delivery succeeding (0 while none waits)."""
        since = self._waiting_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    def undelivered(self) -> int:
        """Alerts accepted and not delivered: still in the spool (at close, or now if not closed) plus those
        written to the dead-letter file by this run."""
        left = self._left if self._left is not None else self.spool.depth_nowait
        return left + self._dead_letters

    def close(self) -> None:
        """Wait up to ``flush_timeout_s`` for every spooled alert to be acknowledged, then stop. Alerts still
        spooled are kept on disk (and logged) for the next run. Idempotent."""
        if self._closed:
            return
        self._closed = True
        drained = self.spool.wait_empty(self.config.flush_timeout_s)
        self._stop.set()
        self._thread.join(timeout=self.config.send_timeout_s + 5)
        self._close_producer()
        left = self._left = self.spool.depth
        self._update_depth()
        self.spool.close()
        if not drained and left:
            log.warning("kafka sink: %d alerts were not acknowledged by %s within flush_timeout_s=%gs; they stay "
                        "in %s and are resent at the next start", left, redact(self.config.bootstrap_servers),
                        self.config.flush_timeout_s, self.spool_dir)

    # ------------------------------------------------------------------------------------------------ delivery
    def _deliver_loop(self) -> None:
        failures = 0
        rng = random.Random()
        while not self._stop.is_set():
            record = self.spool.peek(timeout=0.2)
            if record is None:
                continue
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
            try:
                producer = self._producer or self._open_producer()
                key = record.key.encode("utf-8") if record.key is not None else None
                future = producer.send(self.config.topic, key=key, value=record.value.encode("utf-8"))
                future.get(timeout=self.config.send_timeout_s + 1.0)
            except Exception as e:  # broker down, timeout, auth, bad producer state: retry, never drop
                failures += 1
                self._last_error = f"{type(e).__name__}: {e}"
                if self._retries is not None:
                    self._retries.inc()
                delay = backoff_delay(failures, self.config.retry_backoff_s, self.config.retry_backoff_max_s, rng)
                text = str(e) if str(e).startswith(type(e).__name__) else f"{type(e).__name__}: {e}"
                log.warning("kafka sink: delivery to %s topic %s failed (attempt %d, %d alerts spooled): %s; "
                            "retrying in %.1fs", redact(self.config.bootstrap_servers), self.config.topic, failures,
                            self.spool.depth, redact(text), delay)
                self._close_producer()
                self._stop.wait(delay)
                continue
            try:
                self.spool.ack(record.seq)
            except Exception as e:  # the alert reached the broker; a failed ack only means it may be resent
                log.error("kafka sink: cannot acknowledge spool record %d in %s: %s", record.seq, self.spool_dir,
                          redact(e))
                self._stop.wait(self.config.retry_backoff_s)
                continue
            self._waiting_since = time.monotonic() if self.spool.depth_nowait else None
            if failures:
                log.info("kafka sink: delivering to %s again after %d failed attempts",
                         redact(self.config.bootstrap_servers), failures)
                failures = 0
            self._update_depth()

    def _open_producer(self) -> Any:
        from kafka import KafkaProducer

        c = self.config
        timeout_ms = int(c.send_timeout_s * 1000)
        options: dict[str, Any] = dict(
            c.client_options(), acks="all", enable_idempotence=False,
            max_in_flight_requests_per_connection=1, linger_ms=0, compression_type=c.compression_type,
            request_timeout_ms=timeout_ms, delivery_timeout_ms=timeout_ms, max_block_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms, reconnect_backoff_max_ms=int(c.retry_backoff_max_s * 1000),
        )
        if c.client_id:
            options["client_id"] = c.client_id
        # options this kafka-python release does not know (older 2.x) are left at its defaults
        options = {k: v for k, v in options.items() if k in KafkaProducer.DEFAULT_CONFIG}
        self._producer = KafkaProducer(**options)
        return self._producer

    def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=1)
            except Exception as e:
                log.debug("kafka sink: closing producer: %s", redact(e))

    def _dead_letter(self, text: str, error: Exception) -> None:
        """Keep an alert the spool can never hold in the dead-letter file (fsync'd); SpoolWriteError if that fails."""
        path = self.spool_dir / DEAD_LETTER_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                view = memoryview((text + "\n").encode("utf-8"))
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise SpoolWriteError(f"cannot write the dead-letter file {path}: {e}") from e
        self._dead_letters += 1
        if self._dead_counter is not None:
            self._dead_counter.inc()
        log.error("kafka sink %s: an alert of %d bytes can never be spooled (%s); it is kept in %s and NOT sent",
                  self._label, len(text), redact(error), path)

    @staticmethod
    def _take_label(metrics: Any, label: str) -> str:
        """``label``, or ``label#2``, ``#3`` ... if another sink of the same ``metrics`` took it."""
        if metrics is None:
            return label
        taken = _LABELS.setdefault(metrics, set())
        n, out = 1, label
        while out in taken:
            n += 1
            out = f"{label}#{n}"
        taken.add(out)
        return out

    def _update_depth(self) -> None:
        if self._depth is not None:
            self._depth.set(self.spool.depth)

    @staticmethod
    def _check_codec(codec: str | None) -> None:
        if codec is None:
            return
        from kafka import codec as kafka_codec

        if not getattr(kafka_codec, f"has_{codec}")():
            raise ConfigError(f"kafka sink: compression_type={codec!r} needs the Python package "
                              f"{_CODEC_PACKAGES[codec]!r} (pip install {_CODEC_PACKAGES[codec]})")


def consume_events(bootstrap: str | KafkaConnection, topic: str = "streamad.alerts", group_id: str | None = None,
                   stream: str | None = None, from_beginning: bool = True, timeout_s: float | None = 10.0,
                   since: float | None = None, on_ready: Callable[[], None] | None = None,
                   **consumer_options: Any) -> Iterator[dict[str, Any]]:
    """Read alert events from ``topic``, decoded, with duplicates dropped (an example for users' own consumers).

    Delivery is at least once, so an alert may arrive twice (after a broker or streamad restart); an alert is
    identified by ``(event_id, type, seq)`` and yielded only the first time it is seen by this iterator (the last
    100,000 identities are remembered, so a long-running consumer keeps bounded memory).

    Where reading starts:

    * ``group_id`` given and no ``since``: the group's committed offsets (the consumer joins the group; a restarted
      consumer resumes), else the oldest message (``from_beginning``) or only new ones. A message's offset is
      committed only once the caller asked for the next event (at most once a second, and when the iteration
      ends normally): an event the caller was handling when it failed or stopped is read again by the next run
      (at least once, end to end). Pass ``enable_auto_commit=True`` to get kafka-python's periodic commits
      instead.
    * no ``group_id``: every partition of the topic is assigned to this consumer and read from the oldest message
      (``from_beginning``) or from its end (only messages produced from now on).
    * ``since`` (Unix seconds): every partition is read from the first message at or after that time (Kafka
      ``ListOffsets`` by timestamp, ``KafkaConsumer.offsets_for_times``); messages whose timestamp is older are
      skipped as well, which also covers brokers that answer the time lookup loosely (tansu 0.6 answers
      "offset 0" instead of "none" for a partition with no message after the time). With a ``group_id`` the
      offsets are still committed but the group's committed offsets are not used.

    Args:
        bootstrap: ``host:port[,host:port...]``, or a :class:`~streamad.kafka_connection.KafkaConnection` (with its
            security settings).
        topic: alert topic.
        group_id: consumer group (offsets are committed, so a restarted consumer resumes); ``None`` = no group.
        stream: only events whose key is this stream id.
        from_beginning: with no committed offset, start at the oldest message (else only new ones).
        timeout_s: stop when no message arrived for this many seconds (includes joining the group and waiting
            for the topic to exist); ``None`` = never stop (until the caller stops iterating, e.g. Ctrl-C).
        since: start at this time (Unix seconds, e.g. ``time.time() - 600`` for the last 10 minutes).
        on_ready: called once the start positions are fixed (with a group: once subscribed), before the first
            message is read: messages produced after it returned are seen.
        **consumer_options: passed to ``kafka.KafkaConsumer`` (e.g. ``session_timeout_ms``, security options);
            they win over the connection's settings.

    Yields:
        alert dicts (the schema of :meth:`streamad.frames.Event.to_json`).

    Raises:
        kafka.errors.KafkaError: the brokers cannot be reached; ValueError: a message is not alert JSON, or an
        empty entry in ``bootstrap``.
    """
    from kafka import KafkaConsumer

    connection = bootstrap if isinstance(bootstrap, KafkaConnection) else KafkaConnection(bootstrap_servers=bootstrap)
    manual_commit = group_id is not None and "enable_auto_commit" not in consumer_options
    if manual_commit:
        consumer_options["enable_auto_commit"] = False
    consumer = KafkaConsumer(**{**connection.client_options(), **consumer_options}, group_id=group_id,
                             auto_offset_reset="earliest" if from_beginning else "latest",
                             consumer_timeout_ms=float("inf") if timeout_s is None else int(timeout_s * 1000))
    since_ms = None if since is None else int(since * 1000)
    seen: OrderedDict[tuple[str, str, int], None] = OrderedDict()
    done = _Commits(consumer if manual_commit else None)
    try:
        if group_id is not None and since is None:
            consumer.subscribe([topic])
        elif not _assign_all(consumer, topic, from_beginning, since_ms, timeout_s):
            return  # the topic did not appear within timeout_s
        if on_ready is not None:
            on_ready()
        for message in consumer:
            done.maybe_commit()
            if since_ms is not None and 0 <= message.timestamp < since_ms:
                done.add(message)
                continue
            if stream is not None and (message.key or b"").decode("utf-8") != stream:
                done.add(message)
                continue
            try:
                event = json.loads(message.value)
                ident = (event["event_id"], event["type"], event["seq"])
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(f"topic {topic} partition {message.partition} offset {message.offset}: not an "
                                 f"alert event ({e})") from e
            if ident in seen:
                done.add(message)
                continue
            seen[ident] = None
            if len(seen) > _DEDUP_WINDOW:
                seen.popitem(last=False)
            yield event
            done.add(message)  # the caller came back for more: this one was handled
    finally:
        try:
            done.maybe_commit(force=True)  # what was handled; not an event the caller stopped or failed on
        except Exception as e:  # broker gone: those are read again next time (at least once)
            log.warning("consume_events: cannot commit offsets of group %s: %s", group_id, redact(e))
        consumer.close(autocommit=not manual_commit)


_DEDUP_WINDOW = 100_000  # alert identities consume_events remembers


class _Commits:
    """Offsets of the messages handled so far, committed at most once a second (``consumer=None``: off)."""

    def __init__(self, consumer: Any, every_s: float = 1.0) -> None:
        self.consumer = consumer
        self.every_s = every_s
        self.offsets: dict[Any, int] = {}
        self.last = time.monotonic()

    def add(self, message: Any) -> None:
        if self.consumer is not None:
            from kafka import TopicPartition

            self.offsets[TopicPartition(message.topic, message.partition)] = message.offset + 1

    def maybe_commit(self, force: bool = False) -> None:
        if self.consumer is None or not self.offsets or (not force and time.monotonic() - self.last < self.every_s):
            return
        from kafka.structs import OffsetAndMetadata

        self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in self.offsets.items()})
        self.offsets.clear()
        self.last = time.monotonic()


def _assign_all(consumer: Any, topic: str, from_beginning: bool, since_ms: int | None,
                timeout_s: float | None) -> bool:
    """Assign every partition of ``topic`` to ``consumer`` and fix its start positions (see
    :func:`consume_events`); ``False`` when the topic did not appear within ``timeout_s`` seconds."""
    from kafka import TopicPartition

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            break
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    if since_ms is not None:
        found = consumer.offsets_for_times({tp: since_ms for tp in tps})
        ends = consumer.end_offsets(tps)
        for tp in tps:
            hit = found.get(tp)
            # Kafka answers None when no message is at or after the time; tansu answers offset 0, timestamp -1
            consumer.seek(tp, hit.offset if hit is not None and hit.timestamp >= 0 else ends[tp])
    elif from_beginning:
        consumer.seek_to_beginning(*tps)
    else:
        consumer.seek_to_end(*tps)
    for tp in tps:
        consumer.position(tp)  # resolve lazy resets now, so that on_ready means "positions fixed"
    return True
