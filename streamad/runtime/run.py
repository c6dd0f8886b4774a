"""The run builder: one way every command (``fit``, ``eval``, ``serve``, ``export``'s calibration frames) builds
its pipeline from the whole config.

:class:`RunBuilder` holds the config, the command's mode and model directory and one
:class:`~streamad.parts.BuildContext`; it builds sources, operator stages and sinks through the registries'
factory protocol (``SourceConfig.build``, ``Operator.create_shared``, ``Sink(config, ctx)``) and returns a
:class:`Run`. Every pipeline gets the config's ``runtime`` settings (queue size, live policy, active streams,
grace period and ``batch_size``), so a file gives the same scores whichever command scores it.

Stages publish what they loaded or decided in the context (``ctx.model``, ``ctx.postprocess``); a command reads
those typed results from the :class:`Run` and never looks a stage up by its kind. Where the fit job needs a
position in the chain it asks for a role (:meth:`RunBuilder.model_index`: the operator that ``holds_model``;
:meth:`RunBuilder.postprocess_index`: the one that ``applies_postprocess``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from streamad.config import PipelineConfig
from streamad.errors import ConfigError
from streamad.metrics import Metrics
from streamad.models.handle import ModelHandle
from streamad.models.model_set import ModelSet
from streamad.models.postprocess import PostProcess
from streamad.parts import BuildContext, Operator, PartConfig, Sink, Source
from streamad.registry import OPERATORS, SINKS
from streamad.runtime.pipeline import Pipeline, RunStats, StageSpec, build_stages
from streamad.runtime.ratecap import RateCap

__all__ = ["RunBuilder", "Run", "default_model_dir", "progress_bar"]


def default_model_dir(cfg: PipelineConfig) -> Path:
    """``model_dir`` of the config, else ``runs/<name>/model`` in the working directory."""
    if cfg.model_dir is not None:
        return cfg.model_dir
    return Path("runs") / cfg.name / "model"


def progress_bar(desc: str, quiet: bool, total: int | None = None) -> tqdm:
    """The frames progress bar of a command (disabled by ``quiet``): frames and rate, and with ``total`` (expected
    frames) also the share done, elapsed time and ETA."""
    return tqdm(desc=desc, unit="frame", disable=quiet, dynamic_ncols=True, leave=True, total=total)


class _PassThrough(Operator):
    """Hands messages on unchanged: the one stage of a pipeline whose operator range is empty (a fit whose model
    operator comes first)."""

    kind = "read"

    def process(self, msg: Any) -> list[Any]:
        return [msg]


@dataclass
class Run:
    """A built pipeline and the typed results its stages published.

    Attributes:
        pipeline: the dataflow engine, ready to :meth:`run`.
        context: the build context the stages were built with.
    """

    pipeline: Pipeline
    context: BuildContext

    @property
    def model(self) -> ModelHandle | None:
        """The pipeline's model (loaded or just fitted), or ``None`` when no stage holds one."""
        return self.context.model

    @property
    def postprocess(self) -> PostProcess | None:
        """The post-processing in effect (with the operators' threshold overrides), or ``None``."""
        return self.context.postprocess

    def run(self, stop: threading.Event | None = None) -> RunStats:
        """Run until the streams end (or ``stop``); see :meth:`Pipeline.run`."""
        return self.pipeline.run(stop)


