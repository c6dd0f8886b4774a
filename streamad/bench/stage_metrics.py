"""Per-stage figures of a run, read from its :class:`~streamad.metrics.Metrics`: the mean time per message
(``streamad_stage_latency_seconds``) and the CPU seconds of each stage's thread (``streamad_stage_cpu_seconds``),
for ``streamad bench`` and benchmarks/stage_times.py."""

from __future__ import annotations

from streamad.metrics import Metrics

__all__ = ["frames_dropped", "stage_cpu_seconds", "stage_means"]


def stage_means(metrics: Metrics) -> dict[str, tuple[float, int]]:
    """``{stage: (mean seconds per message, messages)}`` in pipeline order, from the stage latency histogram
    (messages: every frame and every stream's end)."""
    out: dict[str, list[float]] = {}
    for fam in metrics.registry.collect():
        if fam.name != "streamad_stage_latency_seconds":
            continue
        for s in fam.samples:
            if s.name.endswith("_sum") or s.name.endswith("_count"):
                out.setdefault(s.labels["stage"], [0.0, 0.0])[s.name.endswith("_count")] = s.value
    return {k: (v[0] / v[1] if v[1] else 0.0, int(v[1])) for k, v in out.items()}


def stage_cpu_seconds(metrics: Metrics) -> dict[str, float]:
    """``{stage: CPU seconds of the stage's thread in operator calls}`` from ``streamad_stage_cpu_seconds_total``."""
    return {s.labels["stage"]: s.value for fam in metrics.registry.collect() if fam.name == "streamad_stage_cpu_seconds"
            for s in fam.samples if s.name.endswith("_total")}


def frames_dropped(metrics: Metrics) -> dict[str, int]:
    """``{reason: frames}`` dropped before scoring, all streams together, from ``streamad_frames_dropped_total``
    (``backpressure``: a live stream's ingress queue was full; ``rate_cap``: over the stream's ``max_fps``)."""
    out: dict[str, int] = {}
    for fam in metrics.registry.collect():
        if fam.name == "streamad_frames_dropped":
            for s in fam.samples:
                if s.name.endswith("_total") and s.value:
                    out[s.labels["reason"]] = out.get(s.labels["reason"], 0) + int(s.value)
    return out
