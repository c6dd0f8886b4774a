"""``video_model``: run the pipeline's video model on each clip and emit :class:`~streamad.frames.Scores`.

``score`` is the kind's former name: a config that still says ``kind: score`` is read as ``video_model`` with a
deprecation warning (:meth:`streamad.registry.Registry.alias`)."""

from __future__ import annotations

import time
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
from pydantic import Field

import streamad.models  # noqa: F401  (registers the models the union below is built from)
from streamad.frames import Clip, Scores, scale_boxes
from streamad.models.handle import ModelHandle, load_handle
from streamad.models.model_set import ModelSet
from streamad.models.video.fitting import ClipFitter
from streamad.parts import BuildContext, Operator, PartConfig
from streamad.registry import OPERATORS, VIDEO_MODELS

__all__ = ["VideoModelOp"]

_MODEL_CONFIGS = tuple(cls.Config for _, cls in VIDEO_MODELS.items())
ModelConfig = (Annotated[Union[_MODEL_CONFIGS], Field(discriminator="kind")]  # type: ignore[valid-type]
               if len(_MODEL_CONFIGS) > 1 else _MODEL_CONFIGS[0])


@OPERATORS.register("video_model")
class VideoModelOp(Operator):
    """Score each clip's regions with the pipeline's video model (loaded once, shared by all streams).

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
    def create_shared(cls, config: "VideoModelOp.Config", ctx: BuildContext) -> ModelHandle | ModelSet:
        """The model ``streamad fit`` just fitted (``ctx.model``); else (``serve``, ``eval``) the per-stream models
        ``ctx.models``, every directory the streams use loaded once here (the default's, else the first, becomes
        ``ctx.model`` and sets ``ctx.postprocess``); else the model directory's.

        Raises:
            ModelError: no model directory, a stream's directory without a fitted model (names the stream and the
                directory), or one holding another kind of model.
        """
        if ctx.model is None and ctx.models is not None:
            ctx.models.bind(config.model.kind, "video_model")
            ctx.models.load_all()
            handle = ctx.models.default_handle()
            ctx.model = handle
            if ctx.postprocess is None:
                ctx.postprocess = handle.postprocess
            return ctx.models
        return load_handle(ctx, config.model.kind, "video_model")

    @classmethod
    def fitter(cls, config: "VideoModelOp.Config", ctx: BuildContext) -> ClipFitter:
        """How ``streamad fit`` fits this operator's model (collect clip features, fit, calibrate)."""
        return ClipFitter(VIDEO_MODELS.get(config.model.kind)(config.model))

    def handle(self) -> ModelHandle:
        """The model that scores this stream now (its own model directory's, else the pipeline's). Read once per
        clip, so that a hot swap never mixes two models in one clip.

        Raises:
            ModelError: the stream's model is not loaded.
        """
        shared = self.shared
        return shared.handle_for(self.stream_id) if isinstance(shared, ModelSet) else shared

    def process(self, clip: Clip) -> list[Scores]:
        handle = self.handle()
        t0 = time.perf_counter()
        result = handle.model.predict(clip.features)
        dt = time.perf_counter() - t0
        handle.observe_inference(dt)
        return self._scores(clip, result, dt, handle)

    @classmethod
    def process_batch(cls, ops: list[Operator], msgs: list[Clip]) -> list[list[Any] | Exception]:
        """Score the clips of several streams with one :meth:`VideoModel.predict_batch` call per model (the same
        scores as :meth:`process` per clip; ``runtime.batch_size`` > 1). Raises what the model raises, having
        changed nothing, so that the runtime retries each clip alone and ends only the stream at fault."""
        handles = [op.handle() for op in ops]  # type: ignore[attr-defined]
        out: list[list[Any] | Exception] = [[] for _ in msgs]
        groups: dict[int, list[int]] = {}
        for i, h in enumerate(handles):
            groups.setdefault(id(h), []).append(i)
        for idx in groups.values():
            handle = handles[idx[0]]
            t0 = time.perf_counter()
            results = handle.model.predict_batch([msgs[i].features for i in idx])
            dt = time.perf_counter() - t0
            handle.observe_inference(dt)
            for i, r in zip(idx, results):
                out[i] = ops[i]._scores(msgs[i], r, dt / len(idx), handle)  # type: ignore[attr-defined]
        return out

    def _scores(self, clip: Clip, result: Any, model_s: float, handle: ModelHandle) -> list[Scores]:
        """The :class:`Scores` of the clip's target frame (and extra targets) from ``handle``'s result."""
        clip.target.timings["model"] = model_s
        boxes = clip.regions.boxes if clip.regions is not None else np.zeros((0, 4), np.float32)
        out = []
        for frame in clip.scored_frames:
            out.append(Scores(
                stream_id=frame.stream_id, index=frame.index, pts=frame.pts, wall_time=frame.wall_time,
                raw_score=result.frame_score, score=result.frame_score,
                boxes=scale_boxes(boxes, (frame.width, frame.height), frame.source_size),
                region_scores=result.region_scores, contributions=result.contributions, label=frame.label,
                video=frame.video, timings=frame.timings, model=handle.identity,
                postprocess=handle.postprocess, origin=frame.origin,
                width=(frame.source_size or (frame.width, frame.height))[0],
                height=(frame.source_size or (frame.width, frame.height))[1], image=frame.image,
            ))
        return out


OPERATORS.alias("score", "video_model")
