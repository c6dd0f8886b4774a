"""The fitted model a pipeline's model operator shares with every stream: one handle for video and image models."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from streamad.errors import ModelError
from streamad.models.postprocess import PostProcess
from streamad.models.store import load_model_of_kind
from streamad.parts import BuildContext

__all__ = ["ModelHandle", "load_handle", "read_handle"]


@dataclass
class ModelHandle:
    """A loaded (or just fitted) model and its identity for alerts.

    Attributes:
        model: the fitted model (:class:`~streamad.models.base.VideoModel` or
            :class:`~streamad.models.image.base.ImageModel`).
        name: the model kind (``aivad``, ``patchcore`` ...), the ``model`` label of the metrics.
        version: ``<model version>:<model.json created>`` (alerts' ``model.version``); the bare model version
            while fitting.
        metadata: the parsed ``model.json`` (empty while fitting).
        postprocess: the fitted post-processing (``None`` while fitting, before it exists).
        runner: image models: how the network runs (torch or the OpenVINO IR,
            :mod:`streamad.models.image.runner`); ``None`` for video models.
        inference: the ``streamad_model_inference_seconds{model}`` histogram child, when metrics exist.
        dir: the model directory it was loaded from (``""`` while fitting); alerts carry it as ``model.dir``.
        created: ``model.json`` ``created`` as Unix seconds (``0.0`` while fitting or when absent); the
            ``streamad_model_age_seconds`` gauge counts from it.
    """

    model: Any
    name: str
    version: str
    metadata: dict[str, Any] = field(default_factory=dict)
    postprocess: PostProcess | None = None
    runner: Any = None
    inference: Any = None
    dir: str = ""
    created: float = 0.0

    @property
    def identity(self) -> dict[str, str]:
        """``{"name", "version", "dir"}``: what ``Scores.model`` and alerts' ``model`` carry (``dir`` only when
        loaded from a directory)."""
        out = {"name": self.name, "version": self.version}
        if self.dir:
            out["dir"] = self.dir
        return out

    def observe_inference(self, seconds: float) -> None:
        """Record one model call of ``seconds`` in the inference histogram (when metrics exist)."""
        if self.inference is not None:
            self.inference.observe(seconds)


def _created_seconds(meta: dict[str, Any]) -> float:
    """``model.json`` ``created`` (ISO 8601) as Unix seconds; 0.0 when absent or unreadable."""
    try:
        return _dt.datetime.fromisoformat(str(meta.get("created", ""))).timestamp()
    except ValueError:
        return 0.0


def read_handle(model_dir: str | Path, kind: str, operator: str,
                make_runner: Callable[[Any, dict[str, Any]], Any] | None = None) -> ModelHandle:
    """Load the model of ``model_dir`` as a fresh :class:`ModelHandle` (nothing shared, nothing published).

    Args:
        model_dir: the fitted model directory. kind: the model kind the operator's config names. operator: the
            operator's kind, for messages. make_runner: ``(model, metadata) -> runner`` (image models).

    Raises:
        ModelError: no model there, an unreadable one, or one of another kind (names the directory).
    """
    model, meta = load_model_of_kind(model_dir, kind, operator)
    raw = meta.get("postprocess")
    post = PostProcess.from_json(raw, str(Path(model_dir) / "model.json")) if raw else None
    runner = make_runner(model, meta) if make_runner is not None else None
    return ModelHandle(model, model.kind, f"{model.version}:{meta.get('created', '')}", meta, post, runner,
                       dir=str(model_dir), created=_created_seconds(meta))


def load_handle(ctx: BuildContext, kind: str, operator: str,
                make_runner: Callable[[Any, dict[str, Any]], Any] | None = None) -> ModelHandle:
    """The model a model operator shares: ``ctx.model`` when set (``streamad fit`` sets the model it just
    fitted), else the model directory's, loaded once and published as ``ctx.model``; its post-processing becomes
    ``ctx.postprocess`` unless one is set already. Binds the inference histogram when ``ctx.metrics`` exists.

    Args:
        ctx: the build context. kind: the model kind the operator's config names. operator: the operator's kind,
            for messages. make_runner: ``(model, metadata) -> runner`` (image models: torch or OpenVINO).

    Raises:
        ModelError: no model directory, one holding another kind of model, or ``ctx.model`` of another kind.
    """
    handle = ctx.model
    if handle is None:
        if ctx.model_dir is None:
            raise ModelError("no model directory: give --model MODEL_DIR or set model_dir in the config")
        handle = read_handle(ctx.model_dir, kind, operator, make_runner)
        ctx.model = handle
        if ctx.postprocess is None:
            ctx.postprocess = handle.postprocess
    elif handle.name != kind:
        raise ModelError(f"the pipeline's model is {handle.name!r} but its {operator} operator names {kind!r}")
    if ctx.metrics is not None and handle.inference is None:
        handle.inference = ctx.metrics.inference.labels(handle.name)
    return handle
