"""MoveNet MultiPose Lightning (Google, 2021) COCO-17 human keypoints, run with OpenVINO from the ONNX file in
``../shared/models/movenet-multipose.onnx``, one region crop at a time: AI-VAD's pose attribute on a CPU, in place of
anomalib's torchvision Keypoint R-CNN head."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from streamad.errors import ModelError
from streamad.models.components.openvino_net import OpenVinoNet

__all__ = ["MoveNetPose", "square_crop_box"]


def square_crop_box(box: np.ndarray, enlarge: float) -> np.ndarray:
    """The square ``(4,) float64`` xyxy box (pixels) centred on ``box``, with side ``enlarge`` times its longer
    side (it may extend past the image)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(x2 - x1, y2 - y1, 1.0) * enlarge / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


class MoveNetPose:
    """Keypoints of the person in each region box.

    Each box is enlarged by ``enlarge``, made square, cut out (zero padding beyond the image) and resized to
    ``crop_size`` x ``crop_size``; MoveNet finds up to 6 people in the crop and the one whose box centre is nearest
    the crop centre is kept (people cut by the crop's edge are thereby ignored).

    Args:
        path: the ONNX (or IR) file; input ``[1, H, W, 3] int32`` RGB 0-255, output ``[1, 6, 56]``
            (17 x (y, x, score) in 0-1 crop coordinates, then ymin, xmin, ymax, xmax, person score).
        crop_size: crop side in pixels, a multiple of 32 (96 = 2.2 ms a crop, 128 = 4.6 ms on one core).
        enlarge: crop side / longer box side.
        threads: OpenVINO CPU threads per call.
        precision: OpenVINO inference precision, ``f32`` (default) or ``bf16``
            (:mod:`~streamad.models.components.openvino_net`).

    Raises:
        ModelError: the file is missing or unreadable, or ``crop_size`` is not a positive multiple of 32.
        ValueError: unknown ``precision``.
    """

    def __init__(self, path: str | Path, crop_size: int = 96, enlarge: float = 1.4, threads: int = 1,
                 precision: str = "f32") -> None:
        if crop_size <= 0 or crop_size % 32:
            raise ModelError(f"MoveNet pose: crop_size must be a positive multiple of 32 pixels, got {crop_size}")
        self.crop_size = crop_size
        self.enlarge = enlarge
        self.net = OpenVinoNet(path, "MoveNet pose", input_shape=[1, crop_size, crop_size, 3], threads=threads,
                               precision=precision)

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Keypoints of each box of ``image`` (``(H, W, 3) uint8 RGB``).

        Returns:
            ``(M, 17, 3) float32``: x, y in the image's pixels and the keypoint score (0-1), COCO-17 order; all zero
            for a box where MoveNet finds nobody.
        """
        out = np.zeros((len(boxes), 17, 3), np.float32)
        s = self.crop_size
        for i, box in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
            sq = square_crop_box(box, self.enlarge)
            side = sq[2] - sq[0]
            # affine map square -> crop, zero border outside the image
            m = np.array([[s / side, 0, -sq[0] * s / side], [0, s / side, -sq[1] * s / side]], np.float32)
            crop = cv2.warpAffine(image, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            people = self.net(crop[None].astype(np.int32))[0][0]
            centre = ((people[:, 51] + people[:, 53]) / 2 - 0.5) ** 2 + ((people[:, 52] + people[:, 54]) / 2 - 0.5) ** 2
            valid = people[:, 55] > 0.0
            if not valid.any():
                continue
            j = int(np.argmin(np.where(valid, centre, np.inf)))
            kp = people[j, :51].reshape(17, 3)
            out[i, :, 0] = sq[0] + kp[:, 1] * side
            out[i, :, 1] = sq[1] + kp[:, 0] * side
            out[i, :, 2] = kp[:, 2]
        return out
