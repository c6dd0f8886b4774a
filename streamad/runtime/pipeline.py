"""The dataflow engine: source threads -> per-stream ingress queues -> one thread per operator stage joined by
bounded queues -> one delivery thread that updates metrics and feeds the sinks.

* Every stream has its own instance of every operator (its own windows, smoothing buffers, open events); the
  heavy shared objects (models) are built once per stage (:meth:`Operator.create_shared`).
* Messages of one stream keep their order: each stage is one thread reading one FIFO.
* Backpressure: queues are bounded. File streams block (lossless, deterministic results); live streams apply the
  runtime's ``live_policy`` at their ingress queue and count drops.
* Isolation: a stream whose source fails (corrupt file, lost camera) or whose message makes an operator raise is
  ended with a logged error; the other streams go on.
* Latency: each stage's time per message goes to ``streamad_stage_latency_seconds{stage}`` and to the message's
  ``timings``; ``streamad_end_to_end_latency_seconds{stream}`` is measured from the frame's ``wall_time`` to delivery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from streamad.errors import SinkFullError
from streamad.frames import EndOfStream, Scores
from streamad.metrics import Metrics
from streamad.parts import BuildContext, Operator, PartConfig, Sink, Source
from streamad.redact import redact
from streamad.registry import OPERATORS
from streamad.runtime.queues import IngressQueue, StageQueue

__all__ = ["Pipeline", "StageSpec", "build_stages", "RunStats"]

log = logging.getLogger("streamad.runtime")

_STOP = object()  # end of all streams: passed down the stages, then the delivery thread ends


@dataclass
class StageSpec:
    """One operator stage: its unique ``name`` (metrics label), class, config and the object shared by streams."""

    name: str
    cls: type[Operator]
    config: PartConfig
    shared: Any = None


def build_stages(configs: Sequence[PartConfig], ctx: BuildContext) -> list[StageSpec]:
    """Instantiate the shared part of each operator config (models are loaded here, once).

    Stage names are the operator kinds, suffixed ``_2``, ``_3`` ... when a kind repeats.
    """
    seen: Counter[str] = Counter()
    stages = []
    for cfg in configs:
        cls = OPERATORS.get(cfg.kind)
        seen[cfg.kind] += 1
        name = cfg.kind if seen[cfg.kind] == 1 else f"{cfg.kind}_{seen[cfg.kind]}"
        stages.append(StageSpec(name, cls, cfg, cls.create_shared(cfg, ctx)))
    return stages


@dataclass
class RunStats:
    """What a run did: frames read and delivered, per-stream errors, wall time (seconds)."""

    frames_in: int = 0
    delivered: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)
    drained: bool = True

    @property
    def fps(self) -> float:
        """Delivered frames per second of wall time."""
        return self.delivered / self.seconds if self.seconds > 0 else 0.0


class Pipeline:
    """Runs ``sources`` through ``stages`` into ``sinks`` and ``consumers``.

    Args:
        sources: the streams (each with a unique ``stream_id``).
        stages: operator stages in order (:func:`build_stages`).
        metrics: the pipeline's metrics.
        sinks: sinks that receive every :class:`Scores` (``write``) and end of stream.
        consumers: plain callables receiving every message that leaves the last stage (used by ``fit`` / ``eval``
            to collect clips or scores).
        queue_size: capacity of every bounded queue (messages).
        live_policy: full-queue policy of live streams (``drop_oldest``, ``drop_newest``, ``block``).
        max_active_streams: file streams read at once; the rest wait their turn.
        grace_period_s: after ``stop`` is set, how long :meth:`run` waits for the queues to drain.

    Raises:
        ValueError: two sources share a ``stream_id``.
    """

    def __init__(self, sources: Sequence[Source], stages: Sequence[StageSpec], metrics: Metrics,
                 sinks: Sequence[Sink] = (), consumers: Sequence[Callable[[Any], None]] = (),
                 queue_size: int = 16, live_policy: str = "drop_oldest", max_active_streams: int = 4,
                 grace_period_s: float = 10.0) -> None:
        ids = [s.stream_id for s in sources]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"stream ids must be unique; repeated: {', '.join(dup)}")
        self.sources = list(sources)
        self.stages = list(stages)
        self.metrics = metrics
        self.sinks = list(sinks)
        self.consumers = list(consumers)
        self.live_policy = live_policy
        self.grace_period_s = grace_period_s
        self.failed: dict[str, str] = {}  # streams an operator failed on: their remaining messages are skipped
        self.errors: dict[str, str] = {}  # every stream that ended with an error (source or operator)
        self._lock = threading.Lock()
        self._file_slots = threading.Semaphore(max_active_streams)
        self.ingress = IngressQueue(queue_size, on_drop=self._count_drop)
        names = [st.name for st in self.stages] + ["sinks"]
        self.queues = [StageQueue(n, queue_size, self._depth_gauge(n)) for n in names]
        self.stats = RunStats()

    # -- metrics helpers -------------------------------------------------------------------------------------
    def _count_drop(self, stream_id: str) -> None:
        self.metrics.frames_dropped.labels(stream_id, "backpressure").inc()

    def _depth_gauge(self, name: str) -> Callable[[int], None]:
        g = self.metrics.queue_depth.labels(name)
        return g.set

    def _fail(self, stream_id: str, message: str, skip_rest: bool) -> None:
        """Record a stream's error; ``skip_rest`` drops its messages still in flight (operator failures). A source
        failure keeps them: the frames decoded before the error are still scored and delivered."""
        with self._lock:
            if stream_id in self.errors:
                return
            self.errors[stream_id] = message
            if skip_rest:
                self.failed[stream_id] = message
        self.metrics.stream_errors.labels(stream_id).inc()
        log.error("stream %s ended with an error: %s", stream_id, message)

    # -- threads ---------------------------------------------------------------------------------------------
    def _source_loop(self, src: Source, stop: threading.Event) -> None:
        sid = src.stream_id
        error = None
        slot = self._file_slots if not src.live else None
        if slot is not None:
            while not slot.acquire(timeout=0.2):
                if stop.is_set():
                    break
        try:
            if not stop.is_set():
                self.metrics.set_status(sid, "live")
                for frame in src.frames():
                    if stop.is_set() or sid in self.failed:
                        break
                    self.metrics.frames_in.labels(sid).inc()
                    with self._lock:
                        self.stats.frames_in += 1
                    self.ingress.put(sid, frame, stop=stop)
        except Exception as exc:  # a broken stream never takes down the others
            error = redact(f"{type(exc).__name__}: {exc}" if not str(exc).startswith(sid) else str(exc))
            self._fail(sid, error, skip_rest=False)
        finally:
            try:
                src.close()
            except Exception as exc:  # closing a broken source must not hide the end of stream
                log.warning("stream %s: error while closing: %s", sid, redact(str(exc)))
            if slot is not None:
                slot.release()
            self.ingress.put(sid, EndOfStream(sid, error, time.time()), force=True)

    def _stage_loop(self, i: int) -> None:
        spec = self.stages[i]
        out = self.queues[i + 1]
        instances: dict[str, Operator] = {}
        latency = self.metrics.stage_latency.labels(spec.name)
        remaining = len(self.sources)
        while True:
            if i == 0:
                got = self.ingress.get(timeout=0.5)
                if got is None:
                    continue
                msg = got[1]
            else:
                msg = self.queues[i].get()
            if msg is _STOP:
                out.put(_STOP)
                return
            sid = msg.stream_id
            if isinstance(msg, EndOfStream):
                op = instances.pop(sid, None)
                if op is not None and sid not in self.failed:
                    self._run(op, spec, sid, lambda o=op: o.flush(), out, latency, None)
                out.put(msg)
                if i == 0:
                    self.ingress.remove_stream(sid)
                    remaining -= 1
                    if remaining == 0:
                        out.put(_STOP)
                        return
                continue
            if sid in self.failed:
                continue
            op = instances.get(sid)
            if op is None:
                op = instances[sid] = spec.cls(spec.config, spec.shared, sid)
            self._run(op, spec, sid, lambda o=op, m=msg: o.process(m), out, latency, msg)

    def _run(self, op: Operator, spec: StageSpec, sid: str, call: Callable[[], list[Any]], out: StageQueue,
             latency: Any, msg: Any) -> None:
        t0 = time.perf_counter()
        try:
            results = call()
        except Exception as exc:
            log.debug("operator %s failed on stream %s", spec.name, sid, exc_info=True)
            self._fail(sid, redact(f"operator {spec.name}: {type(exc).__name__}: {exc}"), skip_rest=True)
            return
        dt = time.perf_counter() - t0
        latency.observe(dt)
        if msg is not None and hasattr(msg, "timings"):
            msg.timings[spec.name] = msg.timings.get(spec.name, 0.0) + dt
        for r in results:
            out.put(r)

    def _deliver_loop(self) -> None:
        q = self.queues[-1]
        m = self.metrics
        while True:
            msg = q.get()
            if msg is _STOP:
                return
            if isinstance(msg, EndOfStream):
                err = msg.error or self.errors.get(msg.stream_id)
                m.set_status(msg.stream_id, "failed" if err else "ended")
                eos = EndOfStream(msg.stream_id, err, msg.wall_time)
                for s in self.sinks:
                    self._safe(s.end_stream, eos, s)
                for c in self.consumers:
                    c(eos)
                continue
            self.stats.delivered += 1
            sid = msg.stream_id
            m.frames_processed.labels(sid).inc()
            m.e2e_latency.labels(sid).observe(max(0.0, time.time() - msg.wall_time))
            if isinstance(msg, Scores):
                if msg.normalized is not None:
                    m.anomaly_score.labels(sid).set(msg.normalized)
                    m.anomaly_threshold.labels(sid).set(0.5)
                for ev in msg.events:
                    m.events.labels(sid, ev.type).inc()
                for s in self.sinks:
                    self._safe(s.write, msg, s)
            for c in self.consumers:
                c(msg)

    def _safe(self, fn: Callable[[Any], None], arg: Any, sink: Sink) -> None:
        """Call a sink; a full sink is retried (never dropped), any other failure is logged and counted."""
        name = getattr(sink, "kind", type(sink).__name__)
        while True:
            try:
                fn(arg)
                return
            except SinkFullError as exc:
                self.metrics.sink_retries.labels(name).inc()
                log.warning("sink %s is full, holding the pipeline back: %s", name, redact(str(exc)))
                time.sleep(1.0)
            except Exception as exc:
                self.metrics.sink_errors.labels(name).inc()
                log.error("sink %s failed: %s", name, redact(str(exc)))
                return

    # -- public ----------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> RunStats:
        """Run until every source ended (files) or ``stop`` is set (then drain for up to ``grace_period_s``).

        Sinks are closed before returning. Returns the run's :class:`RunStats`.
        """
        if not self.stages:
            raise ValueError("a pipeline needs at least one operator")
        stop = stop or threading.Event()
        t0 = time.perf_counter()
        for src in self.sources:
            self.ingress.add_stream(src.stream_id, self.live_policy if src.live else "block")
            self.metrics.set_status(src.stream_id, "connecting")
        threads = [threading.Thread(target=self._stage_loop, args=(i,), name=f"stage-{st.name}", daemon=True)
                   for i, st in enumerate(self.stages)]
        deliver = threading.Thread(target=self._deliver_loop, name="deliver", daemon=True)
        feeders = [threading.Thread(target=self._source_loop, args=(s, stop), name=f"source-{s.stream_id}",
                                    daemon=True) for s in self.sources]
        for t in [*threads, deliver, *feeders]:
            t.start()
        if not self.sources:  # nothing to read: let the stages end at once
            self.ingress.add_stream("", "block")
            self.ingress.put("", _STOP, force=True)
        while deliver.is_alive():
            deliver.join(0.2)
            if stop.is_set():
                deliver.join(self.grace_period_s)
                if deliver.is_alive():
                    self.stats.drained = False
                    log.warning("grace period of %.1f s ended before the queues drained", self.grace_period_s)
                break
        for s in self.sinks:
            try:
                s.close()
            except Exception as exc:
                log.error("closing sink %s failed: %s", getattr(s, "kind", "?"), redact(str(exc)))
        self.stats.seconds = time.perf_counter() - t0
        self.stats.errors = dict(self.errors)
        return self.stats
