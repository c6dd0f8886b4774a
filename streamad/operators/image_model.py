"""``image_model``: run an image anomaly model (PatchCore, PaDiM, DFM, DFKDE) on each frame, or every Nth.

Input: :class:`~streamad.frames.Frame` (or a :class:`~streamad.frames.Clip`, scored on its target frame and
attributed to its extra targets too). Output: one :class:`ImageScores` per frame: the raw image score
(``raw_score`` = ``score``), the raw anomaly map at the model's input size, and the anomalous regions as boxes in
source pixels: the connected components (8-connected) of ``anomaly_map >= pixel_threshold`` with at least
``min_region_area`` map pixels, each scored by its largest map value (anomalib ``masks_to_boxes`` on the predicted
mask). The usual ``smooth`` / ``threshold`` / ``alert`` operators follow: ``threshold`` normalises the image score
with the image threshold and the region scores with the pixel threshold, so alerts list the regions.

The model is loaded once from the model directory and shared by all streams; ``runtime`` picks torch or the
exported OpenVINO IR (``auto``: the IR when ``streamad export`` wrote one for this fit). With ``every_n > 1``
the frames in between repeat the last result (marked ``scored = False``), so every frame still gets a score.
``streamad fit`` fits the model through :meth:`ImageModelOp.fitter`. With ``tiler`` set, frames are scored tile by
tile at source resolution (:mod:`streamad.models.image.tiler`, after anomalib's ``Tiler``): the model is fitted and
calibrated on tiles, its anomaly map is the tiles' maps put back together and its image score the largest tile
score; ``model.json`` records the tiling and a pipeline that tiles otherwise is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Union

import cv2
import numpy as np
from pydantic import Field

import streamad.models  # noqa: F401  (registers the image models the union below is built from)
from streamad.frames import Clip, Frame, Scores, scale_boxes
from streamad.errors import ConfigError
from streamad.models.handle import ModelHandle, load_handle
from streamad.models.image.fitting import ImageFitter
from streamad.models.image.runner import Runner, open_runner
from streamad.models.image.tiler import TiledRunner, Tiler, TilerConfig
from streamad.parts import BuildContext, Operator, PartConfig
from streamad.registry import IMAGE_MODELS, OPERATORS

__all__ = ["ImageModelOp", "ImageModelStage", "ImageScores", "regions_from_map"]

_CONFIGS = tuple(cls.Config for _, cls in IMAGE_MODELS.items())
ImageModelConfigs = Annotated[Union[_CONFIGS], Field(discriminator="kind")]  # type: ignore[valid-type]


@dataclass
class ImageScores(Scores):
    """:class:`~streamad.frames.Scores` of an image model, with what image metrics and plots need (the frame's
    pixels are in the inherited ``image``).

    Attributes:
        anomaly_map: ``(h, w) float32`` raw anomaly map at the model's input size (model units; normalise with
            ``postprocess`` ``min`` / ``max`` / ``pixel_threshold``).
        mask: ``(H, W) bool`` ground truth of the frame when the source has it.
        scored: False when the result was repeated from an earlier frame (``every_n > 1``).
    """

    anomaly_map: np.ndarray | None = None
    mask: np.ndarray | None = None
    scored: bool = True


def regions_from_map(anomaly_map: np.ndarray, threshold: float, min_area: int = 1,
                     max_regions: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of the connected components (8-connected) of ``anomaly_map >= threshold``.

    Args:
        anomaly_map: ``(h, w) float32`` raw map. threshold: raw pixel threshold.
        min_area: smallest component kept, in map pixels. max_regions: keep the highest-scoring ones.

    Returns:
        ``(boxes (M, 4) float32 x1, y1, x2, y2 in map pixels (pixel edges: a one-pixel component at (x, y) is
        [x, y, x + 1, y + 1]), scores (M,) float32 = the component's largest map value)``, highest score first.
    """
    mask = anomaly_map >= threshold
    if not mask.any():  # most frames of a normal scene: no labelling at all
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    keep = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= min_area) + 1
    if keep.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    peak = np.full(n, -np.inf, np.float32)
    np.maximum.at(peak, labels[mask], anomaly_map[mask].astype(np.float32))  # over the mask's pixels only
    scores = peak[keep]
    x, y, w, h = (stats[keep, k] for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    boxes = np.stack([x, y, x + w, y + h], 1).astype(np.float32)
    order = np.argsort(-scores, kind="stable")[:max_regions]
    return boxes[order], scores[order]


@dataclass(frozen=True)
class ImageModelStage:
    """What every stream's ``image_model`` operator shares: the model, how its frames are scored (``runner``: the
    model's runner, or a :class:`~streamad.models.image.tiler.TiledRunner` around it) and the raw threshold of its
    region masks (``None``: no regions, as while fitting)."""

    handle: ModelHandle
    pixel_threshold: float | None
    runner: Runner | None = None

    def __post_init__(self) -> None:
        if self.runner is None:
            object.__setattr__(self, "runner", self.handle.runner)


@OPERATORS.register("image_model")
class ImageModelOp(Operator):
    """Score frames with an image model; see the module doc.

    Config:
        model: the model and its parameters (``kind: patchcore`` ...); ``streamad fit`` fits it, ``serve`` and
            ``eval`` load it from the model directory.
        every_n: score every Nth frame of a stream (1 = every frame); the others repeat the last result.
        runtime: ``auto`` (the exported OpenVINO IR when present, else torch), ``torch`` or ``openvino``.
        threads: OpenVINO inference threads (default: all cores).
        performance_hint: OpenVINO ``latency`` (default: a batch is one request on every core) or ``throughput``
            (each frame of a ``runtime.batch_size`` batch is its own request, run in parallel OpenVINO streams;
            the same scores; see :mod:`streamad.models.image.runner`).
        inference_precision: OpenVINO ``f32`` (default: torch's scores to float rounding) or ``bf16`` (the CPU's
            bfloat16 units where it has them, AVX-512 BF16 or AMX, else f32: faster, scores within about 1 % of
            the normalisation range; measured in README Speed). torch always runs float32.
        pixel_threshold: raw pixel threshold for the regions; overrides the fitted one.
        min_region_area: smallest region, in anomaly-map pixels.
        max_regions: regions kept per frame (highest score first).
        tiler: score each frame tile by tile (``tile_size``, ``stride`` in source pixels; see
            :mod:`streamad.models.image.tiler`); ``None`` resizes the whole frame to the model's input size.
    """

    holds_model: ClassVar[bool] = True

    class Config(PartConfig):
        kind: Literal["image_model"] = "image_model"
        model: ImageModelConfigs  # type: ignore[valid-type]
        every_n: int = Field(1, ge=1)
        runtime: Literal["auto", "torch", "openvino"] = "auto"
        threads: int | None = Field(None, ge=1)
        performance_hint: Literal["latency", "throughput"] = "latency"
        inference_precision: Literal["f32", "bf16"] = "f32"
        pixel_threshold: float | None = None
        min_region_area: int = Field(16, ge=1)
        max_regions: int = Field(10, ge=1)
        tiler: TilerConfig | None = None

    def __init__(self, config: "ImageModelOp.Config", shared: "ImageModelStage", stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        self.count = 0
        self.last: tuple[np.ndarray, float, np.ndarray, np.ndarray] | None = None

    @classmethod
    def create_shared(cls, config: "ImageModelOp.Config", ctx: BuildContext) -> "ImageModelStage":
        """The model ``streamad fit`` just fitted (``ctx.model``), else the model directory's run by torch or its
        OpenVINO IR; the region threshold is ``pixel_threshold`` when the config sets one (then published in
        ``ctx.postprocess`` too, so eval uses it), else the fitted one (``None`` while fitting: no regions).

        Raises:
            ModelError: no model directory, a directory holding another kind of model, or an IR problem.
            ConfigError: a stream names its own ``model_dir`` (one model per camera is for ``video_model``
                pipelines; image pipelines use the pipeline's model), or ``tiler`` differs from the tiling the
                model was fitted with (``model.json`` ``fit.tiler``).
        """
        if ctx.models is not None and ctx.models.per_stream:
            raise ConfigError(f"{ctx.config_path}: streams[].model_dir: one model per stream is supported with a "
                              f"video_model operator only; image_model pipelines use the pipeline's model_dir")
        handle = load_handle(ctx, config.model.kind, "image_model",
                             lambda model, meta: open_runner(model, ctx.model_dir, meta, config.runtime,
                                                             config.threads, config.performance_hint,
                                                             config.inference_precision))
        if ctx.models is not None:  # streamad_model_age_seconds of the streams (no hot swap for image models)
            ctx.models.adopt(handle)
        if ctx.postprocess is not None:
            ctx.postprocess = ctx.postprocess.with_overrides(pixel_threshold=config.pixel_threshold)
        pixel = config.pixel_threshold
        if pixel is None and ctx.postprocess is not None:
            pixel = ctx.postprocess.region_threshold
        return ImageModelStage(handle, None if pixel is None else float(pixel), cls._runner(config, handle, ctx))

    @staticmethod
    def _runner(config: "ImageModelOp.Config", handle: ModelHandle, ctx: BuildContext) -> Runner:
        """The model's runner, tiled when ``config.tiler`` is set; refuses a tiling other than the fit's."""
        fit = handle.metadata.get("fit", {}) if handle.metadata else None
        want = config.tiler.identity() if config.tiler is not None else None
        if fit is not None and fit.get("tiler") != want:
            raise ConfigError(f"{ctx.config_path}: operators[].tiler is {want} but the model in "
                              f"{handle.dir or ctx.model_dir} was fitted with {fit.get('tiler')}; refit, or set "
                              f"tiler as at fit time")
        if config.tiler is None:
            return handle.runner
        return TiledRunner(handle.runner, Tiler(config.tiler, handle.model.input_size))

    @classmethod
    def fitter(cls, config: "ImageModelOp.Config", ctx: BuildContext) -> ImageFitter:
        """How ``streamad fit`` fits this operator's model (collect frames, fit, calibrate)."""
        model = IMAGE_MODELS.get(config.model.kind)(config.model)
        return ImageFitter(model, None if config.tiler is None else Tiler(config.tiler, model.input_size))

    def _result(self, amap: np.ndarray, score: float) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        """``(map, score, boxes, region scores)`` of one raw model output (boxes in map pixels)."""
        thr = self.shared.pixel_threshold
        c = self.config
        if thr is None:
            return amap, score, np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        return (amap, score, *regions_from_map(amap, thr, c.min_region_area, c.max_regions))

    @staticmethod
    def _targets(msg: Frame | Clip) -> list[Frame]:
        return [msg.target, *msg.extra_targets] if isinstance(msg, Clip) else [msg]

    def _due(self) -> bool:
        return self.count % self.config.every_n == 0 or self.last is None

    def _emit(self, frames: list[Frame], scored: bool) -> list[ImageScores]:
        assert self.last is not None
        amap, score, boxes, rscores = self.last
        h = self.shared.handle
        out = []
        for f in sorted(frames, key=lambda fr: fr.index):  # stream order (a clip's target may follow its extras)
            size = f.source_size or (f.width, f.height)
            out.append(ImageScores(
                stream_id=f.stream_id, index=f.index, pts=f.pts, wall_time=f.wall_time, raw_score=score,
                score=score, boxes=scale_boxes(boxes, (amap.shape[1], amap.shape[0]), size),
                region_scores=rscores.copy(), label=f.label, video=f.video, timings=f.timings,
                model={"name": h.name, "version": h.version}, width=size[0], height=size[1], anomaly_map=amap,
                mask=f.mask, image=f.image, scored=scored, origin=f.origin))
        return out

    @staticmethod
    def _observe(h: ModelHandle, frames: list[Frame], seconds: float) -> None:
        for f in frames:
            f.timings["model"] = seconds / len(frames)
        h.observe_inference(seconds)

    def process(self, msg: Frame | Clip) -> list[ImageScores]:
        frames = self._targets(msg)
        scored = self._due()
        if scored:
            t0 = time.perf_counter()
            maps, scores = self.shared.runner(frames[0].image)
            self._observe(self.shared.handle, frames[:1], time.perf_counter() - t0)
            self.last = self._result(maps[0, 0], float(scores[0]))
        self.count += 1
        return self._emit(frames, scored)

    @classmethod
    def process_batch(cls, ops: list[Operator], msgs: list[Any]) -> list[list[Any] | Exception]:
        """Score the frames of several streams that are due in one model call per frame size (``runtime.batch_size``
        > 1): the same results as :meth:`process` one by one. Raises what the model raises, having changed
        nothing (the runtime then retries each message alone)."""
        stage: ImageModelStage = ops[0].shared
        h = stage.handle
        plan = []
        count = {id(op): op.count for op in ops}
        has_last = {id(op): op.last is not None for op in ops}
        for op, msg in zip(ops, msgs):  # a stream may have several messages in the batch: simulate its counter
            due = count[id(op)] % op.config.every_n == 0 or not has_last[id(op)]  # type: ignore[attr-defined]
            count[id(op)] += 1
            has_last[id(op)] = has_last[id(op)] or due
            plan.append((op, cls._targets(msg), due))
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for k, (_, frames, due) in enumerate(plan):
            if due:
                by_shape.setdefault(frames[0].image.shape, []).append(k)
        raw: dict[int, tuple[np.ndarray, float]] = {}
        for idx in by_shape.values():
            t0 = time.perf_counter()
            maps, scores = stage.runner(np.stack([plan[k][1][0].image for k in idx]))
            cls._observe(h, [plan[k][1][0] for k in idx], time.perf_counter() - t0)
            raw.update({k: (maps[j, 0], float(scores[j])) for j, k in enumerate(idx)})
        out: list[list[Any] | Exception] = []
        for k, (op, frames, due) in enumerate(plan):
            if due:
                op.last = op._result(*raw[k])  # type: ignore[attr-defined]
            op.count += 1  # type: ignore[attr-defined]
            out.append(op._emit(frames, due))  # type: ignore[attr-defined]
        return out
