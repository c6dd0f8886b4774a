"""Base classes of the parts a pipeline is made of: their configs, operators, sources, sinks and models.

One concept each:

* :class:`PartConfig`  pydantic base of every part's config; ``kind`` selects the registered class.
* :class:`BuildContext` what parts may use while being built (data root, model directory, metrics, mode).
* :class:`Operator`    per-stream instance; ``process(msg) -> list[msg]``, ``flush() -> list[msg]``.
* :class:`Source`      a stream of :class:`~streamad.frames.Frame`.
* :class:`Sink`        consumes :class:`~streamad.frames.Scores` (and the events they carry).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

from pydantic import BaseModel, ConfigDict, Field

from streamad.frames import EndOfStream, Event, Frame, Scores

if TYPE_CHECKING:
    from streamad.metrics import Metrics
    from streamad.models.handle import ModelHandle
    from streamad.models.model_set import ModelSet
    from streamad.models.postprocess import PostProcess

__all__ = ["PartConfig", "SourceConfig", "SinkConfig", "BuildContext", "Operator", "Source", "Sink"]


class PartConfig(BaseModel):
    """Base of every part's config: unknown keys are errors (a typo is reported, not ignored)."""

    model_config = ConfigDict(extra="forbid")
    kind: str


class SourceConfig(PartConfig):
    """Base of stream configs.

    Attributes:
        id: stream id (datasets use it as a prefix: ``<id>/<video>``); defaults to a name derived from the path.
        realtime: pace a file at its frame rate (as a camera would deliver it) instead of as fast as possible.
        max_frames: stop after this many frames (``None`` = all).
        every_nth: frame-rate cap of ``streamad serve`` and ``fit`` (so a model is fitted and calibrated on the
            frame rate it scores; ``eval`` scores every frame): process only every Nth frame the source delivers
            (frames 0, N, 2N, ...); the others are dropped and counted as
            ``streamad_frames_dropped_total{reason="rate_cap"}``. ``None`` = every frame.
        max_fps: frame-rate cap of ``streamad serve`` and ``fit``: process at most this many frames per second
            of stream time (presentation timestamps); the others are dropped and counted like ``every_nth``. Both caps may
            be combined (``every_nth`` applies first).
        model_dir: the fitted model directory of this stream (``serve``, ``eval``; ``fit --per-stream`` writes
            it); ``{stream}`` is replaced by the stream id made safe for paths
            (:func:`~streamad.models.model_set.stream_path_part`). ``None`` = the pipeline's model. Streams naming
            the same directory share one loaded model.
    """

    id: str | None = None
    model_dir: str | None = None
    realtime: bool = False
    max_frames: int | None = None
    every_nth: int | None = Field(None, ge=1)
    max_fps: float | None = Field(None, gt=0)

    def build(self, ctx: "BuildContext", where: str) -> list["Source"]:
        """The streams this config stands for (a dataset split is one stream per video).

        Args:
            ctx: build context (data root for relative paths).
            where: key path of this config in the file (``streams[0]``), for error messages.

        Raises:
            ConfigError: a path does not exist or a field is inconsistent.
            DataNotFoundError: a dataset is missing (the message says how to get it).
        """
        raise NotImplementedError


class SinkConfig(PartConfig):
    """Base of sink configs."""


@dataclass
class BuildContext:
    """What a part may use while being built, and what the stages publish for the command that runs them.

    Attributes:
        config_path: the pipeline.yaml being run (for messages and relative paths).
        data_root: root folder for dataset sources (``STREAMAD_DATA`` or the config's ``data_root``).
        model_dir: the fitted model directory (``None`` while fitting from scratch).
        mode: ``"fit"``, ``"eval"`` or ``"serve"``.
        metrics: the pipeline's Prometheus metrics.
        model: the pipeline's model: set by ``streamad fit`` to the model it just fitted, else by the model
            operator when it loads the model directory; the operators that follow read it.
        postprocess: the post-processing in effect: the model directory's, with the thresholds the pipeline's
            operators override (``image_model.pixel_threshold``, ``threshold.image_threshold``) applied in order;
            ``None`` while fitting. Commands read it after the build (eval's thresholds).
        http_routes: extra routes of the ``runtime.http`` server (``/healthz``, ``/readyz``) for a ``prometheus``
            sink that serves the same port.
        models: ``serve`` and ``eval``: the per-stream models (:class:`~streamad.models.model_set.ModelSet`);
            sources are assigned to it as they are built, the model operator loads it. ``None`` while fitting.
    """

    config_path: Path | None = None
    data_root: Path | None = None
    model_dir: Path | None = None
    mode: str = "serve"
    metrics: "Metrics | None" = None
    model: "ModelHandle | None" = None
    postprocess: "PostProcess | None" = None
    http_routes: Any = None
    models: "ModelSet | None" = None

    def assign_models(self, config: Any, sources: "list[Source]") -> None:
        """Record the model directory of each of ``sources`` (built from stream ``config``) in :attr:`models`."""
        if self.models is not None:
            for src in sources:
                self.models.assign(src.stream_id, getattr(config, "model_dir", None))

    def resolve(self, path: str | Path) -> Path:
        """``path`` as given if absolute, else relative to the data root (or the config's folder)."""
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        if self.data_root is not None:
            return self.data_root / p
        if self.config_path is not None:
            return self.config_path.parent / p
        return p


