"""The Prometheus metrics of a pipeline (names prefixed ``streamad_``).

One :class:`Metrics` object per pipeline, on its own ``CollectorRegistry`` (so tests and several pipelines in one
process never collide). The ``prometheus`` sink serves it over HTTP; the Grafana dashboard and alert rules in
``deploy/`` use exactly these names. Every metric with a ``stream`` label is per stream id. The ``sink`` label names one sink: its kind, or for a
``kafka`` sink ``kafka:<topic>`` (``kafka:<topic>#2``, ``#3`` ... for further Kafka sinks on the same topic), so
that two Kafka sinks never share a series.

| metric | type | labels | meaning |
|---|---|---|---|
| ``streamad_frames_in_total`` | counter | stream | frames read from the source |
| ``streamad_frames_processed_total`` | counter | stream | frames that reached the sinks with a score |
| ``streamad_frames_dropped_total`` | counter | stream, reason | frames dropped (``backpressure``, ``rate_cap``) |
| ``streamad_stage_latency_seconds`` | histogram | stage | time one message spends in an operator |
| ``streamad_stage_cpu_seconds_total`` | counter | stage | CPU time of the stage's own thread in its operator calls (native thread pools a call waits on, e.g. OpenVINO's, not included); over the process's CPU it is the stage's CPU share |
| ``streamad_end_to_end_latency_seconds`` | histogram | stream | source read to sink, per frame |
| ``streamad_processing_latency_seconds`` | histogram | stream | the same from the arrival of the newest frame the result waited for (:func:`streamad.frames.ready_time`): less the waits a config asks for (centred smoothing's look-ahead); the latency alert watches this one |
| ``streamad_anomaly_score`` | gauge | stream | latest normalised frame score (0-1) |
| ``streamad_anomaly_threshold`` | gauge | stream | decision threshold on that score (0.5 after min-max) |
| ``streamad_events_total`` | counter | stream, type | alert events by type (start, update, end) |
| ``streamad_source_status`` | gauge | stream, status | 1 for the stream's current status, else 0 |
| ``streamad_source_reconnects_total`` | counter | stream | reconnect attempts of live sources |
| ``streamad_stream_errors_total`` | counter | stream | streams ended by an error (corrupt file, ...) |
| ``streamad_queue_depth`` | gauge | queue | messages waiting in a bounded queue |
| ``streamad_model_inference_seconds`` | histogram | model | time of one model scoring call |
| ``streamad_model_loads_total`` | counter | model_dir | models loaded from a directory (1 per directory, +1 per hot swap) |
| ``streamad_model_load_errors_total`` | counter | model_dir | loads that failed (missing or broken directory; a failed swap keeps the old model) |
| ``streamad_model_age_seconds`` | gauge | stream | seconds since the ``model.json`` of the model scoring the stream was written |
| ``streamad_frames_above_threshold_total`` | counter | stream | scored frames at or above the decision threshold (``anomalous``); over ``streamad_frames_processed_total`` it is the alert-rate share |
| ``streamad_sink_retries_total`` | counter | sink | failed delivery attempts to the destination (e.g. Kafka unreachable) |
| ``streamad_sink_full_waits_total`` | counter | sink, reason | times the pipeline waited (and retried, never dropped) because a sink could not take an alert: ``spool_full``, ``write_error`` (disk full, I/O error) |
| ``streamad_sink_stalled_seconds`` | gauge | sink | seconds alerts have waited with no delivery succeeding (0 while none waits): grows from the first second of an outage |
| ``streamad_sink_dead_letters_total`` | counter | sink | alerts too large to ever spool, written to the dead-letter file instead (never delivered) |
| ``streamad_spool_depth`` | gauge | sink | alerts on local disk not yet acknowledged |
| ``streamad_spool_bytes`` | gauge | sink | bytes of the spool's segment files (bounded by ``spool_max_bytes``) |
| ``streamad_sink_errors_total`` | counter | sink | sink calls that failed (logged; the message is not retried) |
| ``streamad_group_streams`` | gauge | group | streams this ``--group`` worker serves (:mod:`streamad.runtime.group`) |
| ``streamad_group_stream`` | gauge | group, stream | 1 while this worker holds the stream, 0 after it moved |
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

__all__ = ["Metrics", "SOURCE_STATUSES"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SOURCE_STATUSES = ("connecting", "live", "backoff", "ended", "failed")


class Metrics:
    """All metrics of one pipeline on a private registry (``self.registry``): every Prometheus metric streamad
    declares is declared here (the table of the module doc)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.frames_in = Counter("streamad_frames_in", "Frames read from the source", ["stream"], registry=r)
        self.frames_processed = Counter("streamad_frames_processed", "Frames scored and delivered to sinks",
                                        ["stream"], registry=r)
        self.frames_dropped = Counter("streamad_frames_dropped", "Frames dropped", ["stream", "reason"], registry=r)
        self.stage_latency = Histogram("streamad_stage_latency_seconds", "Seconds one message spends in a stage",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage_cpu = Counter("streamad_stage_cpu_seconds", "CPU seconds of a stage's thread in its operator calls",
                                 ["stage"], registry=r)
        self.e2e_latency = Histogram("streamad_end_to_end_latency_seconds",
                                     "Seconds from source read to sink delivery", ["stream"],
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.processing_latency = Histogram(
            "streamad_processing_latency_seconds",
            "Seconds from the arrival of the newest frame a result waited for to sink delivery (end-to-end latency "
            "less designed waits such as centred smoothing's look-ahead)", ["stream"], buckets=LATENCY_BUCKETS,
            registry=r)
        self.anomaly_score = Gauge("streamad_anomaly_score", "Latest normalised frame anomaly score (0-1)",
                                   ["stream"], registry=r)
        self.anomaly_threshold = Gauge("streamad_anomaly_threshold", "Decision threshold on the normalised score",
                                       ["stream"], registry=r)
        self.events = Counter("streamad_events", "Alert events by type", ["stream", "type"], registry=r)
        self.source_status = Gauge("streamad_source_status", "1 for the current status of a stream",
                                   ["stream", "status"], registry=r)
        self.reconnects = Counter("streamad_source_reconnects", "Reconnect attempts of live sources", ["stream"],
                                  registry=r)
        self.stream_errors = Counter("streamad_stream_errors", "Streams ended by an error", ["stream"], registry=r)
        self.queue_depth = Gauge("streamad_queue_depth", "Messages waiting in a bounded queue", ["queue"],
                                 registry=r)
        self.inference = Histogram("streamad_model_inference_seconds", "Seconds of one model scoring call",
                                   ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.model_loads = Counter("streamad_model_loads", "Models loaded from a model directory", ["model_dir"],
                                   registry=r)
        self.model_load_errors = Counter("streamad_model_load_errors", "Model loads that failed (the old model "
                                         "stays)", ["model_dir"], registry=r)
        self.model_age = Gauge("streamad_model_age_seconds", "Seconds since the model scoring the stream was "
                               "fitted (model.json created)", ["stream"], registry=r)
        self.frames_above = Counter("streamad_frames_above_threshold", "Scored frames at or above the decision "
                                    "threshold", ["stream"], registry=r)
        self.sink_retries = Counter("streamad_sink_retries", "Sink delivery retries", ["sink"], registry=r)
        self.sink_errors = Counter("streamad_sink_errors", "Sink calls that failed", ["sink"], registry=r)
        self.sink_full_waits = Counter("streamad_sink_full_waits", "Waits of the pipeline on a sink that could "
                                       "not take an alert", ["sink", "reason"], registry=r)
        self.sink_stalled = Gauge("streamad_sink_stalled_seconds", "Seconds alerts have waited with no delivery "
                                  "succeeding", ["sink"], registry=r)
        self.sink_dead_letters = Counter("streamad_sink_dead_letters", "Alerts too large to spool, written to the "
                                         "dead-letter file", ["sink"], registry=r)
        self.spool_bytes = Gauge("streamad_spool_bytes", "Bytes of spool segment files", ["sink"], registry=r)
        self.spool_depth = Gauge("streamad_spool_depth", "Alerts spooled on disk, not yet acknowledged", ["sink"],
                                 registry=r)
        self.group_streams = Gauge("streamad_group_streams", "Streams this worker of the group serves", ["group"],
                                   registry=r)
        self.group_stream = Gauge("streamad_group_stream", "1 while this worker holds the stream, 0 after it moved",
                                  ["group", "stream"], registry=r)

    def set_status(self, stream: str, status: str) -> None:
        """Mark ``status`` (one of :data:`SOURCE_STATUSES`) as the stream's current status."""
        for s in SOURCE_STATUSES:
            self.source_status.labels(stream, s).set(1.0 if s == status else 0.0)

    def remove_stream(self, stream: str) -> int:
        """Remove every series labelled ``stream=<stream>`` (a stream that is not served any more: removed or
        renamed by a config reload), of every metric declared here, except ``streamad_group_stream`` (the group
        worker keeps it at 0 after a stream moved away). Returns how many series were removed (0 for an unknown
        stream)."""
        removed = 0
        for metric in vars(self).values():
            if not isinstance(metric, MetricWrapperBase) or metric is self.group_stream:
                continue
            names = metric._labelnames  # noqa: SLF001 (prometheus_client lists no children publicly)
            if "stream" not in names:
                continue
            pos = names.index("stream")
            for values in [v for v in list(metric._metrics) if v[pos] == stream]:  # noqa: SLF001
                metric.remove(*values)
                removed += 1
        return removed
