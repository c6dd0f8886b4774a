"""``object_regions``: AI-VAD's region extractor: an object detector on the clip's last frame plus foreground boxes
outside its detections, then anomalib's area and overlap filters (anomalib ``RegionExtractor``).

Detectors (``detector``):

* ``centernet`` (default): CenterNet MobileNetV3 COCO, ONNX run with OpenVINO
  (:class:`~streamad.models.components.centernet.CenterNetDetector`); ``weights`` is the ``.onnx`` file
  (``../shared/models/centernet.onnx``). Its scores are low by design, so ``box_score_thresh`` defaults to 0.3.
* ``maskrcnn``: torchvision ``maskrcnn_resnet50_fpn_v2`` as anomalib, from a local state dict given as ``weights``
  (use anomalib's ``box_score_thresh`` of 0.7 / 0.8 with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from streamad.frames import Clip, Regions
from streamad.models.components.centernet import PERSON_LABEL, CenterNetDetector
from streamad.models.components.tiled_detection import TiledDetector
from streamad.operators.foreground_regions import RegionFilterConfig, filter_boxes, foreground_boxes
from streamad.parts import BuildContext, Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["ObjectRegions", "FOREGROUND_SCORE"]

#: Score given to foreground boxes (anomalib).
FOREGROUND_SCORE = 0.5


@dataclass
class _Detection:
    """What the streams of an ``object_regions`` stage share: the detector and the ``detect_every`` in effect."""

    detector: Any  # (image (H, W, 3) uint8 RGB, score_thresh) -> boxes, scores, labels
    every: int


@OPERATORS.register("object_regions")
class ObjectRegions(Operator):
    """Regions of a clip: detections on the last frame, plus (``enable_foreground_detections``) the connected
    components of the first/last frame difference that fall outside every detection, filtered as anomalib.

    Output: ``clip.regions`` with boxes in the clip's frame pixels, detector scores, COCO category ids (1 = person);
    foreground boxes get label 0 and score 0.5.
    """

    class Config(RegionFilterConfig):
        """Config of ``kind: object_regions`` (anomalib ``RegionExtractor`` names and defaults)."""

        kind: Literal["object_regions"] = "object_regions"
        detector: Literal["centernet", "maskrcnn"] = Field(
            "centernet", description="'centernet' (ONNX with OpenVINO) or 'maskrcnn' (torchvision, local weights).")
        weights: str = Field(description="Detector file: centernet.onnx, or a maskrcnn_resnet50_fpn_v2 state dict.")
        box_score_thresh: float = Field(
            0.3, ge=0, le=1, description="Detections below this confidence are dropped (anomalib 0.7 / 0.8 for "
                                         "Mask R-CNN; CenterNet's scores are lower, 0.3-0.6 for pedestrians).")
        persons_only: bool = Field(False, description="Keep only regions labelled person (anomalib).")
        enable_foreground_detections: bool = Field(
            True, description="Add boxes around moving pixels that no detection covers (anomalib).")
        foreground_kernel_size: int = Field(3, ge=1, description="Gaussian blur kernel (pixels) of the frame difference.")
        foreground_binary_threshold: int = Field(
            18, ge=0, le=255, description="Threshold on the 0-255 grayscale frame difference (anomalib).")
        threads: int = Field(1, ge=1, description="CPU threads of one detector call (OpenVINO).")
        inference_precision: Literal["f32", "bf16"] = Field(
            "f32", description="CenterNet's OpenVINO precision: 'f32' (the same boxes on every CPU) or 'bf16' "
                               "(about 1.5x faster where the CPU has bfloat16 units, f32 elsewhere; scores move by "
                               "up to 0.04). Fit and serve a model with the same value.")
        detect_every: int = Field(
            1, ge=1, description="streamad extension: run the detector on every Nth clip of a stream (1 = every "
                                 "clip, anomalib) and reuse its detections on the clips between; foreground boxes "
                                 "are found on every clip. Applies to eval and serve; fit detects on every clip, so "
                                 "the densities are fitted on exact regions and one fitted model serves any value. "
                                 "Detection is the costliest step of the pipeline; at walking speed an object moves "
                                 "a few pixels between two frames.")
        detector_min_scale: float | None = Field(
            None, gt=0, description="streamad extension (CenterNet): least network input pixels per frame pixel. A "
                                    "frame larger than the detector's 512x512 input divided by this is also run in "
                                    "overlapping tiles of that side (SAHI), so far, small people keep enough pixels "
                                    "to be detected; 1.0 = no frame pixel is shrunk. A frame that fits is run whole, "
                                    "as without it. None = the whole frame only (anomalib). Costs one detector call "
                                    "per tile; benchmarks/person_recall.py measures recall by person height.")
        detector_tile_overlap: float = Field(0.2, ge=0, lt=1, description="Share of a tile side that neighbouring "
                                                                          "tiles share (detector_min_scale).")

        @model_validator(mode="after")
        def _tiles_need_centernet(self) -> "ObjectRegions.Config":
            if self.detector_min_scale is not None and self.detector != "centernet":
                raise ValueError("detector_min_scale tiles CenterNet's fixed 512x512 input; Mask R-CNN resizes "
                                 "frames itself (leave detector_min_scale unset)")
            return self

    @classmethod
    def create_shared(cls, config: "ObjectRegions.Config", ctx: BuildContext) -> Any:
        every = 1 if ctx is not None and ctx.mode == "fit" else config.detect_every
        if config.detector == "maskrcnn":
            from streamad.models.components.maskrcnn import MaskRcnnDetector

            return _Detection(MaskRcnnDetector(config.weights), every)
        detector: Any = CenterNetDetector(config.weights, threads=config.threads,
                                          precision=config.inference_precision)
        if config.detector_min_scale is not None:
            detector = TiledDetector(detector, CenterNetDetector.input_size, config.detector_min_scale,
                                     config.detector_tile_overlap)
        return _Detection(detector, every)

    def __init__(self, config: PartConfig, shared: Any, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        self._clips = 0  # clips of this stream seen so far
        self._detections: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # the last detector output

    def _detect(self, clip: Clip) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The detector's ``(boxes, scores, labels)`` for the clip's last frame, or the last ones of this stream
        when ``detect_every`` says this clip reuses them."""
        if self._detections is None or self._clips % self.shared.every == 0:
            self._detections = self.shared.detector(clip.last.image, self.config.box_score_thresh)
        self._clips += 1
        return self._detections

    def process(self, clip: Clip) -> list[Clip]:
        c = self.config
        boxes, scores, labels = self._detect(clip)
        if c.enable_foreground_detections:
            fg = foreground_boxes(clip.first.image, clip.last.image, c.foreground_kernel_size,
                                  c.foreground_binary_threshold, exclude=boxes)
            boxes = np.concatenate([boxes, fg]).astype(np.float32)
            scores = np.concatenate([scores, np.full(len(fg), FOREGROUND_SCORE, np.float32)])
            labels = np.concatenate([labels, np.zeros(len(fg), np.int64)])
        clip.regions = filter_boxes(Regions(boxes, scores.astype(np.float32), labels.astype(np.int64)),
                                    c.min_area(clip.last.image.shape), c.max_bbox_overlap, c.persons_only,
                                    PERSON_LABEL)
        return [clip]
