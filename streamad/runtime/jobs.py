"""The three jobs a pipeline config supports, all built by the one run builder (:mod:`streamad.runtime.run`) on
the one dataflow engine (:class:`~streamad.runtime.pipeline.Pipeline`):

* :func:`fit`    run the training streams through the operators before the model operator (the one whose class
                 ``holds_model``), fit the model, then score the validation streams to fit the post-processing
                 (min-max statistics and thresholds); write the model directory.
* :func:`evaluate` score labelled streams through the whole operator chain and report frame-level metrics
                 (image datasets: image- and pixel-level metrics), :mod:`streamad.eval.evaluation`.
* :func:`serve`  run the pipeline's streams into its sinks until files end or a signal stops it (live streams,
                 health endpoints, config reload, frame-rate caps).

Because every job uses the same builder, operators and engine, a file gives the same scores whichever job scores
it. The jobs read what the stages published (the model, the post-processing in effect) from the built run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager

import numpy as np

from streamad.config import PipelineConfig
from streamad.errors import ConfigError, ModelError
from streamad.eval.evaluation import Evaluation
from streamad.eval.image_report import ImageEvalReport
from streamad.eval.report import EvalReport
from streamad.frames import Clip, Scores
from streamad.metrics import Metrics
from streamad.models.label_free import AlertReplay
from streamad.models.postprocess import PostProcess
from streamad.models.store import save_model
from streamad.parts import Sink
from streamad.runtime.http import Health, OpsServer
from streamad.runtime.fit_checks import fit_model, require_enough
from streamad.runtime.fit_streams import expected_frames, prepare_fit_streams
from streamad.runtime.pipeline import RunStats
from streamad.runtime.reload import ConfigReloader, StreamSet, other_sections_changed
from streamad.runtime.run import RunBuilder, default_model_dir, progress_bar

if TYPE_CHECKING:
    from streamad.runtime.group import GroupOptions
    from streamad.runtime.model_watch import ModelWatcher

__all__ = ["fit", "evaluate", "serve", "FitResult", "ServeResult", "default_model_dir", "calibration_frames",
           "require_model_dir"]

log = logging.getLogger("streamad.jobs")


@dataclass
class FitResult:
    """Outcome of :func:`fit`: where the model went, what it was fitted on and the fitted post-processing."""

    model_dir: Path
    train_clips: int
    train_regions: int
    validation_frames: int
    postprocess: PostProcess
    seconds: float
    errors: dict[str, str] = field(default_factory=dict)


def fit(cfg: PipelineConfig, model_dir: Path | None = None, quiet: bool = False, refresh: bool = False,
        cpu_slot: ContextManager[Any] | None = None) -> FitResult:
    """Fit the model of the config's model operator and its post-processing.

    The model operator is the one whose class ``holds_model`` (a video or an image model); its fitter
    (:class:`~streamad.models.fitting.ModelFitter`) says what to collect and how to fit.

    1. Training streams (``fit.train``) go through the operators before the model operator; the fitter collects
       what reaches it (video: the clips' features and video names, as AI-VAD groups by video path; image: the
       frames at the model's input size) and fits the model. Gradient-trained image models also get the
       validation streams (early stopping).
    2. Validation streams (``fit.validation``) go through the operators up to the one that applies the
       post-processing (its class ``applies_postprocess``); their scores give the min-max statistics and the
       image threshold (F1-adaptive on their labels, ``fit.threshold.value``, or label-free on held-out normal
       footage: ``quantile`` / ``false_alarm_rate``, :mod:`streamad.models.label_free`); image models add the
       pixel threshold (F1-adaptive on the masks). Without validation streams, min and max come from the training
       streams and the threshold must be manual.

    Live streams (``kind: live``, bounded by ``duration_s`` / ``max_frames``) are recorded first and fitted on as
    files (:mod:`streamad.runtime.fit_streams`; kept under ``fit.record_dir`` and listed in ``model.json``); with
    ``refresh`` nothing is recorded and each live stream's newest recording under ``fit.record_dir`` is used.
    ``cpu_slot`` (a semaphore, say) is held while the footage is processed, after the recording: ``fit
    --per-stream`` records every camera at once and fits as many at once as there are cores.

    Raises:
        ConfigError: no ``fit`` section, no model operator, a threshold method the data cannot support, an
            unbounded live stream, or (``refresh``) no recording to refit on.
        SourceError: a live training or validation stream could not be recorded.
        ValueError: the model found nothing (or too little) to fit on: how many frames were read and needed.
    """
    t0 = time.perf_counter()
    if cfg.fit is None:
        raise ConfigError(f"{cfg.path}: no 'fit' section: add fit.train (training streams) to fit a model")
    builder = RunBuilder(cfg, "fit")
    mi = builder.require_model_index()
    ti = builder.postprocess_index()
    model_dir = Path(model_dir) if model_dir is not None else default_model_dir(cfg)
    thr_cfg = cfg.fit.threshold
    if not cfg.fit.validation and thr_cfg.method == "f1_adaptive":
        raise ConfigError(f"{cfg.path}: fit.threshold.method is f1_adaptive but fit.validation lists no labelled "
                          f"streams: add fit.validation, or use method: manual with a value")
    label_free = _label_free_settings(cfg, builder)
    where = "fit.validation" if cfg.fit.validation else "fit.train"
    model_cfg = cfg.operators[mi]
    fitter = builder.model_operator_class().fitter(model_cfg, builder.context)
    streams = prepare_fit_streams(cfg, builder.context, quiet, refresh)  # live streams -> their recordings
    train_cfgs, validation_cfgs = streams.train, streams.validation
    val_cfgs = validation_cfgs or train_cfgs
    slot = contextlib.ExitStack()
    try:
        if cpu_slot is not None:
            slot.enter_context(cpu_slot)
        train_sources = builder.sources(train_cfgs, "fit.train")
        stats = builder.feed(train_sources, cfg.operators[:mi], fitter.collect, "fit: read training data", quiet,
                             total=expected_frames(train_sources), capped=True)
        for sid, err in stats.errors.items():
            log.error("training stream %s failed: %s", sid, err)
        require_enough(fitter, stats, train_sources, cfg.operators[:mi])
        if fitter.needs_validation and validation_cfgs:
            builder.feed(builder.sources(validation_cfgs, "fit.validation"), cfg.operators[:mi],
                         fitter.collect_validation, "fit: read validation data", quiet, capped=True)
        model, fit_stats = fit_model(fitter, stats, train_sources, progress=not quiet)
        builder.context.model = fitter.handle(model)  # the model operator shares it while validation is scored

        def observe(msg: Any) -> int:
            fitter.observe(msg)
            return int(isinstance(msg, Scores))

        end = ti if ti is not None else len(cfg.operators)
        val_sources = builder.sources(val_cfgs, where)
        builder.feed(val_sources, cfg.operators[:end], observe, "fit: calibrate", quiet,
                     total=expected_frames(val_sources), capped=True)
        post = fitter.postprocess(thr_cfg.method, thr_cfg.value, where, **label_free)
        extra = {
            "pipeline": {"name": cfg.name, "operators": [o.model_dump(mode="json") for o in cfg.operators]},
            "fit": {**fit_stats, "train_streams": len(train_sources), "seconds": round(time.perf_counter() - t0, 2)},
        }
        if streams.manifest() is not None:  # the recordings of the live streams, so the fit can be repeated
            extra["fit"]["recordings"] = streams.manifest()
        save_model(model_dir, model, post, extra)
    finally:
        slot.close()
        fitter.close()
        streams.cleanup()
    return FitResult(model_dir, int(fit_stats.get("train_clips", fitter.samples)),
                     int(fit_stats.get("train_regions", 0)), post.frames, post, time.perf_counter() - t0,
                     stats.errors)


def _label_free_settings(cfg: PipelineConfig, builder: RunBuilder) -> dict[str, Any]:
    """The keyword settings of a label-free ``fit.threshold`` (``q``; ``events_per_hour`` and the alert operator's
    lifecycle to replay), empty for the labelled methods.

    Raises:
        ConfigError: a label-free method without ``fit.validation`` (held-out normal footage), or
            ``false_alarm_rate`` in a pipeline with no alert operator.
    """
    thr = cfg.fit.threshold if cfg.fit is not None else None
    if thr is None or thr.method not in ("quantile", "false_alarm_rate"):
        return {}
    if not cfg.fit.validation:  # type: ignore[union-attr]
        raise ConfigError(f"{cfg.path}: fit.threshold.method is {thr.method}: list held-out normal footage of the "
                          f"camera (not used for training) in fit.validation")
    if thr.method == "quantile":
        return {"q": thr.q}
    replay = _alert_replay(cfg, builder)
    if replay is None:
        raise ConfigError(f"{cfg.path}: fit.threshold.method is false_alarm_rate, which replays the pipeline's alert "
                          f"operator, but operators has none")
    return {"events_per_hour": thr.events_per_hour, "replay": replay}


def _alert_replay(cfg: PipelineConfig, builder: RunBuilder) -> AlertReplay | None:
    """The lifecycle settings of the pipeline's alert operator (the one that ``raises_events``), or ``None``."""
    ei = builder.events_index()
    if ei is None:
        return None
    a = cfg.operators[ei]
    return AlertReplay(a.min_frames, a.cooldown_frames, a.threshold)  # type: ignore[attr-defined]


def require_model_dir(cfg: PipelineConfig, model_dir: Path | None) -> Path:
    """``model_dir``, else the config's model directory, when it holds a fitted model.

    Raises:
        ModelError: no ``model.json`` there (the message says which ``streamad fit`` writes it).
    """
    d = Path(model_dir) if model_dir is not None else default_model_dir(cfg)
    if not (d / "model.json").is_file():
        raise ModelError(f"{d}: no fitted model here; run `streamad fit {cfg.path or 'CONFIG'} -o {d}` first")
    return d


def evaluate(cfg: PipelineConfig, model_dir: Path | None = None, plots_dir: Path | None = None,
             quiet: bool = False, metrics: Metrics | None = None
             ) -> tuple[EvalReport | ImageEvalReport, RunStats]:
    """Score the labelled streams (``eval.streams``, else ``streams``) and report frame-level metrics, or, when
    every stream is an image dataset (``folder``, ``mvtec``, ``magnetic_tile``), image- and pixel-level metrics
    (:mod:`streamad.eval.evaluation`). The thresholds are those the run applied (the model's, with the pipeline's
    overrides).

    Raises:
        ModelError: no fitted model. ValueError: the streams carry no labels.
    """
    d = require_model_dir(cfg, model_dir)
    builder = RunBuilder(cfg, "eval", d, metrics)
    stream_cfgs = cfg.eval.streams if cfg.eval is not None else cfg.streams
    sources = builder.sources(stream_cfgs, "eval.streams" if cfg.eval is not None else "streams")
    images = bool(stream_cfgs) and all(getattr(c, "image_dataset", False) for c in stream_cfgs)
    evaluation = Evaluation(images, None if images else _alert_replay(cfg, builder))
    bar = progress_bar("eval", quiet)
    run = builder.build(sources, consumers=[evaluation, lambda m: bar.update(isinstance(m, Scores))])
    try:
        stats = run.run()
    finally:
        bar.close()
    return evaluation.report(run.postprocess, stats.fps, plots_dir), stats


def calibration_frames(cfg: PipelineConfig, limit: int, quiet: bool = True) -> list[np.ndarray]:
    """Up to ``limit`` frames ``(H, W, 3) uint8`` of the config's ``fit.train`` streams as they reach its model
    operator (for int8 calibration by ``streamad export``).

    Raises:
        ConfigError: no ``fit`` section or no model operator.
    """
    if cfg.fit is None:
        raise ConfigError(f"{cfg.path}: no 'fit' section: calibration frames come from fit.train")
    builder = RunBuilder(cfg, "fit")
    mi = builder.require_model_index()
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

    builder.feed(builder.sources(cfg.fit.train, "fit.train"), cfg.operators[:mi], take,
                 "export: calibration frames", quiet, stop)
    return frames


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

    Each stream is scored by its own ``model_dir`` (else the pipeline's), every directory loaded once
    (:class:`~streamad.models.model_set.ModelSet`); a refitted directory is swapped in while serving
    (:class:`~streamad.runtime.model_watch.ModelWatcher`: every ``runtime.model_watch_interval_s`` and on SIGHUP).

    With ``group`` the process is one worker of a group (:mod:`streamad.runtime.group`): it starts with no stream,
    serves the streams of the control-topic partitions the Kafka group assigns to it, and runs until ``stop``;
    config reload is off.

    Raises:
        ModelError: no fitted model (a stream's own ``model_dir`` without one: names the stream and the
            directory). ConfigError: no streams, a stream or sink that cannot be built, an
            ``runtime.http`` address that cannot be bound. DataNotFoundError: a dataset is missing.
            GroupError: the group's control topic cannot be set up.
    """
    d = _serve_model_dir(cfg, model_dir, group is None)
    builder = RunBuilder(cfg, "serve", d, metrics)
    ctx = builder.context
    health = Health()
    ctx.http_routes = health.routes()
    streams = StreamSet()
    built = streams.build(cfg.streams, ctx, "streams") if group is None else []  # group: streams come later
    if not built and group is None:
        raise ConfigError(f"{cfg.path}: streams: nothing to serve (the list is empty)")
    sources = [src for src, _ in built]
    ops = _ops_server(cfg, health, ctx.metrics or Metrics())  # up first: /healthz answers "starting" while loading
    sinks: list[Sink] = []
    try:
        sinks = builder.sinks()
        evaluation = Evaluation()
        run = builder.build(sources, sinks=sinks, consumers=[evaluation],
                            rate_caps={src.stream_id: cap for src, cap in built if cap is not None},
                            persistent=group is not None or any(src.live for src in sources))
    except Exception:
        _close_outputs(sinks, ops)
        raise
    pipe = run.pipeline
    health.attach(pipe)
    watcher = _model_watcher(cfg, ctx)  # hot swap of refitted model directories (streamad.runtime.model_watch)
    reloader = None
    worker = None  # --group (streamad.runtime.group): streams follow the Kafka group's partition assignment
    if group is not None:
        from streamad.runtime.group import GroupWorker

        try:
            worker = GroupWorker(group, cfg, streams, pipe, builder.new_context, ctx.metrics or Metrics()).start()
        except Exception:
            _close_outputs(sinks, ops)
            raise
    if cfg.path is not None and group is None:
        current = [cfg]

        def apply(new: PipelineConfig) -> None:
            new_ctx = RunBuilder(new, "serve", d, ctx.metrics).context
            new_ctx.models = ctx.models  # new streams join the running model set (each model loaded once)
            plan = streams.plan(new.streams, new_ctx, "streams")  # loads the models of new streams first
            if watcher is not None:  # SIGHUP also checks the model directories
                watcher.request()
            changed = other_sections_changed(current[0], new)
            if changed:
                log.warning("config reload: %s changed; restart streamad to apply that (stream changes apply now)",
                            ", ".join(changed))
            streams.apply(plan, pipe)  # a removed stream keeps its model while it drains (ModelSet keeps it)
            current[0] = new

        r = cfg.runtime
        reloader = ConfigReloader(cfg.path, apply, reload_requests,
                                  r.watch_interval_s if r.watch_config else None).start()
    try:
        stats = run.run(stop)
    finally:
        if watcher is not None:
            watcher.stop()
        if worker is not None:
            worker.stop()
        if reloader is not None:
            reloader.stop()
        if ops is not None:
            ops.stop()
    report = None
    if len(evaluation) and evaluation.both_classes:
        report = evaluation.report(run.postprocess, stats.fps)
    return ServeResult(stats, report)  # type: ignore[arg-type]


def _serve_model_dir(cfg: PipelineConfig, model_dir: Path | None, check: bool) -> Path:
    """The pipeline's model directory for ``serve``: required (:func:`require_model_dir`) unless every stream
    names its own ``model_dir`` (then each stream's is checked when the model operator loads it)."""
    if check and cfg.streams and all(getattr(c, "model_dir", None) for c in cfg.streams):
        return Path(model_dir) if model_dir is not None else default_model_dir(cfg)
    return require_model_dir(cfg, model_dir)


def _model_watcher(cfg: PipelineConfig, ctx: Any) -> "ModelWatcher | None":
    """A started :class:`~streamad.runtime.model_watch.ModelWatcher` of the run's models (checks every
    ``runtime.model_watch_interval_s`` seconds; 0 = on SIGHUP only), or ``None`` when no model set was loaded."""
    from streamad.runtime.model_watch import ModelWatcher

    if ctx.models is None or not ctx.models.watched_dirs():
        return None
    return ModelWatcher(ctx.models, cfg.runtime.model_watch_interval_s).start()


def _ops_server(cfg: PipelineConfig, health: Health, metrics: Metrics) -> OpsServer | None:
    """The ``runtime.http`` endpoint, or ``None`` when it is not configured.

    Raises:
        ConfigError: the address cannot be bound.
    """
    h = cfg.runtime.http
    if h is None:
        return None
    try:
        return OpsServer(health, metrics, h.host, h.port)
    except OSError as e:
        raise ConfigError(f"{cfg.path}: runtime.http: cannot listen on {h.host}:{h.port} ({e}); set a free "
                          f"host/port") from e
