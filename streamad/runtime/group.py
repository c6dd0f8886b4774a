"""Scale-out through Kafka: ``streamad serve CONFIG --group NAME`` runs one worker of a group.

Design (README "Scaling with --group"):

* **Control topic** ``streamad.control.<NAME>`` (``--control-topic``): partition ``i`` holds stream slot ``i``, the
  ``i``-th entry of the config's ``streams``, as a *reference*, never the entry itself: ``{"slot": i, "id": KEY,
  "sha256": FINGERPRINT}`` (key = the entry's ``id``, else ``streams[i]``; the fingerprint is the SHA-256 of the
  entry as written in the YAML, ``${VAR}`` references unexpanded, see :func:`slot_fingerprint`). No URL, path,
  option or secret travels through Kafka. A worker creates the topic with one partition per entry when it does not
  exist (tansu and older clusters cannot add partitions later, so the count is fixed up front), fails with
  :class:`GroupError` when it exists with fewer partitions than entries, and then publishes every slot (a
  tombstone for partitions beyond the entries).
* **Trust.** A worker serves only streams of its *own* config: for an assigned partition ``i`` it reads the latest
  record and serves its local ``streams[i]`` (interpolated from its own environment) only when the record's
  ``slot``, ``id`` and ``sha256`` match that local entry; any other record (another id or fingerprint, a slot
  beyond its config, not a reference at all, e.g. a forged stream config with a URL) is refused with an ERROR log
  line naming the topic, partition and offset, and the slot is not served. Whoever can write the control topic can
  therefore only stop streams or move them between workers, never make a worker open a URL, file or FFmpeg option
  that is not in its config. Protect the topic anyway: with Kafka ACLs allow ``Write`` (and ``Describe``/``Create``)
  on ``streamad.control.<NAME>`` and ``Read`` on the consumer group ``NAME`` to the group's workers only, and
  ``Read`` on the topic to nobody else (readers learn stream ids and the fingerprints of the entries, whose
  content a guessable literal secret in the YAML would be exposed to by brute force: write secrets as
  ``${VAR}``).
* **Same config everywhere.** Every worker must run the same ``streams:`` entries (same order, same text up to
  ``${VAR}`` values, which each worker takes from its own environment). A worker started with a changed entry
  republishes its fingerprint; workers whose config differs then refuse that slot (logged) until they run the new
  config too.
* **Assignment** is Kafka's consumer-group protocol: every worker subscribes to the control topic with
  ``group_id = NAME``; the group coordinator (the broker) hands out partitions (sticky assignor: streams move only
  when they must). A worker serves exactly the streams of the partitions it holds: after each assignment it reads
  each new partition's latest record. When a worker joins, leaves or stops heart-beating (``--session-timeout``)
  the group rebalances; streams of partitions a worker lost are stopped (drained: open alert events end), those of
  partitions it gained are started, the rest run on untouched. Starting and stopping reuse config reload's
  :class:`~streamad.runtime.reload.StreamSet`.
* **What a worker holds** is shown by ``streamad_group_streams{group}`` (number of streams served) and
  ``streamad_group_stream{group,stream}`` (1 while held, 0 after it moved away) on ``/metrics``, and by an INFO
  log line ``group NAME: serving N stream(s) from partitions [...]: ...`` after every change.

Limits: one config entry per partition (a dataset entry that expands to several videos moves as one); a dead
worker's streams restart elsewhere after about the session timeout plus one rebalance; file streams restart
from their beginning on the worker that takes them over; every worker must be able to read the paths (data,
model directory) of every stream.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from streamad.config import PipelineConfig
from streamad.errors import ConfigError
from streamad.kafka_connection import KafkaConnection
from streamad.metrics import Metrics
from streamad.parts import BuildContext, PartConfig
from streamad.redact import redact
from streamad.runtime.loop_thread import LoopThread
from streamad.runtime.pipeline import Pipeline
from streamad.runtime.reload import StreamSet

__all__ = ["GroupError", "GroupOptions", "GroupWorker", "slot_records", "slot_fingerprint", "parse_slot",
           "ensure_control_topic"]

log = logging.getLogger("streamad.group")


class GroupError(ConfigError):
    """The group cannot work with this config and cluster (no Kafka address, a control topic with too few
    partitions, a control topic that cannot be created or written)."""


@dataclass
class GroupOptions:
    """How a worker joins its group.

    Attributes:
        name: group name (the Kafka consumer group id).
        connection: the Kafka cluster (bootstrap servers and security settings).
        control_topic: the control topic (default ``streamad.control.<name>``).
        session_timeout_s: a worker that sent no heartbeat for this long is considered dead and its streams move
            (seconds; the broker bounds it, Kafka's default range is 6-300 s).
        heartbeat_s: heartbeat interval (seconds; default a sixth of the session timeout).
    """

    name: str
    connection: KafkaConnection
    control_topic: str | None = None
    session_timeout_s: float = 10.0
    heartbeat_s: float | None = None

    @property
    def topic(self) -> str:
        """The control topic's name."""
        return self.control_topic or f"streamad.control.{self.name}"

    @classmethod
    def from_config(cls, cfg: PipelineConfig, name: str, bootstrap: str | None = None,
                    control_topic: str | None = None, session_timeout_s: float = 10.0) -> "GroupOptions":
        """Options for group ``name``; the cluster is ``bootstrap`` (plain, no security settings), else the
        connection of the config's first ``kafka`` sink (a sink config that is a
        :class:`~streamad.kafka_connection.KafkaConnection`, with its security settings).

        Raises:
            GroupError: no ``bootstrap`` and no ``kafka`` sink, an empty group name, or a session timeout that
                is not positive.
            ConfigError: ``bootstrap`` has an empty entry.
        """
        if not name.strip():
            raise GroupError("--group: the group name is empty")
        if not session_timeout_s > 0:
            raise GroupError(f"--session-timeout: must be > 0 seconds, got {session_timeout_s}")
        if bootstrap is not None:
            connection = KafkaConnection.from_bootstrap(bootstrap, "--bootstrap")
        else:
            sink = next((s for s in cfg.sinks if isinstance(s, KafkaConnection)), None)
            if sink is None:
                raise GroupError(f"{cfg.path}: --group {name} needs a Kafka cluster for its control topic: give "
                                 f"--bootstrap HOST:PORT or add a kafka sink to the config")
            connection = sink.connection()
        return cls(name=name, connection=connection, control_topic=control_topic,
                   session_timeout_s=session_timeout_s)


def _slot_key(config: PartConfig, i: int) -> str:
    return str(getattr(config, "id", None) or f"streams[{i}]")


def slot_fingerprint(raw_entry: Any) -> str:
    """SHA-256 (hex) of a ``streams:`` entry as written (a YAML mapping, ``${VAR}`` unexpanded), canonical JSON
    (sorted keys): equal for equal entries on every worker, whatever each worker's environment holds."""
    text = json.dumps(raw_entry, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _slots(cfg: PipelineConfig) -> list[tuple[str, str]]:
    """``(key, fingerprint)`` of each of the config's stream entries. Entries of a config not read from YAML
    (no ``raw_streams``) are fingerprinted from their validated form."""
    raws = cfg.raw_streams
    if raws is None or len(raws) != len(cfg.streams):
        raws = [c.model_dump(mode="json") for c in cfg.streams]
    return [(_slot_key(c, i), slot_fingerprint(r)) for i, (c, r) in enumerate(zip(cfg.streams, raws))]


def slot_records(cfg: PipelineConfig) -> list[tuple[str, bytes]]:
    """``(key, value)`` of each stream slot's control record: the key names the slot (the entry's ``id``, else
    ``streams[i]``), the value is ``{"slot": i, "id": key, "sha256": fingerprint}`` (utf-8 JSON): a reference to
    the entry, never its content (no URL, path or secret)."""
    return [(k, json.dumps({"slot": i, "id": k, "sha256": f}, sort_keys=True).encode("utf-8"))
            for i, (k, f) in enumerate(_slots(cfg))]


def parse_slot(value: bytes | None, where: str) -> dict[str, Any] | None:
    """The ``{"slot", "id", "sha256"}`` reference of a control record (``None`` for a tombstone: the slot is
    empty).

    Raises:
        GroupError: the record is not such a reference (names ``where``); a record carrying a stream config
            (URL, path) is refused too: workers build streams from their own config only.
    """
    if value is None:
        return None
    try:
        data = json.loads(value)
        ref = {"slot": data["slot"], "id": data["id"], "sha256": data["sha256"]}
        if not (isinstance(ref["slot"], int) and isinstance(ref["id"], str) and isinstance(ref["sha256"], str)):
            raise ValueError("slot must be an integer, id and sha256 strings")
    except Exception as e:  # JSON, missing key, wrong type: all mean "not ours"
        raise GroupError(f"{where}: refused: not a stream reference {{slot, id, sha256}} of this streamad version "
                         f"({type(e).__name__}: {redact(str(e))[:200]})") from None
    return ref


def _admin_client(options: GroupOptions) -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(**options.connection.client_options())


def ensure_control_topic(options: GroupOptions, slots: int, timeout_s: float = 30.0) -> int:
    """Create the control topic with ``slots`` partitions unless it exists; return its partition count.

    Raises:
        GroupError: it exists with fewer than ``slots`` partitions (partitions cannot be added on every broker,
            so the message says to delete it or use another ``--control-topic``), or it cannot be created or
            described within ``timeout_s`` seconds.
    """
    from kafka import KafkaConsumer
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    topic = options.topic
    admin = _admin_client(options)
    try:
        try:
            admin.create_topics([NewTopic(topic, max(1, slots), 1)])
            log.info("group %s: created control topic %s with %d partitions", options.name, topic, slots)
        except TopicAlreadyExistsError:
            pass
    except Exception as e:
        raise GroupError(f"group {options.name}: cannot create control topic {topic} on "
                         f"{redact(options.connection.bootstrap_servers)}: {redact(str(e))}") from None
    finally:
        admin.close()
    probe = KafkaConsumer(**options.connection.client_options())
    try:
        deadline = time.monotonic() + timeout_s
        while not (partitions := probe.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise GroupError(f"group {options.name}: control topic {topic} has no partitions after "
                                 f"{timeout_s:g} s")
            time.sleep(0.2)
            probe.topics()  # refresh metadata
    finally:
        probe.close()
    if len(partitions) < slots:
        raise GroupError(f"group {options.name}: control topic {topic} has {len(partitions)} partitions but the "
                         f"config lists {slots} streams (one partition per stream); partitions cannot be added "
                         f"on every broker: delete the topic (every worker of the group stopped) or pass "
                         f"--control-topic with a new name")
    return len(partitions)


def publish_slots(options: GroupOptions, cfg: PipelineConfig, partitions: int, timeout_s: float = 30.0) -> None:
    """Write each slot's reference (:func:`slot_records`) to its partition, and a tombstone to partitions beyond
    the slots.

    Raises:
        GroupError: the broker did not acknowledge within ``timeout_s`` seconds.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(**options.connection.client_options(), acks="all", enable_idempotence=False)
    try:
        futures = [producer.send(options.topic, key=k.encode("utf-8"), value=v, partition=i)
                   for i, (k, v) in enumerate(slot_records(cfg))]
        futures += [producer.send(options.topic, key=f"slot{i}".encode(), value=None, partition=i)
                    for i in range(len(cfg.streams), partitions)]
        for f in futures:
            f.get(timeout=timeout_s)
    except Exception as e:
        raise GroupError(f"group {options.name}: cannot publish the streams to {options.topic}: "
                         f"{redact(str(e))}") from None
    finally:
        producer.close(timeout=5)


@dataclass
class _Slot:
    target: int | None = None  # offset of the latest record at assignment time (None: not looked up yet)
    offset: int = -1  # offset of the record the config came from
    config: PartConfig | None = None
    ready: bool = False


class GroupWorker(LoopThread):
    """One worker of a group: publishes the config's stream slots, joins the consumer group and keeps the
    pipeline serving exactly the streams of the partitions it holds (in a background thread). :meth:`stop` leaves
    the group (the others take the streams over at once) and stops the thread (waiting up to 30 s).

    Args:
        options: the group.
        cfg: the worker's pipeline config (its ``streams`` are the slots it publishes).
        streams: the pipeline's :class:`StreamSet` (empty at start).
        pipeline: the running (or about to run) pipeline.
        make_context: a build context for the streams (``serve`` mode, the model directory).
        metrics: the pipeline's metrics (``streamad_group_streams`` / ``streamad_group_stream`` are set here).
    """

    def __init__(self, options: GroupOptions, cfg: PipelineConfig, streams: StreamSet, pipeline: Pipeline,
                 make_context: Callable[[], BuildContext], metrics: Metrics) -> None:
        super().__init__(f"group-{options.name}", join_timeout_s=30)
        self.options = options
        self.cfg = cfg
        self.streams = streams
        self.pipeline = pipeline
        self.make_context = make_context
        self._slots: dict[int, _Slot] = {}
        self._assignment: set[int] | None = None  # set by the rebalance listener, consumed by the loop
        self._applied: list[str] | None = None
        self._retry_at = 0.0
        self._held_ids: set[str] = set()
        self._count = metrics.group_streams.labels(options.name)
        self._held = metrics.group_stream
        self._local = _slots(cfg)
        self.error: str | None = None

    def start(self) -> "GroupWorker":
        """Create the control topic if needed, publish the slots and start the worker thread.

        Raises:
            GroupError: see :func:`ensure_control_topic` and :func:`publish_slots`.
            ConfigError, DataNotFoundError, ValueError: a stream of the config cannot be built on this worker, or
                two share an id.
        """
        slots = list(self.cfg.streams)
        if not slots:
            raise GroupError(f"{self.cfg.path}: streams: nothing to serve (the list is empty)")
        StreamSet().plan(slots, self.make_context(), "streams")  # the config's streams are valid here: fail now
        partitions = ensure_control_topic(self.options, len(slots))
        publish_slots(self.options, self.cfg, partitions)
        log.info("group %s: published %d stream slot(s) to %s (%d partitions)", self.options.name, len(slots),
                 self.options.topic, partitions)
        return super().start()

    # -- the consumer loop -----------------------------------------------------------------------------------
    def _consumer(self) -> Any:
        from kafka import ConsumerRebalanceListener, KafkaConsumer
        from kafka.coordinator.assignors.range import RangePartitionAssignor
        from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

        o = self.options
        session_ms = int(o.session_timeout_s * 1000)
        heartbeat_ms = int((o.heartbeat_s or o.session_timeout_s / 6) * 1000)
        consumer = KafkaConsumer(**o.connection.client_options(), group_id=o.name,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 session_timeout_ms=session_ms, heartbeat_interval_ms=max(100, heartbeat_ms),
                                 max_poll_interval_ms=max(60_000, 2 * session_ms),
                                 partition_assignment_strategy=(StickyPartitionAssignor, RangePartitionAssignor))
        worker = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                pass  # eager protocol: everything is revoked first; streams move once the new assignment is known

            def on_partitions_assigned(self, assigned: Any) -> None:
                worker._assignment = {tp.partition for tp in assigned}

        consumer.subscribe([o.topic], listener=Listener())
        return consumer

    def _loop(self) -> None:
        from kafka import TopicPartition

        consumer = None
        failures = 0
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = self._consumer()
                batches = consumer.poll(timeout_ms=300)
                if self._assignment is not None:
                    self._reassign(self._assignment)
                    self._assignment = None
                pending = [p for p, s in self._slots.items() if s.target is None]
                if pending:
                    tps = [TopicPartition(self.options.topic, p) for p in pending]
                    for tp, end in consumer.end_offsets(tps).items():
                        slot = self._slots[tp.partition]
                        if end == 0:
                            slot.target, slot.ready = -1, True  # never written: an empty slot
                        else:
                            slot.target = end - 1
                            consumer.seek(tp, max(end - 1, slot.offset + 1))
                for tp, records in batches.items():
                    for r in records:
                        self._record(r.partition, r.offset, r.value)
                failures = 0
            except Exception as e:  # broker unreachable, group errors: retry; the streams held go on meanwhile
                failures += 1
                self.error = redact(f"{type(e).__name__}: {e}")
                log.error("group %s: %s; retrying", self.options.name, self.error)
                if consumer is not None:
                    try:
                        consumer.close(autocommit=False)
                    except Exception:
                        pass
                    consumer = None
                self._stop.wait(min(10.0, 0.5 * 2 ** min(failures, 5)))
                continue
            if time.monotonic() >= self._retry_at:
                try:
                    self._apply()
                except Exception as e:  # a stream that cannot start now: keep the group, try again shortly
                    self._retry_at = time.monotonic() + 5.0
                    log.error("group %s: applying the assignment failed (retrying in 5 s): %s", self.options.name,
                              redact(f"{type(e).__name__}: {e}"))
        if consumer is not None:
            consumer.close(autocommit=False)  # leaves the group: the others rebalance at once

    def _reassign(self, partitions: set[int]) -> None:
        for p in list(self._slots):
            if p not in partitions:
                del self._slots[p]
        for p in partitions:
            if p in self._slots:
                self._slots[p].target = None  # positions were reset by the rebalance: look the end up again
            else:
                self._slots[p] = _Slot()
        log.info("group %s: assigned partitions %s of %s", self.options.name, sorted(partitions),
                 self.options.topic)

    def _record(self, partition: int, offset: int, value: bytes | None) -> None:
        slot = self._slots.get(partition)
        if slot is None or slot.target is None or offset < slot.target or offset <= slot.offset:
            return
        slot.offset = offset
        slot.ready = True
        try:
            slot.config = self._verify(partition, value, f"{self.options.topic} partition {partition} offset {offset}")
        except GroupError as e:
            slot.config = None
            log.error("group %s: %s; the slot is not served", self.options.name, e)

    def _verify(self, partition: int, value: bytes | None, where: str) -> PartConfig | None:
        """The local stream config that the control record of ``partition`` refers to (``None``: empty slot).

        Raises:
            GroupError: the record does not name this worker's entry ``streams[partition]`` by slot, id and
                fingerprint (a forged or foreign record, or another config on the publishing worker).
        """
        ref = parse_slot(value, where)
        if ref is None:
            return None
        if ref["slot"] != partition or partition >= len(self._local):
            raise GroupError(f"{where}: refused: the record names slot {ref['slot']} (stream {ref['id']!r}) but "
                             f"this worker's config {self.cfg.path} has {len(self._local)} stream entries; a worker "
                             f"serves only streams of its own config")
        key, fingerprint = self._local[partition]
        if (ref["id"], ref["sha256"]) != (key, fingerprint):
            raise GroupError(f"{where}: refused: the record names stream {ref['id']!r} (sha256 "
                             f"{ref['sha256'][:12]}) but entry streams[{partition}] of this worker's config "
                             f"{self.cfg.path} is {key!r} (sha256 {fingerprint[:12]}); a worker serves only streams "
                             f"of its own config: give every worker of the group the same streams: section")
        return self.cfg.streams[partition]

    def _apply(self) -> None:
        ready = sorted((p, s.config) for p, s in self._slots.items() if s.ready and s.config is not None)
        wanted = [json.dumps(c.model_dump(mode="json"), sort_keys=True) for _, c in ready]
        if wanted == self._applied:
            return
        ctx = self.make_context()
        configs: list[PartConfig] = []
        for p, c in ready:  # a stream that cannot be built here (file missing on this worker) must not block others
            try:
                c.build(ctx, f"{self.options.topic}[{p}]")  # type: ignore[attr-defined]
                configs.append(c)
            except Exception as e:
                log.error("group %s: partition %d: cannot serve this stream: %s", self.options.name, p,
                          redact(str(e)))
        plan = self.streams.plan(configs, ctx, f"group {self.options.name}")
        self.streams.apply(plan, self.pipeline)
        self._applied = wanted
        held = [sid for e in self.streams.entries for sid in e.stream_ids]
        for sid in self._held_ids - set(held):
            self._held.labels(self.options.name, sid).set(0)
        for sid in held:
            self._held.labels(self.options.name, sid).set(1)
        self._held_ids = set(held)
        self._count.set(len(held))
        log.info("group %s: serving %d stream(s) from partitions %s: %s", self.options.name, len(held),
                 [p for p, _ in ready], ", ".join(held) or "none")
