"""``streamad bench CONFIG``: run a pipeline's streams (``--streams N`` copies side by side) through its operators
with a fitted model, as ``streamad eval`` does but without sinks, and measure:

* frames/s end to end (delivered scored frames / wall seconds, all streams together) and per stream copy;
* each operator stage's mean time per message (the ``streamad_stage_latency_seconds`` histogram) and its CPU share:
  the CPU seconds of the stage's thread in operator calls (``streamad_stage_cpu_seconds_total``) over the process's
  CPU seconds in the run. The rest (``elsewhere``) is reading and decoding in the source threads, delivery, the
  runtime, and the native thread pools (OpenVINO, torch, OpenCV) that a stage's call waits on;
* peak resident memory (MiB);
* end-to-end latency per scored frame (delivery time minus the frame's ``wall_time``, seconds), p50 / p99. With
  ``realtime`` the files are paced at their frame rate as a camera delivers them, so the latency is a live stream's;
  without it the sources read as fast as the pipeline takes frames and the latency includes queueing;
* when the streams are labelled, the frame-level AUROC (smoothed and raw) or the image AUROC, so a speed change is
  measured with its accuracy.

Nothing here is timed against a limit: the figures are printed (:meth:`BenchResult.table`) and written as JSON
(:meth:`BenchResult.to_json`).
"""

from __future__ import annotations

import os
import platform
import resource
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamad.bench.stage_metrics import frames_dropped, stage_cpu_seconds, stage_means
from streamad.config import PipelineConfig
from streamad.eval.evaluation import Evaluation
from streamad.frames import Scores
from streamad.metrics import Metrics
from streamad.runtime.jobs import require_model_dir
from streamad.runtime.run import RunBuilder

__all__ = ["BenchResult", "bench", "copies_of_streams"]


@dataclass
class BenchResult:
    """What :func:`bench` measured.

    Attributes:
        config: the pipeline config's path or name. streams: stream copies run side by side. sources: streams read
            (a dataset config expands to one stream per video, in every copy).
        frames: scored frames delivered. seconds: wall time of the run (model loading excluded). fps: frames / s.
        fps_per_copy: ``fps / streams``.
        stages: ``{stage: {"ms_per_message", "messages", "cpu_share"}}`` in pipeline order (messages: every frame
            and every stream's end).
        cpu: CPU seconds of the run: ``process`` (all threads), ``stages`` (the stages' own threads),
            ``elsewhere`` (the difference, module doc).
        peak_rss_mib: peak resident memory of the process, MiB.
        latency_ms: ``{"p50", "p99", "max"}`` end-to-end latency in milliseconds.
        realtime: the files were paced at their frame rate, or every stream is live (a camera paces itself).
        accuracy: ``{"frame_auroc", "frame_auroc_raw"}`` or ``{"image_auroc", "pixel_auroc"}`` of labelled streams
            (empty otherwise). errors: per-stream errors.
        dropped: ``{reason: frames}`` dropped before scoring (``backpressure``: a live stream faster than the
            pipeline, ``runtime.live_policy``; ``rate_cap``: ``max_fps``); empty when none was.
        machine: processor, cores, load average at the start.
    """

    config: str
    streams: int
    sources: int
    frames: int
    seconds: float
    realtime: bool
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    peak_rss_mib: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def fps_per_copy(self) -> float:
        return self.fps / max(self.streams, 1)

    def to_json(self) -> dict[str, Any]:
        """Every field, plus ``fps`` and ``fps_per_copy``, as plain JSON types."""
        return {"config": self.config, "streams": self.streams, "sources": self.sources, "frames": self.frames,
                "seconds": round(self.seconds, 3), "fps": round(self.fps, 2),
                "fps_per_copy": round(self.fps_per_copy, 2), "realtime": self.realtime, "stages": self.stages,
                "cpu_seconds": {k: round(v, 3) for k, v in self.cpu.items()},
                "peak_rss_mib": round(self.peak_rss_mib, 1), "latency_ms": self.latency_ms,
                "accuracy": self.accuracy, "errors": self.errors, "machine": self.machine,
                "dropped": self.dropped}

    def table(self) -> str:
        """The figures as text: a summary line, the stage table and the latency / memory / accuracy lines."""
        m = self.machine
        lines = [f"{self.config}: {self.streams} cop{'y' if self.streams == 1 else 'ies'} of the streams "
                 f"({self.sources} streams), {self.frames} frames in {self.seconds:.2f} s = {self.fps:.1f} frames/s "
                 f"end to end ({self.fps_per_copy:.1f} per copy){', paced (realtime)' if self.realtime else ''}",
                 f"machine: {m.get('processor')}, {m.get('cores')} cores, load average {m.get('load_average')}",
                 "", f"{'stage':<24}{'ms/message':>12}{'messages':>10}{'CPU share':>11}"]
        for name, s in self.stages.items():
            lines.append(f"{name:<24}{s['ms_per_message']:12.3f}{int(s['messages']):10d}{s['cpu_share']:10.1%}")
        total = self.cpu.get("process", 0.0)
        if total > 0:
            lines.append(f"{'elsewhere':<24}{'':>12}{'':>10}{self.cpu.get('elsewhere', 0.0) / total:10.1%}"
                         "  (sources and decoding, delivery, native thread pools)")
        lines.append(f"\nCPU {total:.1f} s over {self.seconds:.1f} s wall = {total / max(self.seconds, 1e-9):.2f} "
                     f"cores busy; peak memory {self.peak_rss_mib:.0f} MiB")
        if self.latency_ms:
            lines.append(f"end-to-end latency p50 {self.latency_ms['p50']:.1f} ms, p99 {self.latency_ms['p99']:.1f} "
                         f"ms, max {self.latency_ms['max']:.1f} ms"
                         + ("" if self.realtime else " (not paced: includes queueing; use --realtime)"))
        if self.dropped:
            lines.append("dropped frames: " + ", ".join(f"{n} ({reason})" for reason, n in self.dropped.items()))
        if self.accuracy:
            lines.append("accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in self.accuracy.items()))
        for sid, err in self.errors.items():
            lines.append(f"stream {sid} failed: {err}")
        return "\n".join(lines)


def copies_of_streams(cfg: PipelineConfig, copies: int, realtime: bool = False,
                      max_frames: int | None = None) -> list[Any]:
    """The config's stream configs, ``copies`` times: copy ``k`` (1-based) of a stream gets the id
    ``<id or kind><i>@k`` (one copy keeps the ids), ``realtime`` and ``max_frames`` set when given.

    Raises:
        ValueError: ``copies`` below 1, or a config without streams.
    """
    if copies < 1:
        raise ValueError(f"bench: --streams must be at least 1, got {copies}")
    if not cfg.streams:
        raise ValueError(f"{cfg.path or cfg.name}: streams: nothing to benchmark (the list is empty)")
    out = []
    for k in range(1, copies + 1):
        for i, c in enumerate(cfg.streams):
            update: dict[str, Any] = {}
            if copies > 1:
                update["id"] = f"{c.id or f'{c.kind}{i}'}@{k}"
            if realtime:
                update["realtime"] = True
            if max_frames is not None:
                update["max_frames"] = max_frames
            out.append(c.model_copy(update=update))
    return out


class _Latency:
    """Consumer: the end-to-end latency of every scored frame (seconds), and the run's labelled records."""

    def __init__(self, evaluation: Evaluation) -> None:
        self.evaluation = evaluation
        self.seconds: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, msg: Any) -> None:
        if isinstance(msg, Scores):
            with self.lock:
                self.seconds.append(time.time() - msg.wall_time)
        self.evaluation(msg)


