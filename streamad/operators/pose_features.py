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
``object_regions`` reused, ``detect_every`` > 1) keeps the keypoints found for it then. With ``refresh_every`` N > 1
(streamad extension) it runs once every N detections of a person: a person detected again, overlapping its box of the
previous clip by IoU >= ``track_iou``, keeps the pose (keypoints relative to its box) measured up to N - 1 detections
before (:class:`~streamad.operators.box_reuse.BoxReuse`).
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
        inference_precision: Literal["f32", "bf16"] = Field(
            "f32", description="MoveNet's OpenVINO precision: 'f32' (the same keypoints on every CPU) or 'bf16' "
                               "(faster where the CPU has bfloat16 units, f32 elsewhere). Fit and serve a model "
                               "with the same value.")
        refresh_every: int = Field(
            1, ge=1, description="streamad extension: MoveNet measures a tracked person's pose on at least every "
                                 "Nth detection and the detections between keep it (relative to the new box); 1 = "
                                 "every detection. Applies to eval and serve; fit measures every detection.")
        track_iou: float = Field(0.5, gt=0, le=1, description="Least IoU of a box with one of the previous clip's "
                                                               "to count as the same person (refresh_every > 1).")

    @classmethod
    def create_shared(cls, config: "PoseFeatures.Config", ctx: BuildContext) -> Any:
        net = MoveNetPose(config.weights, config.crop_size, config.enlarge, config.threads,
                          config.inference_precision)
        net.refresh_every = 1 if ctx is not None and ctx.mode == "fit" else config.refresh_every
        return net

    def __init__(self, config: PartConfig, shared: Any, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        # keypoints of the previous clip's boxes: in pixels, or relative to the box (x, y in 0-1) to carry them over
        self._reuse = BoxReuse((17, 3), getattr(shared, "refresh_every", 1), self.config.track_iou)

    def _keypoints(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``(M, 17, 3)`` keypoints (pixels, score) of ``boxes``, MoveNet's or carried over (module doc)."""
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        if self._reuse.refresh_every == 1:  # identical boxes only: MoveNet's keypoints as they are
            return self._reuse.reuse(b, lambda new: self.shared(image, new))
        wh = np.maximum(b[:, 2:] - b[:, :2], 1.0)[:, None, :]

        def relative(new: np.ndarray) -> np.ndarray:
            kp = self.shared(image, new)
            nobody = ~kp.any(axis=(1, 2))
            nwh = np.maximum(new[:, 2:] - new[:, :2], 1.0)[:, None, :]
            kp[..., :2] = (kp[..., :2] - new[:, None, :2]) / nwh
            kp[nobody] = 0.0  # nobody found stays all zero
            return kp

        rel = self._reuse.reuse(b, relative)
        kp = rel.copy()
        kp[..., :2] = rel[..., :2] * wh + b[:, None, :2]
        kp[~rel.any(axis=(1, 2))] = 0.0
        return kp

    def process(self, clip: Clip) -> list[Clip]:
        if clip.regions is None:
            raise ValueError(f"stream {self.stream_id}: pose_features needs a region operator (object_regions) "
                             "before it in the pipeline")
        image = (clip.first if self.config.frame == "first" else clip.last).image
        boxes = clip.regions.boxes
        chosen = (clip.regions.labels == PERSON_LABEL if self.config.persons_only
                  else np.ones(len(boxes), bool))
        kp = np.zeros((len(boxes), 17, 3), np.float32)
        kp[chosen] = self._keypoints(image, boxes[chosen])
        feats = pose_vectors(kp, boxes)
        feats[~chosen] = np.nan
        clip.features["pose"] = feats
        clip.keypoints = kp
        return [clip]
