"""``video_model``: run the pipeline's video model on each clip and emit :class:`~streamad.frames.Scores`.

``score`` is the kind's former name: a config that still says ``kind: score`` is read as ``video_model`` with a
deprecation warning (:meth:`streamad.registry.Registry.alias`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
from pydantic import Field

import streamad.models  # noqa: F401  (registers the models the union below is built from)
from streamad.errors import ModelError
from streamad.frames import Clip, Scores, scale_boxes
from streamad.models.base import VideoModel
from streamad.models.store import load_model
from streamad.parts import BuildContext, Operator, PartConfig
from streamad.registry import VIDEO_MODELS, OPERATORS

__all__ = ["VideoModelOp", "ModelHandle"]

_MODEL_CONFIGS = tuple(cls.Config for _, cls in VIDEO_MODELS.items())
ModelConfig = (Annotated[Union[_MODEL_CONFIGS], Field(discriminator="kind")]  # type: ignore[valid-type]
               if len(_MODEL_CONFIGS) > 1 else _MODEL_CONFIGS[0])


@dataclass
class ModelHandle:
    """The model shared by every stream, and its identity for alerts (``name``, ``version``)."""

    model: VideoModel
    name: str
    version: str
    metadata: dict[str, Any]
    inference: Any = None  # ``streamad_model_inference_seconds{model}`` histogram child, when metrics exist


@OPERATORS.register("video_model")
class VideoModelOp(Operator):
    """Score each clip's regions with the pipeline's model (loaded once, shared by all streams).

    Input: :class:`Clip` with the features the model needs. Output: one :class:`Scores` for the clip's target frame
    and one for each of its ``extra_targets``. ``Scores.boxes`` are in source pixels.

    Config:
        model: the model and its parameters (``kind: aivad`` ...). ``streamad fit`` fits it; ``serve`` and
            ``eval`` load it from the model directory.
    """

    holds_model: ClassVar[bool] = True

    class Config(PartConfig):
        kind: Literal["video_model"] = "video_model"
        model: ModelConfig  # type: ignore[valid-type]

    @classmethod
    def create_shared(cls, config: "VideoModelOp.Config", ctx: BuildContext) -> ModelHandle:
        if "model" in ctx.shared:
            cls._observer(ctx.shared["model"], ctx)
            return ctx.shared["model"]
        if ctx.model_dir is None:
            raise ModelError("no model directory: give --model MODEL_DIR or set model_dir in the config")
        model, meta = load_model(ctx.model_dir)
        if model.kind != config.model.kind:
            raise ModelError(f"{ctx.model_dir}: holds a {model.kind!r} model but the config's video_model operator "
                             f"uses {config.model.kind!r}")
        handle = ModelHandle(model, model.kind, f"{model.version}:{meta.get('created', '')}", meta)
        ctx.shared["model"] = handle
        cls._observer(handle, ctx)
        return handle

    @staticmethod
    def _observer(handle: ModelHandle, ctx: BuildContext) -> None:
        if ctx.metrics is not None and handle.inference is None:
            handle.inference = ctx.metrics.inference.labels(handle.name)

    def process(self, clip: Clip) -> list[Scores]:
        handle: ModelHandle = self.shared
        t0 = time.perf_counter()
        result = handle.model.predict(clip.features)
        dt = time.perf_counter() - t0
        if handle.inference is not None:
            handle.inference.observe(dt)
        return self._scores(clip, result, dt)

    @classmethod
    def process_batch(cls, ops: list[Operator], msgs: list[Clip]) -> list[list[Any] | Exception]:
        """Score the clips of several streams with one :meth:`VideoModel.predict_batch` call (the same scores as
        :meth:`process` per clip; ``runtime.batch_size`` > 1). Raises what the model raises, having changed
        nothing, so that the runtime retries each clip alone and ends only the stream at fault."""
        handle: ModelHandle = ops[0].shared
        t0 = time.perf_counter()
        results = handle.model.predict_batch([clip.features for clip in msgs])
        dt = time.perf_counter() - t0
        if handle.inference is not None:
            handle.inference.observe(dt)
        return [op._scores(clip, r, dt / len(msgs))  # type: ignore[attr-defined]
                for op, clip, r in zip(ops, msgs, results)]

    def _scores(self, clip: Clip, result: Any, model_s: float) -> list[Scores]:
        """The :class:`Scores` of the clip's target frame (and extra targets) from the model's result."""
        handle: ModelHandle = self.shared
        clip.target.timings["model"] = model_s
        boxes = clip.regions.boxes if clip.regions is not None else np.zeros((0, 4), np.float32)
        out = []
        for frame in [clip.target, *clip.extra_targets]:
            out.append(Scores(
                stream_id=frame.stream_id, index=frame.index, pts=frame.pts, wall_time=frame.wall_time,
                raw_score=result.frame_score, score=result.frame_score,
                boxes=scale_boxes(boxes, (frame.width, frame.height), frame.source_size),
                region_scores=result.region_scores, contributions=result.contributions, label=frame.label,
                video=frame.video, timings=frame.timings, model={"name": handle.name, "version": handle.version},
                width=(frame.source_size or (frame.width, frame.height))[0],
                height=(frame.source_size or (frame.width, frame.height))[1], image=frame.image,
            ))
        return out


OPERATORS.alias("score", "video_model")