def _accuracy(evaluation: Evaluation, post: Any, fps: float) -> dict[str, float]:
    if len(evaluation) == 0 or not evaluation.both_classes:
        return {}
    report = evaluation.report(post, fps)
    if evaluation.images is not None:
        return {"image_auroc": report.image_auroc, **({"pixel_auroc": report.pixel_auroc}
                                                       if report.pixel_auroc is not None else {})}
    return {"frame_auroc": report.frame_auroc, "frame_auroc_raw": report.frame_auroc_raw}


def bench(cfg: PipelineConfig, model_dir: Path | None = None, streams: int = 1, realtime: bool = False,
          max_frames: int | None = None) -> BenchResult:
    """Run the config's streams (``streams`` copies) with the fitted model and measure them (module doc).

    Args:
        cfg: a pipeline config. model_dir: the fitted model (default: the config's ``model_dir``).
        streams: copies of the config's streams run side by side. realtime: pace files at their frame rate.
        max_frames: frames per stream (``None``: the whole files).

    Raises:
        ModelError: no fitted model. ConfigError, DataNotFoundError: streams that cannot be built.
        ValueError: as :func:`copies_of_streams`.
    """
    d = require_model_dir(cfg, model_dir)
    metrics = Metrics()
    builder = RunBuilder(cfg, "eval", d, metrics)
    configs = copies_of_streams(cfg, streams, realtime, max_frames)
    sources = builder.sources(configs, "streams")
    images = all(getattr(c, "image_dataset", False) for c in configs)
    latency = _Latency(Evaluation(images))
    run = builder.build(sources, consumers=[latency])
    machine = {"processor": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "load_average": round(os.getloadavg()[0], 2)}
    t0 = os.times()
    stats = run.run()
    t1 = os.times()
    process_cpu = (t1.user + t1.system) - (t0.user + t0.system)
    stage_cpu = stage_cpu_seconds(metrics)
    cpu = {"process": process_cpu, "stages": sum(stage_cpu.values()),
           "elsewhere": max(process_cpu - sum(stage_cpu.values()), 0.0)}
    stages = {name: {"ms_per_message": round(mean * 1e3, 3), "messages": n,
                     "cpu_share": round(stage_cpu.get(name, 0.0) / max(process_cpu, 1e-9), 4)}
              for name, (mean, n) in stage_means(metrics).items()}
    lat = np.asarray(latency.seconds) * 1e3
    latency_ms = ({"p50": round(float(np.percentile(lat, 50)), 2), "p99": round(float(np.percentile(lat, 99)), 2),
                   "max": round(float(lat.max()), 2)} if len(lat) else {})
    return BenchResult(config=str(cfg.path or cfg.name), streams=streams, sources=len(sources),
                       frames=stats.delivered, seconds=stats.seconds,
                       realtime=realtime or all(getattr(src, "live", False) for src in sources), stages=stages, cpu=cpu,
                       peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                       latency_ms=latency_ms, accuracy=_accuracy(latency.evaluation, run.postprocess, stats.fps),
                       errors=dict(stats.errors), machine=machine, dropped=frames_dropped(metrics))
