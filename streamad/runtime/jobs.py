"""The three jobs a pipeline config supports, all on the one dataflow engine (:class:`Pipeline`):

* :func:`fit`    run the training streams through the operators before ``score``, fit the model, then score the
                 validation streams to fit min-max statistics and the image threshold; write the model directory.
* :func:`evaluate` score labelled streams through the whole operator chain and compute frame-level metrics.
* :func:`serve`  run the pipeline's streams into its sinks until files end or a signal stops it.

Because every job uses the same operators and engine, a file gives the same scores whichever job scores it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from streamad.config import PipelineConfig
from streamad.errors import ConfigError, ModelError
from streamad.eval.report import EvalReport, build_report, write_plots
from streamad.frames import Clip, Scores
from streamad.metrics import Metrics
from streamad.models.components.thresholds import f1_adaptive_threshold
from streamad.models.store import save_model
from streamad.operators.score import ModelHandle
from streamad.parts import BuildContext, PartConfig, Sink, Source
from streamad.registry import MODELS, SINKS
from streamad.runtime.pipeline import Pipeline, RunStats, build_stages

__all__ = ["fit", "evaluate", "serve", "FitResult", "ServeResult", "build_sources", "default_model_dir"]

log = logging.getLogger("streamad.jobs")


def default_model_dir(cfg: PipelineConfig) -> Path:
    """``model_dir`` of the config, else ``runs/<name>/model`` in the working directory."""
    if cfg.model_dir is not None:
        return cfg.model_dir
    return Path("runs") / cfg.model.name / "model"


def build_sources(configs: Sequence[PartConfig], ctx: BuildContext, where: str) -> list[Source]:
    """All streams of a list of stream configs (datasets expand to one stream per video)."""
    out: list[Source] = []
    for i, c in enumerate(configs):
        out.extend(c.build(ctx, f"{where}[{i}]"))  # type: ignore[attr-defined]
    return out


def _context(cfg: PipelineConfig, mode: str, model_dir: Path | None, metrics: Metrics | None = None) -> BuildContext:
    return BuildContext(config_path=cfg.path, data_root=cfg.data_root, model_dir=model_dir, mode=mode,
                        metrics=metrics or Metrics())


def _index_of(cfg: PipelineConfig, kind: str) -> int | None:
    for i, op in enumerate(cfg.operators):
        if op.kind == kind:
            return i
    return None


def _pipeline(cfg: PipelineConfig, sources: list[Source], ops: Sequence[PartConfig], ctx: BuildContext,
              sinks: Sequence[Sink] = (), consumers: Sequence[Callable[[Any], None]] = ()) -> Pipeline:
    r = cfg.runtime
    return Pipeline(sources, build_stages(ops, ctx), ctx.metrics or Metrics(), sinks=sinks, consumers=consumers,
                    queue_size=r.queue_size, live_policy=r.live_policy, max_active_streams=r.max_active_streams,
                    grace_period_s=r.grace_period_s)


def _progress(desc: str, quiet: bool) -> tqdm:
    return tqdm(desc=desc, unit="frame", disable=quiet, dynamic_ncols=True, leave=True)


@dataclass
class FitResult:
    """Outcome of :func:`fit`: where the model went and what it was fitted on."""

    model_dir: Path
    train_clips: int
    train_regions: int
    validation_frames: int
    postprocess: dict[str, float]
    seconds: float
    errors: dict[str, str] = field(default_factory=dict)


def fit(cfg: PipelineConfig, model_dir: Path | None = None, quiet: bool = False) -> FitResult:
    """Fit the model of the config's ``score`` operator and its post-processing statistics.

    1. Training streams (``fit.train``) go through the operators before ``score``; the clips' features and video
       names are collected and the model is fitted (grouped by video, as AI-VAD groups by video path).
    2. Validation streams (``fit.validation``) go through the operators up to ``threshold``; their frame scores give
       the min-max statistics and the image threshold (F1-adaptive on their labels, or ``fit.threshold.value``).
       Without validation streams, min and max come from the training streams and the threshold must be manual.

    Raises:
        ConfigError: no ``fit`` section, no ``score`` operator, or a threshold method the data cannot support.
        ValueError: the model found nothing to fit on.
    """
    t0 = time.perf_counter()
    if cfg.fit is None:
        raise ConfigError(f"{cfg.path}: no 'fit' section: add fit.train (training streams) to fit a model")
    si = _index_of(cfg, "score")
    if si is None:
        raise ConfigError(f"{cfg.path}: operators: no 'score' operator, so there is no model to fit")
    ti = _index_of(cfg, "threshold")
    model_dir = Path(model_dir) if model_dir is not None else default_model_dir(cfg)
    score_cfg = cfg.operators[si]
    model_cls = MODELS.get(score_cfg.model.kind)
    model = model_cls(score_cfg.model)

    ctx = _context(cfg, "fit", None)
    train_sources = build_sources(cfg.fit.train, ctx, "fit.train")
    feats: list[dict[str, np.ndarray]] = []
    groups: list[str] = []
    bar = _progress("fit: extract features", quiet)

    def collect(msg: Any) -> None:
        if isinstance(msg, Clip):
            feats.append({k: v for k, v in msg.features.items()})
            groups.append(msg.target.video or msg.stream_id)
            bar.update(1 + len(msg.extra_targets))

    stats = _pipeline(cfg, train_sources, cfg.operators[:si], ctx, consumers=[collect]).run()
    bar.close()
    if stats.errors:
        for sid, err in stats.errors.items():
            log.error("training stream %s failed: %s", sid, err)
    model.fit(feats, groups)
    n_regions = int(sum(len(next(iter(f.values()))) if f else 0 for f in feats))

    # post-processing statistics on the validation streams (or the training streams)
    ctx.shared["model"] = ModelHandle(model, model.kind, model.version, {})
    thr_cfg = cfg.fit.threshold
    val_cfgs = cfg.fit.validation or cfg.fit.train
    where = "fit.validation" if cfg.fit.validation else "fit.train"
    if not cfg.fit.validation and thr_cfg.method == "f1_adaptive":
        raise ConfigError(f"{cfg.path}: fit.threshold.method is f1_adaptive but fit.validation lists no labelled "
                          f"streams: add fit.validation, or use method: manual with a value")
    records: list[Scores] = []
    bar = _progress("fit: calibrate", quiet)

    def collect_scores(msg: Any) -> None:
        if isinstance(msg, Scores):
            records.append(msg)
            bar.update(1)

    end = ti if ti is not None else len(cfg.operators)
    _pipeline(cfg, build_sources(val_cfgs, ctx, where), cfg.operators[:end], ctx, consumers=[collect_scores]).run()
    bar.close()
    if not records:
        raise ValueError(f"{where}: no frame was scored, so no min-max statistics can be fitted")
    scores = np.array([r.score for r in records], np.float64)
    if thr_cfg.method == "manual":
        if thr_cfg.value is None:
            raise ConfigError(f"{cfg.path}: fit.threshold.method is manual: give fit.threshold.value (raw units)")
        threshold = float(thr_cfg.value)
    else:
        labels = np.array([-1 if r.label is None else r.label for r in records])
        if (labels < 0).any():
            raise ConfigError(f"{cfg.path}: {where}: some validation frames have no ground-truth label; "
                              "f1_adaptive needs a labelled split")
        threshold = f1_adaptive_threshold(scores, labels)
    post = {"min": float(scores.min()), "max": float(scores.max()), "image_threshold": threshold,
            "threshold_method": thr_cfg.method, "statistics_from": where, "frames": int(len(scores))}
    extra = {
        "pipeline": {"name": cfg.model.name, "operators": [o.model_dump(mode="json") for o in cfg.operators]},
        "fit": {"train_clips": len(feats), "train_regions": n_regions, "train_streams": len(train_sources),
                "seconds": round(time.perf_counter() - t0, 2)},
    }
    save_model(model_dir, model, post, extra)
    return FitResult(model_dir, len(feats), n_regions, len(records), post, time.perf_counter() - t0, stats.errors)


def _require_model_dir(cfg: PipelineConfig, model_dir: Path | None) -> Path:
    d = Path(model_dir) if model_dir is not None else default_model_dir(cfg)
    if not (d / "model.json").is_file():
        raise ModelError(f"{d}: no fitted model here; run `streamad fit {cfg.path or 'CONFIG'} -o {d}` first")
    return d


class _ScoreRecorder:
    """Consumer that keeps the scores of labelled frames for an end-of-run report."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.unlabelled = 0

    def __call__(self, msg: Any) -> None:
        if isinstance(msg, Scores):
            if msg.label is None:
                self.unlabelled += 1
                return
            self.records.append({"stream_id": msg.stream_id, "index": msg.index, "raw_score": msg.raw_score,
                                 "score": msg.score, "label": msg.label})


