"""The dataflow engine: source threads -> per-stream ingress queues -> one thread per operator stage joined by
bounded queues -> one delivery thread that updates metrics and feeds the sinks.

* Every stream has its own instance of every operator (its own windows, smoothing buffers, open events); the
  heavy shared objects (models) are built once per stage (:meth:`Operator.create_shared`).
* Messages of one stream keep their order: each stage is one thread reading one FIFO.
* Backpressure: queues are bounded. File streams block (lossless, deterministic results); live streams apply the
  runtime's ``live_policy`` at their ingress queue and count drops. A per-stream frame-rate cap
  (:class:`~streamad.runtime.ratecap.RateCap`) drops frames in the stream's own thread before they queue.
* Isolation: each source reads in its own thread and a live stream never blocks at its ingress queue, so a stream
  that stalls (a frozen camera waiting for its read timeout) holds up nobody else. A stream whose source fails
  (corrupt file, lost camera) or whose message makes an operator raise is ended with a logged error; the other
  streams go on.
* Streams come and go while the pipeline runs (:meth:`Pipeline.add_source`, :meth:`Pipeline.remove_stream`):
  config reload starts new streams and drains removed ones without touching the others.
* Cross-stream batching: a stage whose operator overrides :meth:`Operator.process_batch` takes up to
  ``batch_size`` messages that are already waiting (of any streams) and handles them in one call.
* Sinks never drop an alert for a passing reason: a :class:`~streamad.errors.SinkFullError` (a full spool, a
  full or failing disk) is retried every second, holding the pipeline back, and counted in
  ``streamad_sink_full_waits_total{sink, reason}``. Alerts a sink could not take (another error, or the run ended
  while it was still waiting) and alerts left in a sink's spool at close are counted in
  :attr:`RunStats.undelivered`.
* Latency: each stage's time per message goes to ``streamad_stage_latency_seconds{stage}`` and to the message's
  ``timings``, the CPU time of its thread in operator calls to ``streamad_stage_cpu_seconds_total{stage}``; ``streamad_end_to_end_latency_seconds{stream}`` is measured from the frame's ``wall_time`` to delivery, and
  ``streamad_processing_latency_seconds{stream}`` from its ``ready_time`` (the newest frame it had to wait for,
  :func:`streamad.frames.ready_time`): the same less the waits a config asks for, such as centred smoothing's.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from streamad.errors import SinkFullError
from streamad.frames import EndOfStream, Scores, ready_time
from streamad.metrics import SOURCE_STATUSES, Metrics
from streamad.parts import BuildContext, Operator, PartConfig, Sink, Source
from streamad.redact import redact
from streamad.registry import OPERATORS
from streamad.runtime.queues import IngressQueue, StageQueue
from streamad.runtime.ratecap import RateCap

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

    @property
    def batches(self) -> bool:
        """The operator overrides :meth:`Operator.process_batch` (worth batching across streams)."""
        return getattr(self.cls.process_batch, "__func__", None) is not Operator.process_batch.__func__


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


def _stamp(results: list[Any], ready: float) -> None:
    """Raise each emitted message's ``ready_time`` to ``ready``, the time of the input that released it
    (:func:`streamad.frames.ready_time`)."""
    for r in results:
        if hasattr(r, "ready_time") and ready > ready_time(r):
            r.ready_time = ready


def _flush(op: Operator, eos: EndOfStream) -> list[Any]:
    """``op``'s stream ended: its held messages, with the events the end raises attached to ``eos``."""
    out = op.flush()
    eos.events.extend(op.end_events())
    return out


