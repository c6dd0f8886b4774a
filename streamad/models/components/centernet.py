"""CenterNet (Zhou, Wang, Krähenbühl, "Objects as Points", 2019) MobileNetV3 COCO object detector, run with
OpenVINO from the ONNX file in ``../shared/models/centernet.onnx`` (see that folder's README): AI-VAD's region
detector on a CPU, in place of anomalib's Mask R-CNN."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from streamad.models.components.openvino_net import OpenVinoNet

__all__ = ["CenterNetDetector", "COCO80_TO_91", "PERSON_LABEL"]

#: COCO category id (1-90, torchvision's labels) of each of the 80 contiguous class indices the detector outputs.
COCO80_TO_91 = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
                         28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
                         54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
                         81, 82, 84, 85, 86, 87, 88, 89, 90], np.int64)
#: COCO category id of a person (anomalib ``PERSON_LABEL``).
PERSON_LABEL = 1


class CenterNetDetector:
    """COCO boxes of one RGB frame.

    The network takes ``[1, 512, 512, 3] float32`` RGB 0-255 and returns 100 detections (x1, y1, x2, y2 in input
    pixels, score, class index 0-79). Its scores are low by design (0.3-0.6 for clear pedestrians), so its
    ``box_score_thresh`` is lower than Mask R-CNN's 0.7-0.8.

    Args:
        path: the ONNX (or IR) file.
        threads: OpenVINO CPU threads per call.
        precision: OpenVINO inference precision, ``f32`` (default) or ``bf16`` (faster on CPUs with bfloat16 units;
            scores move by up to about 0.04; :mod:`~streamad.models.components.openvino_net`).

    Raises:
        ModelError: the file is missing or unreadable. ValueError: unknown ``precision``.
    """

    input_size = 512

    def __init__(self, path: str | Path, threads: int = 1, precision: str = "f32") -> None:
        self.net = OpenVinoNet(path, "CenterNet detector", threads=threads, precision=precision)

    def __call__(self, image: np.ndarray, score_thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detections of ``image`` (``(H, W, 3) uint8 RGB``) with score ``>= score_thresh``.

        Returns:
            ``boxes (M, 4) float32`` xyxy in the image's pixels (clipped to it), ``scores (M,) float32``,
            ``labels (M,) int64`` COCO category ids (1 = person), in decreasing score order.
        """
        h, w = image.shape[:2]
        s = self.input_size
        x = cv2.resize(image, (s, s), interpolation=cv2.INTER_LINEAR).astype(np.float32)[None]
        det = self.net(x)[0][0]
        det = det[det[:, 4] >= score_thresh]
        det = det[np.argsort(-det[:, 4], kind="stable")]
        boxes = det[:, :4] * np.array([w / s, h / s, w / s, h / s], np.float32)
        boxes = np.clip(boxes, 0, [w - 1, h - 1, w - 1, h - 1]).astype(np.float32)
        labels = COCO80_TO_91[np.clip(det[:, 5].astype(np.int64), 0, 79)]
        return boxes, det[:, 4].astype(np.float32), labels