def evaluate(cfg: PipelineConfig, model_dir: Path | None = None, plots_dir: Path | None = None,
             quiet: bool = False, metrics: Metrics | None = None) -> tuple[EvalReport, RunStats]:
    """Score the labelled streams (``eval.streams``, else ``streams``) and report frame-level metrics.

    Raises:
        ModelError: no fitted model. ValueError: the streams carry no labels.
    """
    d = _require_model_dir(cfg, model_dir)
    ctx = _context(cfg, "eval", d, metrics)
    stream_cfgs = cfg.eval.streams if cfg.eval is not None else cfg.streams
    sources = build_sources(stream_cfgs, ctx, "eval.streams" if cfg.eval is not None else "streams")
    rec = _ScoreRecorder()
    bar = _progress("eval", quiet)
    pipe = _pipeline(cfg, sources, cfg.operators, ctx, consumers=[rec, lambda m: bar.update(isinstance(m, Scores))])
    stats = pipe.run()
    bar.close()
    if not rec.records:
        raise ValueError("no labelled frame was scored: eval needs streams with ground truth (a dataset test split)")
    threshold = _threshold_of(pipe)
    rec.records.sort(key=lambda r: (r["stream_id"], r["index"]))
    report = build_report(rec.records, threshold, stats.fps)
    if plots_dir is not None:
        write_plots(rec.records, threshold, plots_dir)
    return report, stats