class RunBuilder:
    """Builds a command's pipelines from the whole config (module doc).

    Args:
        cfg: the validated config. mode: ``fit``, ``eval`` or ``serve``.
        model_dir: the fitted model directory (``None`` while fitting). metrics: the Prometheus metrics (a fresh
            registry by default).
    """

    def __init__(self, cfg: PipelineConfig, mode: str, model_dir: Path | None = None,
                 metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.mode = mode
        self.model_dir = model_dir
        self.context = self.new_context(metrics or Metrics())
        self.rate_caps: dict[str, RateCap] = {}  # of the streams :meth:`sources` built, for :meth:`feed`

    def new_context(self, metrics: Metrics | None = None) -> BuildContext:
        """A fresh context of this command (for the streams of a reloaded config or of a group's partitions); it
        shares this builder's per-stream models (``serve`` and ``eval``: a
        :class:`~streamad.models.model_set.ModelSet` of ``model_dir``)."""
        ctx = BuildContext(config_path=self.cfg.path, data_root=self.cfg.data_root, model_dir=self.model_dir,
                           mode=self.mode, metrics=metrics or self.context.metrics)
        existing = getattr(self, "context", None)
        if existing is not None:
            ctx.models = existing.models
        elif self.mode in ("serve", "eval"):
            ctx.models = ModelSet(self.model_dir, ctx.metrics)
        return ctx

    # -- roles -----------------------------------------------------------------------------------------------
    def _index(self, role: str) -> int | None:
        for i, op in enumerate(self.cfg.operators):
            if getattr(OPERATORS.get(op.kind), role, False):
                return i
        return None

    def model_index(self) -> int | None:
        """Position of the operator that holds the pipeline's model (``holds_model``), or ``None``."""
        return self._index("holds_model")

    def postprocess_index(self) -> int | None:
        """Position of the operator that applies the post-processing (``applies_postprocess``), or ``None``."""
        return self._index("applies_postprocess")

    def events_index(self) -> int | None:
        """Position of the operator that raises alert events (``raises_events``), or ``None``."""
        return self._index("raises_events")

    def model_operator_class(self) -> Any:
        """The class of the model operator (its ``fitter(config, ctx)`` hook).

        Raises:
            ConfigError: no operator holds a model.
        """
        return OPERATORS.get(self.cfg.operators[self.require_model_index()].kind)

    def require_model_index(self) -> int:
        """:meth:`model_index`.

        Raises:
            ConfigError: no operator holds a model (names the config and the model operators).
        """
        mi = self.model_index()
        if mi is None:
            kinds = ", ".join(n for n, c in OPERATORS.items() if getattr(c, "holds_model", False))
            raise ConfigError(f"{self.cfg.path}: operators: no model operator ({kinds}), so there is no model")
        return mi

    # -- parts -----------------------------------------------------------------------------------------------
    def sources(self, configs: Sequence[PartConfig], where: str) -> list[Source]:
        """Every stream of a list of stream configs (datasets expand to one stream per video).

        Raises:
            ConfigError, DataNotFoundError: what the configs' ``build`` raises (names ``where[i]``).
        """
        out: list[Source] = []
        for i, c in enumerate(configs):
            built = c.build(self.context, f"{where}[{i}]")  # type: ignore[attr-defined]
            self.context.assign_models(c, built)
            for src in built:  # one cap, with its own state, per stream
                cap = RateCap.of(c)
                if cap is not None:
                    self.rate_caps[src.stream_id] = cap
            out.extend(built)
        return out

    def sinks(self) -> list[Sink]:
        """The config's sinks, built in order (those built are closed when a later one fails)."""
        built: list[Sink] = []
        try:
            for sc in self.cfg.sinks:
                built.append(SINKS.get(sc.kind)(sc, self.context))
        except Exception:
            for s in built:
                s.close()
            raise
        return built

    def stages(self, operators: Sequence[PartConfig]) -> list[StageSpec]:
        """The stages of ``operators`` (models load here, once; they publish in the context), or one
        pass-through stage when the range is empty."""
        return (build_stages(operators, self.context)
                or [StageSpec("read", _PassThrough, PartConfig(kind="read"))])

    def build(self, sources: Sequence[Source], operators: Sequence[PartConfig] | None = None,
              sinks: Sequence[Sink] = (), consumers: Sequence[Callable[[Any], None]] = (),
              **options: Any) -> Run:
        """A :class:`Run` of ``sources`` through ``operators`` (default: all of the config's) into ``sinks`` and
        ``consumers``, with the config's ``runtime`` settings; ``options`` are :class:`Pipeline`'s own
        (``rate_caps``, ``persistent``).

        Raises:
            ModelError, ConfigError: what the operators raise while loading their shared parts.
        """
        ops = self.cfg.operators if operators is None else operators
        r = self.cfg.runtime
        pipe = Pipeline(sources, self.stages(ops), self.context.metrics or Metrics(), sinks=sinks,
                        consumers=consumers, queue_size=r.queue_size, live_policy=r.live_policy,
                        max_active_streams=r.max_active_streams, grace_period_s=r.grace_period_s,
                        batch_size=r.batch_size, **options)
        return Run(pipe, self.context)

    def feed(self, sources: Sequence[Source], operators: Sequence[PartConfig], consumer: Callable[[Any], int],
             desc: str, quiet: bool, stop: threading.Event | None = None, total: int | None = None,
             capped: bool = False) -> RunStats:
        """Run ``sources`` through ``operators`` into ``consumer``, which returns how many frames a message stood
        for (the progress bar's unit; ``total``: frames expected, for its ETA); ``stop`` ends the run early;
        ``capped``: apply the streams' ``every_nth`` / ``max_fps`` caps (``fit``: a model sees the frame rate
        ``serve`` scores at, and ``min_frames`` / ``cooldown_frames`` mean the same time). Returns the run's
        statistics."""
        bar = progress_bar(desc, quiet, total)
        caps = {s.stream_id: self.rate_caps[s.stream_id] for s in sources
                if capped and s.stream_id in self.rate_caps}
        try:
            return self.build(sources, operators, consumers=[lambda m: bar.update(consumer(m))],
                              rate_caps=caps).run(stop)
        finally:
            bar.close()
