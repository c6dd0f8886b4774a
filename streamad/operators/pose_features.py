"""``pose_features``: AI-VAD's pose attribute of every region: COCO-17 keypoints normalised to the region's box
(anomalib ``PoseExtractor``: ``(keypoint - box_xy1) / (box_xy2 - box_xy1)``, flattened to 34 values).

Keypoints come from MoveNet MultiPose Lightning (ONNX with OpenVINO,
:class:`~streamad.models.components.movenet.MoveNetPose`) run on each region's square crop, in place of anomalib's
torchvision Keypoint R-CNN head (no offline weights). Like anomalib, every region gets a pose vector (a detector
box of a bicycle too: an implausible skeleton is itself unusual); a region where MoveNet finds nobody gets zeros.
With ``persons_only`` (streamad extension) only regions the detector labelled person get a pose; the others get a
row of NaN, which the AI-VAD model reads as "no pose attribute" (no pose contribution). It is faster (MoveNet runs
on people only) and the pose density is not spread over fragments of background motion.

MoveNet runs once per detection: a box identical to one of the stream's previous clip (a detection that
``object_regions`` reused, ``detect_every`` > 1) keeps the keypoints found for it then.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from streamad.frames import Clip
from streamad.models.components.centernet import PERSON_LABEL
from streamad.models.components.movenet import MoveNetPose
from streamad.operators.box_reuse import BoxReuse
from streamad.parts import BuildContext, Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["PoseFeatures", "pose_vectors"]


def pose_vectors(keypoints: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """AI-VAD pose features: ``(M, 34) float32`` keypoint x, y relative to each box (0-1 inside it), COCO-17 order
    interleaved ``x0, y0, x1, y1, ...``.

    Args:
        keypoints: ``(M, 17, 3) float32`` x, y in pixels and score (all zero = nobody found: the row is zeros).
        boxes: ``(M, 4)`` xyxy pixels.
    """
    kp = np.asarray(keypoints, np.float32).reshape(-1, 17, 3)
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    wh = np.maximum(b[:, 2:] - b[:, :2], 1.0)[:, None, :]
    f = (kp[:, :, :2] - b[:, None, :2]) / wh
    f[~kp.any(axis=(1, 2))] = 0.0
    return f.reshape(len(f), 34).astype(np.float32)


@OPERATORS.register("pose_features")
class PoseFeatures(Operator):
    """Pose features of the clip's regions. Needs ``clip.regions``; sets ``clip.features["pose"]``
    ``(M, 34) float32`` (:func:`pose_vectors`) and ``clip.keypoints`` ``(M, 17, 3)`` (pixels, score)."""

    class Config(PartConfig):
        """Config of ``kind: pose_features``."""

        kind: Literal["pose_features"] = "pose_features"
        weights: str = Field(description="MoveNet MultiPose ONNX file (../shared/models/movenet-multipose.onnx).")
        crop_size: int = Field(96, ge=32, description="Side of each region's crop in pixels, a multiple of 32 "
                                                      "(96: 2.2 ms a region on one core; 128: 4.6 ms).")
        enlarge: float = Field(1.4, ge=1, description="Crop side / the box's longer side (context for MoveNet).")
        frame: Literal["first", "last"] = Field(
            "last", description="Frame of the clip the keypoints are read from: 'last' (where the regions were "
                                "detected) or 'first' (anomalib, which reads pose and appearance from the clip's "
                                "first frame and detects on the last).")
        persons_only: bool = Field(
            False, description="streamad extension: pose only for regions labelled person (others: NaN rows, no "
                               "pose contribution); anomalib computes a pose for every region.")
        threads: int = Field(1, ge=1, description="CPU threads of one MoveNet call (OpenVINO).")

    @classmethod
    def create_shared(cls, config: "PoseFeatures.Config", ctx: BuildContext) -> Any:
        return MoveNetPose(config.weights, config.crop_size, config.enlarge, config.threads)

    def __init__(self, config: PartConfig, shared: Any, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        self._reuse = BoxReuse((17, 3))  # keypoints of the previous clip's boxes (a reused detection keeps them)

    def process(self, clip: Clip) -> list[Clip]:
        if clip.regions is None:
            raise ValueError(f"stream {self.stream_id}: pose_features needs a region operator (object_regions) "
                             "before it in the pipeline")
        image = (clip.first if self.config.frame == "first" else clip.last).image
        boxes = clip.regions.boxes
        chosen = (clip.regions.labels == PERSON_LABEL if self.config.persons_only
                  else np.ones(len(boxes), bool))
        kp = np.zeros((len(boxes), 17, 3), np.float32)
        kp[chosen] = self._reuse.reuse(boxes[chosen], lambda new: self.shared(image, new))
        feats = pose_vectors(kp, boxes)
        feats[~chosen] = np.nan
        clip.features["pose"] = feats
        clip.keypoints = kp
        return [clip]