def _threshold_of(pipe: Pipeline) -> float:
    for st in pipe.stages:
        if st.cls.kind == "threshold":
            return float(st.shared.image_threshold)
    return float("nan")


@dataclass
class ServeResult:
    """Outcome of :func:`serve`: run statistics and, when the streams were labelled, the frame-level report."""

    stats: RunStats
    report: EvalReport | None


def serve(cfg: PipelineConfig, model_dir: Path | None = None, stop: threading.Event | None = None,
          metrics: Metrics | None = None) -> ServeResult:
    """Run the config's streams through its operators into its sinks until every file stream ended or ``stop``
    is set (then drain for ``runtime.grace_period_s`` and flush the sinks).

    When the streams carry ground truth (a dataset test split) the result includes the frame-level report.
    """
    d = _require_model_dir(cfg, model_dir)
    ctx = _context(cfg, "serve", d, metrics)
    sources = build_sources(cfg.streams, ctx, "streams")
    if not sources:
        raise ConfigError(f"{cfg.path}: streams: nothing to serve (the list is empty)")
    sinks: list[Sink] = []
    try:
        for i, sc in enumerate(cfg.sinks):
            sinks.append(SINKS.get(sc.kind)(sc, ctx))
    except Exception:
        for s in sinks:
            s.close()
        raise
    rec = _ScoreRecorder()
    pipe = _pipeline(cfg, sources, cfg.operators, ctx, sinks=sinks, consumers=[rec])
    stats = pipe.run(stop)
    report = None
    if rec.records:
        labels = {r["label"] for r in rec.records}
        if labels == {0, 1}:
            rec.records.sort(key=lambda r: (r["stream_id"], r["index"]))
            report = build_report(rec.records, _threshold_of(pipe), stats.fps)
    return ServeResult(stats, report)
