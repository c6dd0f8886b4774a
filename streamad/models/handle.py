"""The fitted model a pipeline's model operator shares with every stream: one handle for video and image models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from streamad.errors import ModelError
from streamad.models.postprocess import PostProcess
from streamad.models.store import load_model_of_kind
from streamad.parts import BuildContext

__all__ = ["ModelHandle", "load_handle"]


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
    """

    model: Any
    name: str
    version: str
    metadata: dict[str, Any] = field(default_factory=dict)
    postprocess: PostProcess | None = None
    runner: Any = None
    inference: Any = None

    def observe_inference(self, seconds: float) -> None:
        """Record one model call of ``seconds`` in the inference histogram (when metrics exist)."""
        if self.inference is not None:
            self.inference.observe(seconds)


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
        model, meta = load_model_of_kind(ctx.model_dir, kind, operator)
        raw = meta.get("postprocess")
        post = PostProcess.from_json(raw, str(Path(ctx.model_dir) / "model.json")) if raw else None
        runner = make_runner(model, meta) if make_runner is not None else None
        handle = ModelHandle(model, model.kind, f"{model.version}:{meta.get('created', '')}", meta, post, runner)
        ctx.model = handle
        if ctx.postprocess is None:
            ctx.postprocess = post
    elif handle.name != kind:
        raise ModelError(f"the pipeline's model is {handle.name!r} but its {operator} operator names {kind!r}")
    if ctx.metrics is not None and handle.inference is None:
        handle.inference = ctx.metrics.inference.labels(handle.name)
    return handle