class Operator(abc.ABC):
    """A step of the dataflow, instantiated once per stream (so it may keep per-stream state).

    Subclasses define a nested ``Config(PartConfig)`` with ``kind: Literal["<name>"]`` and register with
    ``@OPERATORS.register("<name>")``. Heavy resources shared by all streams (models, networks) are built once by
    :meth:`create_shared` and passed to every instance.

    Two class attributes give an operator a role the commands rely on (never its kind name):

    * ``holds_model``: it runs the pipeline's fitted model and offers ``fitter(config, ctx)`` returning a
      :class:`~streamad.models.fitting.ModelFitter` (``streamad fit`` trains on what reaches it);
    * ``applies_postprocess``: it normalises scores with the fitted post-processing (``streamad fit`` calibrates
      on what reaches it);
    * ``raises_events``: it turns normalised scores into alert events; its config's ``threshold``, ``min_frames``
      and ``cooldown_frames`` are what ``fit.threshold.method: false_alarm_rate`` replays.
    """

    Config: ClassVar[type[PartConfig]]
    kind: ClassVar[str]
    holds_model: ClassVar[bool] = False
    applies_postprocess: ClassVar[bool] = False
    raises_events: ClassVar[bool] = False

    def __init__(self, config: PartConfig, shared: Any, stream_id: str) -> None:
        self.config = config
        self.shared = shared
        self.stream_id = stream_id

    @classmethod
    def create_shared(cls, config: PartConfig, ctx: BuildContext) -> Any:
        """Build what all streams share (called once per pipeline). Default: nothing."""
        return None

    @abc.abstractmethod
    def process(self, msg: Any) -> list[Any]:
        """Handle one message of this stream; return zero or more messages for the next stage."""

    @classmethod
    def process_batch(cls, ops: list["Operator"], msgs: list[Any]) -> list[list[Any] | Exception]:
        """Handle messages of several streams at once (``msgs[i]`` belongs to ``ops[i]``'s stream, a stream's
        messages in order); returns, per message and in the same order, its result list or the exception that
        message raised (the runtime then ends that stream only).

        The runtime calls it only when a subclass overrides it and ``runtime.batch_size`` > 1, with the messages
        that are already waiting (it never waits to fill a batch). Override it where one call on many inputs is
        cheaper than many calls (a shared model). An override that raises must not have changed any operator's
        state: the runtime then handles each message alone with :meth:`process`. Default: :meth:`process` one by
        one.
        """
        out: list[list[Any] | Exception] = []
        for op, m in zip(ops, msgs):
            try:
                out.append(op.process(m))
            except Exception as exc:  # reported per message, like process() failures
                out.append(exc)
        return out

    def flush(self) -> list[Any]:
        """The stream ended: return any messages still held (e.g. by a centred smoothing window)."""
        return []

    def end_events(self) -> list[Event]:
        """The stream ended (called after :meth:`flush`): alert events that the end itself raises, e.g. the
        ``end`` of an event still open. They travel on the stream's :class:`EndOfStream` to the sinks, so an
        operator never has to hold a frame back to give them a frame to ride on. Default: none."""
        return []


class Source(abc.ABC):
    """A stream of frames with a stable ``stream_id``.

    Attributes:
        stream_id: stable id, used as Kafka key and metrics label.
        live: live sources (cameras) drop frames under backpressure; files block and are lossless.
    """

    stream_id: str
    live: bool = False

    @abc.abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames in order. Raises :class:`~streamad.errors.SourceError` on unreadable input."""

    def close(self) -> None:
        """Release the underlying file or connection; safe to call twice."""


class Sink(abc.ABC):
    """Consumes every scored frame of every stream, in per-stream order, from one thread."""

    Config: ClassVar[type[PartConfig]]
    kind: ClassVar[str]

    def __init__(self, config: PartConfig, ctx: BuildContext) -> None:
        self.config = config
        self.ctx = ctx

    @abc.abstractmethod
    def write(self, scores: Scores) -> None:
        """Handle one scored frame (its ``events`` are the alerts it caused)."""

    def end_stream(self, eos: EndOfStream) -> None:
        """A stream ended (``eos.error`` set when it failed). ``eos.events`` are alert events raised by the end
        (the ``end`` of an event still open), after the stream's last frame: a sink that delivers events delivers
        these too, in order after those of the last frame. Like :meth:`write`, it may raise
        :class:`~streamad.errors.SinkFullError` to be called again with the same ``eos`` later, so it must not
        deliver an event twice when called again."""

    def close(self) -> None:
        """Flush and release resources; called once after every stream ended or on shutdown."""

    @property
    def metrics_label(self) -> str:
        """The ``sink`` label of this sink's metrics (default: its kind; a Kafka sink adds its topic)."""
        return getattr(self, "kind", type(self).__name__)

    def delivery_problem(self) -> str | None:
        """Why this sink cannot deliver alerts now (destination unreachable past its retry budget, local spool
        full or unwritable), or ``None`` while delivery works. ``/readyz`` reports it; it must not block."""
        return None

    def undelivered(self) -> int:
        """Alerts this sink accepted and had not delivered when it closed (kept on disk for the next start, e.g.
        a Kafka sink's spool); read after :meth:`close`. ``streamad serve`` exits with
        :data:`~streamad.errors.EXIT_UNDELIVERED` when any sink reports some."""
        return 0
