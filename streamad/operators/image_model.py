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
``streamad fit`` fits the model through :meth:`ImageModelOp.fitter`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Union

import cv2
import numpy as np
from pydantic import Field

import streamad.models  # noqa: F401  (registers the image models the union below is built from)
from streamad.errors import ModelError
from streamad.frames import Clip, Frame, Scores
from streamad.models.image.base import IMAGE_MODELS, ImageModel
from streamad.models.image.fitting import ImageFitter
from streamad.models.image.runner import Runner, TorchRunner, open_runner
from streamad.models.store import load_model
from streamad.operators.score import scale_boxes
from streamad.parts import BuildContext, Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["ImageModelOp", "ImageScores", "ImageModelHandle", "regions_from_map"]

_CONFIGS = tuple(cls.Config for _, cls in IMAGE_MODELS.items())
ImageModelConfigs = Annotated[Union[_CONFIGS], Field(discriminator="kind")]  # type: ignore[valid-type]


@dataclass
class ImageScores(Scores):
    """:class:`~streamad.frames.Scores` of an image model, with what image metrics and plots need.

    Attributes:
        anomaly_map: ``(h, w) float32`` raw anomaly map at the model's input size (model units; normalise with
            ``postprocess`` ``min`` / ``max`` / ``pixel_threshold``).
        mask: ``(H, W) bool`` ground truth of the frame when the source has it.
        image: the frame's ``(H, W, 3) uint8`` pixels (a reference, not a copy).
        scored: False when the result was repeated from an earlier frame (``every_n > 1``).
    """

    anomaly_map: np.ndarray | None = None
    mask: np.ndarray | None = None
    image: np.ndarray | None = None
    scored: bool = True