@dataclass
class RunStats:
    """What a run did: frames read and delivered, per-stream errors, wall time (seconds), and ``undelivered``:
    alerts accepted and not delivered when the sinks closed (left in a spool or dead-letter file,
    :meth:`Sink.undelivered`, plus those a sink refused or the run gave up waiting for)."""

    frames_in: int = 0
    delivered: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)
    drained: bool = True
    undelivered: int = 0

    @property
    def fps(self) -> float:
        """Delivered frames per second of wall time."""
        return self.delivered / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _StageClock:
    """A stage's two clocks: ``observe(seconds)`` records one message's wall time (``streamad_stage_latency_seconds``),
    ``cpu.inc(seconds)`` the CPU time of the stage's thread in an operator call (``streamad_stage_cpu_seconds``)."""

    wall: Any
    cpu: Any

    def observe(self, seconds: float) -> None:
        self.wall.observe(seconds)


@dataclass
class _Stream:
    """A stream the pipeline reads: its source, rate cap, thread, and the event set once stage 0 saw its end."""

    source: Source
    rate_cap: RateCap | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    gone: threading.Event = field(default_factory=threading.Event)
    delivered: bool = False  # its end reached the sinks and consumers


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
        rate_caps: frame-rate caps by stream id (streams not listed are not capped).
        persistent: keep running when every stream has ended (until ``stop``), so that streams added later
            (config reload) are served; otherwise the run ends with its last stream.
        batch_size: most messages a batching stage handles in one call (1 = no batching).
        stall_after_s: :meth:`health` reports delivery as stalled when messages wait for the sinks and none was
            delivered for this long (seconds).

    Raises:
        ValueError: two sources share a ``stream_id``, or ``batch_size`` < 1.
    """

    def __init__(self, sources: Sequence[Source], stages: Sequence[StageSpec], metrics: Metrics,
                 sinks: Sequence[Sink] = (), consumers: Sequence[Callable[[Any], None]] = (),
                 queue_size: int = 16, live_policy: str = "drop_oldest", max_active_streams: int = 4,
                 grace_period_s: float = 10.0, rate_caps: dict[str, RateCap] | None = None,
                 persistent: bool = False, batch_size: int = 1, stall_after_s: float = 60.0) -> None:
        ids = [s.stream_id for s in sources]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"stream ids must be unique; repeated: {', '.join(dup)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.stages = list(stages)
        self.metrics = metrics
        self.sinks = list(sinks)
        # the last consumer forgets a removed stream's metric series once its end reached the sinks and consumers
        self.consumers = [*consumers, self._after_delivery]
        self.live_policy = live_policy
        self.grace_period_s = grace_period_s
        self.persistent = persistent
        self.batch_size = batch_size
        self.failed: dict[str, str] = {}  # streams an operator failed on: their remaining messages are skipped
        self.errors: dict[str, str] = {}  # every stream that ended with an error (source or operator)
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}  # streams whose end stage 0 has not seen yet
        self._ended_streams: dict[str, _Stream] = {}  # ended on their own: health() keeps them until removed/replaced
        self._forget: set[str] = set()  # removed streams whose metric series go once their end is delivered
        self.stall_after_s = stall_after_s
        self._progress = (0, time.monotonic())  # (messages delivered, when that count was first seen by health())
        self._file_slots = threading.Semaphore(max_active_streams)
        self.ingress = IngressQueue(queue_size, on_drop=self._count_drop)
        names = [st.name for st in self.stages] + ["sinks"]
        self.queues = [StageQueue(n, queue_size, self._depth_gauge(n)) for n in names]
        self.stats = RunStats()
        self._stop = threading.Event()
        self._abandon = threading.Event()  # the grace period is over: stop waiting for full sinks
        self._refused = 0  # alerts a sink did not take (counted into stats.undelivered)
        self._started = False
        self._ended = False
        self._threads: list[threading.Thread] = []
        caps = rate_caps or {}
        for src in sources:
            self._streams[src.stream_id] = _Stream(src, caps.get(src.stream_id))

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

    # -- streams ---------------------------------------------------------------------------------------------
    @property
    def sources(self) -> list[Source]:
        """The sources of the streams being read now (their end not yet processed)."""
        with self._lock:
            return [st.source for st in self._streams.values()]

    def stream_ids(self) -> list[str]:
        """Ids of the streams being read now."""
        with self._lock:
            return list(self._streams)

    def add_source(self, src: Source, rate_cap: RateCap | None = None, wait_s: float = 30.0) -> None:
        """Start reading ``src`` (before or while the pipeline runs).

        If a stream with the same id is being removed, waits up to ``wait_s`` seconds for its end to pass the
        first stage, so that the new stream starts with fresh operator state.

        Raises:
            ValueError: a stream with this id is running (and not being removed).
            TimeoutError: the previous stream of this id did not end within ``wait_s``.
            RuntimeError: the pipeline has already ended.
        """
        sid = src.stream_id
        with self._lock:
            old = self._streams.get(sid)
        if old is not None:
            if not old.stop.is_set():
                raise ValueError(f"stream id {sid!r} is already running")
            if not old.gone.wait(wait_s):
                raise TimeoutError(f"stream {sid}: the previous stream of this id did not end within {wait_s:g} s")
        with self._lock:
            if self._ended:
                raise RuntimeError(f"cannot add stream {sid}: the pipeline has ended")
            if sid in self._streams:
                raise ValueError(f"stream id {sid!r} is already running")
            self.failed.pop(sid, None)
            self.errors.pop(sid, None)
            self._ended_streams.pop(sid, None)
            self._forget.discard(sid)  # a stream of this id is served again: its series stay
            st = self._streams[sid] = _Stream(src, rate_cap)
            if self._started:
                self._start_stream(st)

    def remove_stream(self, stream_id: str, forget_metrics: bool = False) -> threading.Event:
        """Stop reading ``stream_id``: its source is closed, the frames already read are processed and the
        stream is flushed (open alert events end) like a stream that ended. A stream that had already ended
        (:meth:`health` still lists it, e.g. as ``failed``) is dropped from the health table.

        With ``forget_metrics`` (the id is not served any more, e.g. removed or renamed by a config reload) every
        metric series of the stream is removed (:meth:`Metrics.remove_stream`) once its end was delivered to the
        sinks and consumers (at once for a stream that had already ended), unless a stream of the same id is added
        before that.

        Returns an event that is set once the stream's end passed the first stage (already set for an unknown id).
        """
        with self._lock:
            st = self._streams.get(stream_id)
            ended = self._ended_streams.pop(stream_id, None)
            if forget_metrics and ended is not None and ended.delivered:
                self.metrics.remove_stream(stream_id)
            elif forget_metrics and (st is not None or ended is not None):
                self._forget.add(stream_id)
        if st is None:
            done = threading.Event()
            done.set()
            return done
        st.stop.set()
        self._close_source(st.source)
        return st.gone

    def _start_stream(self, st: _Stream) -> None:
        src = st.source
        self.ingress.add_stream(src.stream_id, self.live_policy if src.live else "block")
        if not src.live:  # live sources report their own status (connecting, live, backoff)
            self.metrics.set_status(src.stream_id, "connecting")
        st.thread = threading.Thread(target=self._source_loop, args=(st,), name=f"source-{src.stream_id}",
                                     daemon=True)
        st.thread.start()

    @staticmethod
    def _close_source(src: Source) -> None:
        try:
            src.close()
        except Exception as exc:  # closing a broken source must not hide the end of stream
            log.warning("stream %s: error while closing: %s", src.stream_id, redact(str(exc)))

    def _after_delivery(self, msg: Any) -> None:
        """The last consumer: once a stream's end was delivered, forget its metric series if it was removed."""
        if not isinstance(msg, EndOfStream):
            return
        sid = msg.stream_id
        with self._lock:
            if sid in self._forget:
                self._forget.discard(sid)
                self.metrics.remove_stream(sid)
            elif sid in self._ended_streams:
                self._ended_streams[sid].delivered = True

    # -- threads ---------------------------------------------------------------------------------------------
    def _source_loop(self, st: _Stream) -> None:
        src = st.source
        sid = src.stream_id
        error = None
        slot = self._file_slots if not src.live else None
        in_counter = self.metrics.frames_in.labels(sid)
        capped = self.metrics.frames_dropped.labels(sid, "rate_cap") if st.rate_cap is not None else None

        def stopped() -> bool:
            return self._stop.is_set() or st.stop.is_set()

        if slot is not None:
            while not slot.acquire(timeout=0.2):
                if stopped():
                    slot = None
                    break
        try:
            if not stopped():
                if not src.live:
                    self.metrics.set_status(sid, "live")
                for frame in src.frames():
                    if stopped() or sid in self.failed:
                        break
                    in_counter.inc()
                    with self._lock:
                        self.stats.frames_in += 1
                    if st.rate_cap is not None and not st.rate_cap.keep(frame):
                        capped.inc()  # type: ignore[union-attr]
                        continue
                    self.ingress.put(sid, frame, stop=self._stop)
        except Exception as exc:  # a broken stream never takes down the others
            error = redact(f"{type(exc).__name__}: {exc}" if not str(exc).startswith(sid) else str(exc))
            self._fail(sid, error, skip_rest=False)
        finally:
            self._close_source(src)
            if slot is not None:
                slot.release()
            self.ingress.put(sid, EndOfStream(sid, error, time.time()), force=True)

    def _finished(self) -> bool:
        """True when the first stage should end the run: no stream left and (not persistent or stopping)."""
        with self._lock:
            if self._streams or (self.persistent and not self._stop.is_set()):
                return False
            self._ended = True
            return True

    def _next(self, i: int, timeout: float | None) -> Any:
        """Next message of stage ``i``'s input (``None`` after ``timeout`` seconds on the ingress queue)."""
        if i == 0:
            got = self.ingress.get(timeout=timeout)
            return None if got is None else got[1]
        if timeout == 0:
            try:
                return self.queues[i].get(block=False)
            except queue.Empty:
                return None
        return self.queues[i].get()

    def _stage_loop(self, i: int) -> None:
        spec = self.stages[i]
        out = self.queues[i + 1]
        instances: dict[str, Operator] = {}
        latency = _StageClock(self.metrics.stage_latency.labels(spec.name), self.metrics.stage_cpu.labels(spec.name))
        batching = self.batch_size > 1 and spec.batches
        held: Any = None  # a control message met while gathering a batch, handled next
        while True:
            if held is not None:
                msg, held = held, None
            else:
                msg = self._next(i, 0.5)
            if msg is None:  # idle first stage: a persistent pipeline ends here once stopped and empty
                if i == 0 and self._finished():
                    out.put(_STOP)
                    return
                continue
            if msg is _STOP:
                out.put(_STOP)
                return
            sid = msg.stream_id
            if isinstance(msg, EndOfStream):
                op = instances.pop(sid, None)
                if op is not None and sid not in self.failed:
                    self._run(op, spec, sid, lambda o=op, eos=msg: _flush(o, eos), out, latency, None,
                              ready=msg.wall_time)
                out.put(msg)
                if i == 0:
                    self.ingress.remove_stream(sid)
                    with self._lock:
                        st = self._streams.pop(sid, None)
                        if st is not None and not st.stop.is_set():  # ended on its own, not removed
                            self._ended_streams[sid] = st
                    if st is not None:
                        st.gone.set()
                    if self._finished():
                        out.put(_STOP)
                        return
                continue
            if sid in self.failed:
                continue
            if not batching:
                op = self._instance(instances, spec, sid)
                self._run(op, spec, sid, lambda o=op, m=msg: o.process(m), out, latency, msg)
                continue
            batch = [msg]
            while len(batch) < self.batch_size:
                nxt = self._next(i, 0)
                if nxt is None:
                    break
                if nxt is _STOP or isinstance(nxt, EndOfStream):
                    held = nxt
                    break
                if nxt.stream_id not in self.failed:
                    batch.append(nxt)
            self._run_batch(instances, spec, batch, out, latency)

    @staticmethod
    def _instance(instances: dict[str, Operator], spec: StageSpec, sid: str) -> Operator:
        op = instances.get(sid)
        if op is None:
            op = instances[sid] = spec.cls(spec.config, spec.shared, sid)
        return op

    def _run(self, op: Operator, spec: StageSpec, sid: str, call: Callable[[], list[Any]], out: StageQueue,
             latency: "_StageClock", msg: Any, ready: float | None = None) -> None:
        """One operator call on ``msg`` (``None``: a flush, whose outputs are ready at ``ready``, Unix seconds; now
        when unset or 0)."""
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            results = call()
        except Exception as exc:
            log.debug("operator %s failed on stream %s", spec.name, sid, exc_info=True)
            self._fail(sid, redact(f"operator {spec.name}: {type(exc).__name__}: {exc}"), skip_rest=True)
            return
        finally:
            latency.cpu.inc(time.thread_time() - c0)
        dt = time.perf_counter() - t0
        latency.observe(dt)
        if msg is not None and hasattr(msg, "timings"):
            msg.timings[spec.name] = msg.timings.get(spec.name, 0.0) + dt
        _stamp(results, ready_time(msg) if msg is not None else (ready or time.time()))
        for r in results:
            out.put(r)

    def _run_batch(self, instances: dict[str, Operator], spec: StageSpec, batch: list[Any], out: StageQueue,
                   latency: "_StageClock") -> None:
        """One :meth:`Operator.process_batch` call on ``batch``. A message whose result is an exception ends its
        stream only; if the call itself raises (having changed nothing), each message is handled alone."""
        if len(batch) == 1:
            op = self._instance(instances, spec, batch[0].stream_id)
            self._run(op, spec, op.stream_id, lambda: op.process(batch[0]), out, latency, batch[0])
            return
        ops = [self._instance(instances, spec, m.stream_id) for m in batch]
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            results = spec.cls.process_batch(ops, batch)
        except Exception:
            latency.cpu.inc(time.thread_time() - c0)
            log.debug("operator %s failed on a batch of %d; retrying one by one", spec.name, len(batch),
                      exc_info=True)
            for op, m in zip(ops, batch):
                if m.stream_id not in self.failed:
                    self._run(op, spec, m.stream_id, lambda o=op, mm=m: o.process(mm), out, latency, m)
            return
        latency.cpu.inc(time.thread_time() - c0)
        dt = (time.perf_counter() - t0) / len(batch)
        for m, res in zip(batch, results):
            if isinstance(res, Exception):
                self._fail(m.stream_id, redact(f"operator {spec.name}: {type(res).__name__}: {res}"), skip_rest=True)
                continue
            if m.stream_id in self.failed:
                continue
            latency.observe(dt)
            if hasattr(m, "timings"):
                m.timings[spec.name] = m.timings.get(spec.name, 0.0) + dt
            _stamp(res, ready_time(m))
            for r in res:
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
                eos = EndOfStream(msg.stream_id, err, msg.wall_time, msg.events)
                for ev in eos.events:
                    m.events.labels(msg.stream_id, ev.type).inc()
                for s in self.sinks:
                    self._safe(s.end_stream, eos, s)
                for c in self.consumers:
                    c(eos)
                continue
            self.stats.delivered += 1
            sid = msg.stream_id
            m.frames_processed.labels(sid).inc()
            now = time.time()
            m.e2e_latency.labels(sid).observe(max(0.0, now - msg.wall_time))
            m.processing_latency.labels(sid).observe(max(0.0, now - ready_time(msg)))
            if isinstance(msg, Scores):
                if msg.normalized is not None:
                    m.anomaly_score.labels(sid).set(msg.normalized)
                    m.anomaly_threshold.labels(sid).set(0.5)
                    above = m.frames_above.labels(sid)  # the series exists from the first scored frame
                    if msg.anomalous:
                        above.inc()
                for ev in msg.events:
                    m.events.labels(sid, ev.type).inc()
                for s in self.sinks:
                    self._safe(s.write, msg, s)
            for c in self.consumers:
                c(msg)

    def _safe(self, fn: Callable[[Any], None], arg: Any, sink: Sink) -> None:
        """Call a sink. A :class:`SinkFullError` (full spool, full or failing disk) is retried every second,
        holding the pipeline back, until it succeeds or the run gives up after its grace period; any other failure
        is logged and counted. The alerts of a call that did not succeed are counted as undelivered."""
        name = sink.metrics_label
        waits = 0
        while True:
            try:
                fn(arg)
                if waits:
                    log.info("sink %s takes alerts again after %d waits", name, waits)
                return
            except SinkFullError as exc:
                waits += 1
                self.metrics.sink_full_waits.labels(name, getattr(exc, "reason", "full")).inc()
                if self._abandon.is_set():
                    self._count_refused(arg, name, f"still not writable when the grace period ended: {exc}")
                    return
                if waits == 1 or waits % 30 == 0:  # bounded logging of a long stall
                    log.warning("sink %s cannot take alerts, holding the pipeline back (wait %d): %s", name, waits,
                                redact(str(exc)))
                self._abandon.wait(1.0)
            except Exception as exc:
                self.metrics.sink_errors.labels(name).inc()
                self._count_refused(arg, name, str(exc))
                return

    def _count_refused(self, msg: Any, name: str, why: str) -> None:
        n = len(msg.events) if isinstance(msg, (Scores, EndOfStream)) else 0
        with self._lock:
            self._refused += n
        log.error("sink %s failed%s: %s", name, f"; {n} alerts NOT delivered" if n else "", redact(why))

    # -- health ----------------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """A snapshot for health endpoints (never blocks on a sink or a source).

        Returns:
            ``{"running": bool, "stopping": bool, "threads_alive": bool,
            "streams": {id: {"status": str, "live": bool, "reconnects": int[, "error": str]}},
            "delivery": {sink: reason}, "stalled": str | None}``.

            ``streams`` lists the streams being read and those that ended on their own (until a reload removes
            or replaces them): ``status`` is one of :data:`~streamad.metrics.SOURCE_STATUSES` (``"unknown"``
            before the first report); a stream that ended with an error (source gave up, corrupt file, operator
            failure) is ``"failed"`` with its ``error`` (credentials redacted); one that ended normally is
            ``"ended"``. ``delivery`` names each sink whose :meth:`Sink.delivery_problem` reports a reason (sinks
            named by kind, ``kafka_2`` for a second one). ``stalled`` says why delivery looks stuck: messages wait
            for the sinks and none was delivered for ``stall_after_s`` seconds (``None`` otherwise).
        """
        reg = self.metrics.registry
        with self._lock:
            streams = {**self._ended_streams, **self._streams}
            ended = set(self._ended_streams)
            errors = dict(self.errors)
        out: dict[str, Any] = {}
        for sid, st in streams.items():
            status = "unknown"
            for s in SOURCE_STATUSES:
                if reg.get_sample_value("streamad_source_status", {"stream": sid, "status": s}) == 1.0:
                    status = s
            if sid in errors:
                status = "failed"
            elif sid in ended:
                status = "ended"
            reconnects = reg.get_sample_value("streamad_source_reconnects_total", {"stream": sid}) or 0.0
            out[sid] = {"status": status, "live": bool(st.source.live), "reconnects": int(reconnects)}
            if sid in errors:
                out[sid]["error"] = errors[sid]
        alive = bool(self._threads) and all(t.is_alive() for t in self._threads)
        return {"running": self._started and not self._ended, "stopping": self._stop.is_set(),
                "threads_alive": alive, "streams": out, "delivery": self._delivery_problems(),
                "stalled": self._stall()}

    def _delivery_problems(self) -> dict[str, str]:
        """``{sink name: reason}`` of the sinks that report a delivery problem."""
        seen: Counter[str] = Counter()
        problems = {}
        for sink in self.sinks:
            label = sink.metrics_label  # the sink's name in its metrics (a Kafka sink: kafka:<topic>)
            seen[label] += 1
            name = label if seen[label] == 1 else f"{label}_{seen[label]}"
            try:
                reason = sink.delivery_problem()
            except Exception as exc:  # a broken probe is a problem to report, never a failing health endpoint
                reason = f"delivery_problem() raised {type(exc).__name__}: {exc}"
            if reason:
                problems[name] = redact(str(reason))
        return problems

    def _stall(self) -> str | None:
        """Why delivery looks stuck (messages wait for the sinks, none delivered for ``stall_after_s``), or None."""
        waiting = self.queues[-1].qsize()
        now = time.monotonic()
        with self._lock:
            count = self.stats.delivered
            if waiting == 0 or count != self._progress[0]:
                self._progress = (count, now)
                return None
            idle = now - self._progress[1]
        if idle < self.stall_after_s:
            return None
        return f"no message delivered to the sinks for {idle:.0f} s while {waiting} wait"

    # -- public ----------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> RunStats:
        """Run until every source ended (unless ``persistent``) or ``stop`` is set (then every source is
        closed and the queues drain for up to ``grace_period_s``).

        Sinks are closed before returning. Returns the run's :class:`RunStats`.

        Raises:
            ValueError: the pipeline has no operator stage.
        """
        if not self.stages:
            raise ValueError("a pipeline needs at least one operator")
        if stop is not None:
            self._stop = stop
        stop = self._stop
        t0 = time.perf_counter()
        self._threads = [threading.Thread(target=self._stage_loop, args=(i,), name=f"stage-{st.name}",
                                          daemon=True) for i, st in enumerate(self.stages)]
        deliver = threading.Thread(target=self._deliver_loop, name="deliver", daemon=True)
        self._threads.append(deliver)
        for t in self._threads:
            t.start()
        with self._lock:
            self._started = True
            for st in self._streams.values():
                self._start_stream(st)
        deadline = None  # once stopped: draining and closing the sinks end by this time (monotonic seconds)
        while deliver.is_alive():
            deliver.join(0.2)
            if stop.is_set():
                deadline = time.monotonic() + self.grace_period_s
                for src in self.sources:  # ends live sources waiting in a backoff or a read
                    self._close_source(src)
                deliver.join(self.grace_period_s)
                if deliver.is_alive():
                    self._abandon.set()
                    self.stats.drained = False
                    log.warning("grace period of %.1f s ended before the queues drained", self.grace_period_s)
                break
        with self._lock:
            self._ended = True
        self._close_sinks(None if deadline is None else max(0.5, deadline - time.monotonic()))
        self._abandon.set()
        self.stats.seconds = time.perf_counter() - t0
        self.stats.errors = dict(self.errors)
        self.stats.undelivered = self._count_undelivered()
        return self.stats

    def _count_undelivered(self) -> int:
        """Alerts the sinks refused plus what each sink reports undelivered after closing (logged)."""
        total = self._refused
        for s in self.sinks:
            try:
                total += s.undelivered()
            except Exception as exc:  # a broken sink must not hide the others' counts
                log.error("sink %s: cannot count undelivered alerts: %s", s.metrics_label, redact(str(exc)))
        if total:
            log.error("%d alerts were not delivered (see the sinks' messages above; a Kafka sink keeps them in its "
                      "spool for the next start)", total)
        return total

    def _close_sinks(self, budget_s: float | None) -> None:
        """Close every sink, in order; with a ``budget_s`` (seconds left of the grace period) stop waiting when
        it is spent (a Kafka sink's unacknowledged alerts stay in its spool for the next start)."""

        def close_all() -> None:
            for s in self.sinks:
                try:
                    s.close()
                except Exception as exc:
                    log.error("closing sink %s failed: %s", getattr(s, "kind", "?"), redact(str(exc)))

        if budget_s is None:
            close_all()
            return
        closer = threading.Thread(target=close_all, name="close-sinks", daemon=True)
        closer.start()
        closer.join(budget_s)
        if closer.is_alive():
            self.stats.drained = False
            log.warning("the sinks did not close within the grace period of %.1f s; alerts not yet delivered stay "
                        "in the delivery spool and are sent at the next start", self.grace_period_s)
