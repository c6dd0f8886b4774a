"""The three jobs a pipeline config supports, all on the one dataflow engine (:class:`Pipeline`):

* :func:`fit`    run the training streams through the operators before the model operator (``score`` or
                 ``image_model``), fit the model, then score the validation streams to fit min-max statistics and
                 the thresholds; write the model directory.
* :func:`evaluate` score labelled streams through the whole operator chain and compute frame-level metrics
                 (image datasets: image- and pixel-level metrics).
* :func:`serve`  run the pipeline's streams into its sinks until files end or a signal stops it (live streams,
                 health endpoints, config reload, frame-rate caps).

Because every job uses the same operators and engine, a file gives the same scores whichever job scores it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from streamad.config import PipelineConfig
from streamad.errors import ConfigError, ModelError
from streamad.eval.image_plots import write_image_plots
from streamad.eval.image_report import ImageEvalReport, ImageRecorder, build_image_report
from streamad.eval.report import EvalReport, build_report, write_plots
from streamad.frames import Clip, Scores
from streamad.metrics import Metrics
from streamad.models.store import read_metadata, save_model
from streamad.parts import BuildContext, Operator, PartConfig, Sink, Source
from streamad.registry import SINKS
from streamad.runtime.fitters import fitter_for, model_operator
from streamad.runtime.http import Health, OpsServer
from streamad.runtime.pipeline import Pipeline, RunStats, StageSpec, build_stages
from streamad.runtime.reload import ConfigReloader, StreamSet, other_sections_changed

if TYPE_CHECKING:
    from streamad.runtime.group import GroupOptions

__all__ = ["fit", "evaluate", "serve", "FitResult", "ServeResult", "build_sources", "default_model_dir",
           "calibration_frames"]

log = logging.getLogger("streamad.jobs")


def default_model_dir(cfg: PipelineConfig) -> Path:
    """``model_dir`` of the config, else ``runs/<name>/model`` in the working directory."""
    if cfg.model_dir is not None:
        return cfg.model_dir
    return Path("runs") / cfg.name / "model"


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
              sinks: Sequence[Sink] = (), consumers: Sequence[Callable[[Any], None]] = (),
              **options: Any) -> Pipeline:
    r = cfg.runtime
    return Pipeline(sources, build_stages(ops, ctx), ctx.metrics or Metrics(), sinks=sinks, consumers=consumers,
                    queue_size=r.queue_size, live_policy=r.live_policy, max_active_streams=r.max_active_streams,
                    grace_period_s=r.grace_period_s, **options)


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
    """Fit the model of the config's model operator and its post-processing statistics.

    The model operator is ``score`` (video models) or ``image_model`` (image models); its fitter
    (:mod:`streamad.runtime.fitters`) says what to collect and how to fit.

    1. Training streams (``fit.train``) go through the operators before the model operator; the fitter collects
       what reaches it (video: the clips' features and video names, as AI-VAD groups by video path; image: the
       frames at the model's input size) and fits the model. Gradient-trained image models also get the
       validation streams (early stopping).
    2. Validation streams (``fit.validation``) go through the operators up to ``threshold``; their scores give
       the min-max statistics and the image threshold (F1-adaptive on their labels, or ``fit.threshold.value``);
       image models add the pixel threshold (F1-adaptive on the masks). Without validation streams, min and max
       come from the training streams and the threshold must be manual.

    Raises:
        ConfigError: no ``fit`` section, no model operator, or a threshold method the data cannot support.
        ValueError: the model found nothing to fit on.
    """
    t0 = time.perf_counter()
    if cfg.fit is None:
        raise ConfigError(f"{cfg.path}: no 'fit' section: add fit.train (training streams) to fit a model")
    mi = model_operator(cfg.operators)
    if mi is None:
        raise ConfigError(f"{cfg.path}: operators: no 'score' or 'image_model' operator, so there is no model to "
                          f"fit")
    ti = _index_of(cfg, "threshold")
    model_dir = Path(model_dir) if model_dir is not None else default_model_dir(cfg)
    thr_cfg = cfg.fit.threshold
    if not cfg.fit.validation and thr_cfg.method == "f1_adaptive":
        raise ConfigError(f"{cfg.path}: fit.threshold.method is f1_adaptive but fit.validation lists no labelled "
                          f"streams: add fit.validation, or use method: manual with a value")
    if thr_cfg.method == "manual" and thr_cfg.value is None:
        raise ConfigError(f"{cfg.path}: fit.threshold.method is manual: give fit.threshold.value (raw units)")
    val_cfgs = cfg.fit.validation or cfg.fit.train
    where = "fit.validation" if cfg.fit.validation else "fit.train"
    ctx = _context(cfg, "fit", None)
    fitter = fitter_for(cfg.operators[mi], ctx)
    try:
        train_sources = build_sources(cfg.fit.train, ctx, "fit.train")
        stats = _feed(cfg, train_sources, cfg.operators[:mi], ctx, fitter.collect, "fit: read training data", quiet)
        for sid, err in stats.errors.items():
            log.error("training stream %s failed: %s", sid, err)
        if fitter.needs_validation and cfg.fit.validation:
            _feed(cfg, build_sources(cfg.fit.validation, ctx, "fit.validation"), cfg.operators[:mi], ctx,
                  fitter.collect_validation, "fit: read validation data", quiet)
        model, fit_stats = fitter.fit(progress=not quiet)
        # post-processing statistics on the validation streams (or the training streams)
        ctx.shared["model"] = fitter.handle(model)

        def observe(msg: Any) -> int:
            fitter.observe(msg)
            return int(isinstance(msg, Scores))

        end = ti if ti is not None else len(cfg.operators)
        _feed(cfg, build_sources(val_cfgs, ctx, where), cfg.operators[:end], ctx, observe, "fit: calibrate", quiet)
        post = fitter.postprocess(thr_cfg.method, thr_cfg.value, where)
        extra = {
            "pipeline": {"name": cfg.name, "operators": [o.model_dump(mode="json") for o in cfg.operators]},
            "fit": {**fit_stats, "train_streams": len(train_sources), "seconds": round(time.perf_counter() - t0, 2)},
        }
        save_model(model_dir, model, post, extra)
    finally:
        fitter.close()
    return FitResult(model_dir, int(fit_stats.get("train_clips", fitter.samples)),
                     int(fit_stats.get("train_regions", 0)), int(post["frames"]), post, time.perf_counter() - t0,
                     stats.errors)


class _PassThrough(Operator):
    """Hands messages on unchanged: the stage of a fit pipeline whose model operator comes first."""

    kind = "read"

    def process(self, msg: Any) -> list[Any]:
        return [msg]


def _feed(cfg: PipelineConfig, sources: list[Source], ops: Sequence[PartConfig], ctx: BuildContext,
          consumer: Callable[[Any], int], desc: str, quiet: bool, stop: threading.Event | None = None) -> RunStats:
    """Run ``sources`` through ``ops`` (or straight through when there are none) into ``consumer``, which returns
    how many frames a message stood for (the progress bar's unit); ``stop`` ends the run early."""
    stages = build_stages(ops, ctx) or [StageSpec("read", _PassThrough, PartConfig(kind="read"))]
    r = cfg.runtime
    bar = _progress(desc, quiet)
    pipe = Pipeline(sources, stages, ctx.metrics or Metrics(), consumers=[lambda m: bar.update(consumer(m))],
                    queue_size=r.queue_size, live_policy=r.live_policy, max_active_streams=r.max_active_streams,
                    grace_period_s=r.grace_period_s)
    try:
        return pipe.run(stop)
    finally:
        bar.close()


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
             quiet: bool = False, metrics: Metrics | None = None
             ) -> tuple[EvalReport | ImageEvalReport, RunStats]:
    """Score the labelled streams (``eval.streams``, else ``streams``) and report frame-level metrics, or, when
    every stream is an image dataset (``folder``, ``mvtec``, ``magnetic_tile``), image- and pixel-level metrics
    (:mod:`streamad.eval.image_report`).

    Raises:
        ModelError: no fitted model. ValueError: the streams carry no labels.
    """
    d = _require_model_dir(cfg, model_dir)
    ctx = _context(cfg, "eval", d, metrics)
    stream_cfgs = cfg.eval.streams if cfg.eval is not None else cfg.streams
    sources = build_sources(stream_cfgs, ctx, "eval.streams" if cfg.eval is not None else "streams")
    images = bool(stream_cfgs) and all(getattr(c, "image_dataset", False) for c in stream_cfgs)
    rec: _ScoreRecorder | ImageRecorder = ImageRecorder() if images else _ScoreRecorder()
    bar = _progress("eval", quiet)
    pipe = _pipeline(cfg, sources, cfg.operators, ctx, consumers=[rec, lambda m: bar.update(isinstance(m, Scores))])
    stats = pipe.run()
    bar.close()
    if not rec.records:
        raise ValueError("no labelled frame was scored: eval needs streams with ground truth (a dataset test split)")
    if isinstance(rec, ImageRecorder):
        post = _postprocess_of(pipe, d)
        rec.records.sort(key=lambda r: (r.stream_id, r.index))
        image_report = build_image_report(rec.records, post["pixel_threshold"], stats.fps)
        if plots_dir is not None:
            write_image_plots(rec.records, post["pixel_threshold"], post["min"], post["max"], plots_dir)
        return image_report, stats
    threshold = _threshold_of(pipe)
    rec.records.sort(key=lambda r: (r["stream_id"], r["index"]))
    report = build_report(rec.records, threshold, stats.fps)
    if plots_dir is not None:
        write_plots(rec.records, threshold, plots_dir)
    return report, stats


def _postprocess_of(pipe: Pipeline, model_dir: Path) -> dict[str, float]:
    """``min``, ``max`` and ``pixel_threshold`` (raw units) the run used: the ``threshold`` stage's (with its
    overrides), else ``model.json``'s; the pixel threshold falls back to the image threshold."""
    for st in pipe.stages:
        if st.cls.kind == "threshold":
            s = st.shared
            pix = s.pixel_threshold if s.pixel_threshold is not None else s.image_threshold
            return {"min": s.min, "max": s.max, "pixel_threshold": float(pix)}
    p = read_metadata(model_dir).get("postprocess") or {}
    try:
        return {"min": float(p["min"]), "max": float(p["max"]),
                "pixel_threshold": float(p.get("pixel_threshold", p["image_threshold"]))}
    except KeyError as exc:
        raise ModelError(f"{model_dir}/model.json: postprocess lacks {exc.args[0]!r}; refit the model") from None


def calibration_frames(cfg: PipelineConfig, limit: int, quiet: bool = True) -> list[np.ndarray]:
    """Up to ``limit`` frames ``(H, W, 3) uint8`` of the config's ``fit.train`` streams as they reach its model
    operator (for int8 calibration by ``streamad export``).

    Raises:
        ConfigError: no ``fit`` section or no model operator.
    """
    if cfg.fit is None:
        raise ConfigError(f"{cfg.path}: no 'fit' section: calibration frames come from fit.train")
    mi = model_operator(cfg.operators)
    if mi is None:
        raise ConfigError(f"{cfg.path}: operators: no 'score' or 'image_model' operator")
    ctx = _context(cfg, "fit", None)
    frames: list[np.ndarray] = []
    stop = threading.Event()

    def take(msg: Any) -> int:
        target = msg.target if isinstance(msg, Clip) else msg
        image = getattr(target, "image", None)
        if image is None or len(frames) >= limit:
            return 0
        frames.append(image)
        if len(frames) >= limit:
            stop.set()
        return 1

    _feed(cfg, build_sources(cfg.fit.train, ctx, "fit.train"), cfg.operators[:mi], ctx, take,
          "export: calibration frames", quiet, stop)
    return frames


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


def _close_outputs(sinks: list[Sink], ops: OpsServer | None) -> None:
    """Close the sinks and stop the HTTP endpoint of a serve run that failed to start."""
    for s in sinks:
        s.close()
    if ops is not None:
        ops.stop()


def serve(cfg: PipelineConfig, model_dir: Path | None = None, stop: threading.Event | None = None,
          metrics: Metrics | None = None, reload_requests: threading.Event | None = None,
          group: "GroupOptions | None" = None) -> ServeResult:
    """Run the config's streams through its operators into its sinks until every file stream ended or ``stop``
    is set (then drain and flush the sinks within ``runtime.grace_period_s``).

    With a live stream in the config the run goes on after every stream ended, until ``stop``. While it runs,
    the config file is re-read when ``reload_requests`` is set (SIGHUP) or, with ``runtime.watch_config``, when
    the file changes: stream changes are applied without touching unchanged streams (:mod:`streamad.runtime.reload`).
    ``runtime.http`` serves ``/healthz``, ``/readyz`` and ``/metrics`` (:mod:`streamad.runtime.http`); so does a
    ``prometheus`` sink. Each stream's ``every_nth`` / ``max_fps`` frame-rate cap applies.

    When the streams carry ground truth (a dataset test split) the result includes the frame-level report.

    With ``group`` the process is one worker of a group (:mod:`streamad.runtime.group`): it starts with no stream,
    serves the streams of the control-topic partitions the Kafka group assigns to it, and runs until ``stop``;
    config reload is off.

    Raises:
        ModelError: no fitted model. ConfigError: no streams, a stream or sink that cannot be built, an
            ``runtime.http`` address that cannot be bound. DataNotFoundError: a dataset is missing.
            GroupError: the group's control topic cannot be set up.
    """
    d = _require_model_dir(cfg, model_dir)
    ctx = _context(cfg, "serve", d, metrics)
    health = Health()
    ctx.shared["http_routes"] = health.routes()
    streams = StreamSet()
    built = streams.build(cfg.streams, ctx, "streams") if group is None else []  # group: streams come later
    if not built and group is None:
        raise ConfigError(f"{cfg.path}: streams: nothing to serve (the list is empty)")
    sources = [src for src, _ in built]
    r = cfg.runtime
    ops = _ops_server(cfg, health, ctx)  # up first: /healthz answers "starting" while the model loads
    sinks: list[Sink] = []
    try:
        for sc in cfg.sinks:
            sinks.append(SINKS.get(sc.kind)(sc, ctx))
        rec = _ScoreRecorder()
        pipe = _pipeline(cfg, sources, cfg.operators, ctx, sinks=sinks, consumers=[rec],
                         rate_caps={src.stream_id: cap for src, cap in built if cap is not None},
                         persistent=group is not None or any(src.live for src in sources), batch_size=r.batch_size)
    except Exception:
        _close_outputs(sinks, ops)
        raise
    health.attach(pipe)
    reloader = None
    worker = None  # --group (streamad.runtime.group): streams follow the Kafka group's partition assignment
    if group is not None:
        from streamad.runtime.group import GroupWorker

        try:
            worker = GroupWorker(group, cfg, streams, pipe, lambda: _context(cfg, "serve", d, ctx.metrics),
                                 ctx.metrics or Metrics()).start()
        except Exception:
            _close_outputs(sinks, ops)
            raise
    if cfg.path is not None and group is None:
        current = [cfg]

        def apply(new: PipelineConfig) -> None:
            plan = streams.plan(new.streams, _context(new, "serve", d, ctx.metrics), "streams")
            changed = other_sections_changed(current[0], new)
            if changed:
                log.warning("config reload: %s changed; restart streamad to apply that (stream changes apply now)",
                            ", ".join(changed))
            streams.apply(plan, pipe)
            current[0] = new

        reloader = ConfigReloader(cfg.path, apply, reload_requests,
                                  r.watch_interval_s if r.watch_config else None).start()
    try:
        stats = pipe.run(stop)
    finally:
        if worker is not None:
            worker.stop()
        if reloader is not None:
            reloader.stop()
        if ops is not None:
            ops.stop()
    report = None
    if rec.records:
        labels = {r["label"] for r in rec.records}
        if labels == {0, 1}:
            rec.records.sort(key=lambda r: (r["stream_id"], r["index"]))
            report = build_report(rec.records, _threshold_of(pipe), stats.fps)
    return ServeResult(stats, report)


def _ops_server(cfg: PipelineConfig, health: Health, ctx: BuildContext) -> OpsServer | None:
    """The ``runtime.http`` endpoint, or ``None`` when it is not configured.

    Raises:
        ConfigError: the address cannot be bound.
    """
    h = cfg.runtime.http
    if h is None:
        return None
    try:
        return OpsServer(health, ctx.metrics or Metrics(), h.host, h.port)
    except OSError as e:
        raise ConfigError(f"{cfg.path}: runtime.http: cannot listen on {h.host}:{h.port} ({e}); set a free "
                          f"host/port") from e