@dataclass
class ImageModelHandle:
    """The model shared by every stream, how it runs, and its identity for alerts.

    Attributes:
        model: the fitted model. runner: torch or OpenVINO. name, version: for alerts.
        metadata: ``model.json``. pixel_threshold: raw threshold of the region masks (``None``: no regions).
        inference: the ``streamad_model_inference_seconds{model}`` histogram child, when metrics exist.
    """

    model: ImageModel
    runner: Runner
    name: str
    version: str
    metadata: dict[str, Any]
    pixel_threshold: float | None
    inference: Any = None


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
    mask = (anomaly_map >= threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    if not keep:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    peak = np.full(n, -np.inf, np.float64)
    np.maximum.at(peak, labels.ravel(), anomaly_map.ravel().astype(np.float64))
    boxes = np.array([[stats[i, 0], stats[i, 1], stats[i, 0] + stats[i, 2], stats[i, 1] + stats[i, 3]]
                      for i in keep], np.float32)
    scores = peak[keep].astype(np.float32)
    order = np.argsort(-scores, kind="stable")[:max_regions]
    return boxes[order], scores[order]


@OPERATORS.register("image_model")
class ImageModelOp(Operator):
    """Score frames with an image model; see the module doc.

    Config:
        model: the model and its parameters (``kind: patchcore`` ...); ``streamad fit`` fits it, ``serve`` and
            ``eval`` load it from the model directory.
        every_n: score every Nth frame of a stream (1 = every frame); the others repeat the last result.
        runtime: ``auto`` (the exported OpenVINO IR when present, else torch), ``torch`` or ``openvino``.
        threads: OpenVINO inference threads (default: all cores).
        pixel_threshold: raw pixel threshold for the regions; overrides the fitted one.
        min_region_area: smallest region, in anomaly-map pixels.
        max_regions: regions kept per frame (highest score first).
    """

    holds_model: ClassVar[bool] = True

    class Config(PartConfig):
        kind: Literal["image_model"] = "image_model"
        model: ImageModelConfigs  # type: ignore[valid-type]
        every_n: int = Field(1, ge=1)
        runtime: Literal["auto", "torch", "openvino"] = "auto"
        threads: int | None = Field(None, ge=1)
        pixel_threshold: float | None = None
        min_region_area: int = Field(16, ge=1)
        max_regions: int = Field(10, ge=1)

    def __init__(self, config: "ImageModelOp.Config", shared: ImageModelHandle, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        self.count = 0
        self.last: tuple[np.ndarray, float, np.ndarray, np.ndarray] | None = None

    @classmethod
    def create_shared(cls, config: "ImageModelOp.Config", ctx: BuildContext) -> ImageModelHandle:
        """The fitted model from ``ctx.shared["model"]`` (set by ``streamad fit``) or the model directory.

        Raises:
            ModelError: no model directory, a directory holding another kind of model, or an IR problem.
        """
        handle = ctx.shared.get("model")
        if handle is None:
            if ctx.model_dir is None:
                raise ModelError("no model directory: give --model MODEL_DIR or set model_dir in the config")
            model, meta = load_model(ctx.model_dir)
            if model.kind != config.model.kind:
                raise ModelError(f"{ctx.model_dir}: holds a {model.kind!r} model but the config's image_model "
                                 f"operator uses {config.model.kind!r}")
            assert isinstance(model, ImageModel)
            runner = open_runner(model, ctx.model_dir, meta, config.runtime, config.threads)
            post = meta.get("postprocess") or {}
            handle = ImageModelHandle(model, runner, model.kind, f"{model.version}:{meta.get('created', '')}", meta,
                                      post.get("pixel_threshold"))
            ctx.shared["model"] = handle
        if not isinstance(handle, ImageModelHandle):
            raise ModelError("the pipeline holds another model operator before image_model")
        if config.pixel_threshold is not None:
            handle.pixel_threshold = float(config.pixel_threshold)
        if ctx.metrics is not None and handle.inference is None:
            handle.inference = ctx.metrics.inference.labels(handle.name)
        return handle

    @classmethod
    def fitter(cls, config: "ImageModelOp.Config", ctx: BuildContext) -> ImageFitter:
        """How ``streamad fit`` fits this operator's model (collect frames, fit, calibrate)."""
        model = IMAGE_MODELS.get(config.model.kind)(config.model)

        def handle(m: ImageModel) -> ImageModelHandle:
            return ImageModelHandle(m, TorchRunner(m), m.kind, m.version, {}, None)

        return ImageFitter(model, handle)

    def _score(self, frame: Frame) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        h: ImageModelHandle = self.shared
        t0 = time.perf_counter()
        maps, scores = h.runner(frame.image)
        dt = time.perf_counter() - t0
        frame.timings["model"] = dt
        if h.inference is not None:
            h.inference.observe(dt)
        amap = maps[0, 0]
        c = self.config
        if h.pixel_threshold is None:
            boxes, rscores = np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        else:
            boxes, rscores = regions_from_map(amap, h.pixel_threshold, c.min_region_area, c.max_regions)
        return amap, float(scores[0]), boxes, rscores

    def process(self, msg: Frame | Clip) -> list[ImageScores]:
        frames = [msg.target, *msg.extra_targets] if isinstance(msg, Clip) else [msg]
        scored = self.count % self.config.every_n == 0 or self.last is None
        if scored:
            self.last = self._score(frames[0])
        self.count += 1
        assert self.last is not None
        amap, score, boxes, rscores = self.last
        h: ImageModelHandle = self.shared
        out = []
        for f in frames:
            size = f.source_size or (f.width, f.height)
            out.append(ImageScores(
                stream_id=f.stream_id, index=f.index, pts=f.pts, wall_time=f.wall_time, raw_score=score,
                score=score, boxes=scale_boxes(boxes, (amap.shape[1], amap.shape[0]), size),
                region_scores=rscores.copy(), label=f.label, video=f.video, timings=f.timings,
                model={"name": h.name, "version": h.version}, width=size[0], height=size[1], anomaly_map=amap,
                mask=f.mask, image=f.image, scored=scored))
        return out
