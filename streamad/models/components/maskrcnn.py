"""torchvision Mask R-CNN v2 (He et al., "Mask R-CNN", ICCV 2017; Li et al., "Benchmarking Detection Transfer
Learning with Vision Transformers", 2021, the v2 recipe) from a local weights file: anomalib AI-VAD's region detector
(``maskrcnn_resnet50_fpn_v2``, ``rpn_nms_thresh=0.3``), for users who have its COCO weights (for example
``maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth`` from a torch hub cache). Nothing is downloaded."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from streamad.models.components.state_dict import load_strict

__all__ = ["MaskRcnnDetector"]


class MaskRcnnDetector:
    """COCO boxes of one RGB frame from torchvision's ``maskrcnn_resnet50_fpn_v2``.

    Args:
        path: local state-dict file of the COCO model (loaded with ``torch.load(weights_only=True)``, strict).

    Raises:
        ModelError: the file is missing, unreadable or does not match the architecture.
    """

    def __init__(self, path: str | Path) -> None:
        from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

        self.net = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, box_score_thresh=0.0,
                                            rpn_nms_thresh=0.3)
        load_strict(self.net, path, "Mask R-CNN detector (maskrcnn_resnet50_fpn_v2)")
        self.net.eval()
        self._lock = threading.Lock()

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, score_thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detections of ``image`` (``(H, W, 3) uint8 RGB``) with score ``>= score_thresh`` (anomalib
        ``box_score_thresh``, 0.7-0.8).

        Returns:
            ``boxes (M, 4) float32`` xyxy pixels, ``scores (M,) float32``, ``labels (M,) int64`` COCO ids.
        """
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        with self._lock:
            out = self.net([x])[0]
        keep = out["scores"] >= score_thresh
        return (out["boxes"][keep].numpy().astype(np.float32), out["scores"][keep].numpy().astype(np.float32),
                out["labels"][keep].numpy().astype(np.int64))
