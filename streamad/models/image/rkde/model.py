"""R-KDE, region-based kernel density estimation, following anomalib's ``Rkde`` / ``RkdeModel`` (paper: "Region
Based Anomaly Detection With Real-Time Training and Analysis", https://ieeexplore.ieee.org/abstract/document/8999287).

* Regions (:class:`~streamad.models.image.rkde.regions.RegionProposer`): CenterNet COCO detections (in place of
  anomalib's Faster R-CNN) with anomalib's filters (score >= 0.001, sides >= 25 px, NMS IoU 0.3, at most 100), on
  the frame resized to ``input_size``; a ``grid`` / ``image`` fallback where none survives. ``regions: grid``
  (the ``grid`` x ``grid`` cells, no detector; chosen on the Magnetic Tile validation half, see ``README.md``) and
  ``detector_and_grid`` are streamad's alternatives.
* Region features: the backbone runs once on the frame and each ``layers`` map is ``roi_align``-pooled inside each
  box (``roi_output`` x ``roi_output`` bins, averaged), the layers concatenated
  (:func:`~streamad.models.components.region_appearance.pool_regions`): 112 + 320 = 432 values for EfficientNet-Lite0
  ``layer3`` + ``layer4``. anomalib instead RoI-pools a VGG16's conv5 (7x7) and passes it through the fully connected
  fc6 / fc7 layers of the paper's R-CNN feature network (4096 values, weights downloaded from a GitHub release);
  those weights cannot be had offline here, and the KDE sees 16 PCA components of either.
* Region scores: anomalib's ``KDEClassifier``
  (:class:`~streamad.models.components.kde_classifier.KDEClassifier`: at most ``max_training_points`` training
  regions, PCA to ``n_pca_components``, ``scale`` / ``norm`` scaling, Gaussian KDE, anomaly probability
  ``1 / (1 + exp(0.05 * (log_density - 12)))``): a region of low density scores high.
* Image outputs: the score is the largest region score; the map paints each region's score onto its box (the largest
  where boxes overlap, 0 outside every box; :func:`~streamad.models.image.rkde.paint.paint_boxes`); the boxes and
  their scores come with :meth:`Rkde.predict` (``ImagePrediction.boxes``). anomalib's R-KDE is a detection model
  (boxes and box scores); the image score and map are what its post-processing derives from them.

Not exportable (:attr:`Rkde.exportable` ``False``): the detector is a separate OpenVINO network whose boxes feed the
torch network, while ``streamad export`` converts one frames-to-map graph.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from tqdm import tqdm

from streamad.models.components.backbone import FeatureExtractor
from streamad.models.components.kde_classifier import KDEClassifier
from streamad.models.components.region_appearance import pool_regions
from streamad.models.image.base import ImageModel, ImageModelConfig, ImageNetwork, ImagePrediction
from streamad.models.image.image_set import ImageSet
from streamad.models.image.preprocess import Preprocess, as_batch
from streamad.models.image.rkde.paint import paint_boxes
from streamad.models.image.rkde.regions import RegionProposer
from streamad.registry import IMAGE_MODELS

__all__ = ["Rkde", "RkdeNetwork", "as_rois"]


def as_rois(boxes: list[np.ndarray]) -> torch.Tensor:
    """Per-image ``(M_i, 4)`` xyxy boxes with inclusive pixel extents -> ``(sum M_i, 5) float32`` ``roi_align`` rows
    ``(image index, x1, y1, x2 + 1, y2 + 1)``."""
    rows = [np.concatenate([np.full((len(b), 1), i, np.float32), b[:, :2], b[:, 2:] + 1.0], axis=1)
            for i, b in enumerate(boxes)]
    return torch.from_numpy(np.concatenate(rows).astype(np.float32)) if rows else torch.zeros(0, 5)


class RkdeNetwork(ImageNetwork):
    """The torch part of R-KDE: ``(images (N, H, W, 3) uint8 RGB, rois (M, 5) float32) -> (M,) float32`` region
    scores (anomaly probabilities in ``(0, 1)``), ``rois`` as :func:`as_rois` in pixels of the input size.

    Unlike the other image networks it does not map frames to maps by itself: the regions come from the detector
    (:meth:`Rkde.predict`).
    """

    def __init__(self, size: tuple[int, int], extractor: FeatureExtractor, classifier: KDEClassifier,
                 roi_output: int) -> None:
        super().__init__(size)
        self.extractor = extractor
        self.classifier = classifier
        self.roi_output = roi_output

    def features(self, x: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """``x (N, 3, h, w)`` 0-255 float, ``rois (M, 5)`` -> ``(M, D) float32`` region features."""
        return pool_regions(self.extractor(x), rois, self.extractor.strides, self.roi_output)

    def forward(self, images: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.preprocess(images), rois))


@IMAGE_MODELS.register("rkde")
class Rkde(ImageModel):
    """R-KDE with anomalib's region and KDE parameters (see the module doc and ``README.md`` beside this file).

    Config:
        regions: ``detector`` (CenterNet, anomalib's R-KDE), ``grid`` (``grid`` x ``grid`` cells of every image, no
            detector) or ``detector_and_grid`` (both).
        detector_weights: the CenterNet ONNX file (``../shared/models/centernet.onnx``), required unless
            ``regions`` is ``grid``; a missing file is a :class:`~streamad.errors.ModelError` naming the path (at
            fit, and when a fitted model is loaded).
        roi_score_threshold: detector confidence kept at least (anomalib 0.001).
        min_box_size: smallest box side kept, pixels of ``input_size`` (anomalib 25).
        iou_threshold: NMS IoU over all boxes (anomalib 0.3).
        max_detections_per_image: regions per image at most (anomalib 100).
        fallback: ``grid`` (``grid`` x ``grid`` cells) or ``image`` (one box) for ``regions: detector`` when no
            detection survives (streamad; anomalib has none).
        grid: cells per side of the grid regions and of the ``grid`` fallback.
        layers: backbone layers pooled in each region (default ``[layer3, layer4]``).
        roi_output: ``roi_align`` bins per side, averaged.
        n_pca_components: PCA components (anomalib 16).
        feature_scaling_method: ``scale`` (anomalib default) or ``norm``.
        max_training_points: training regions kept at most (a seeded sample; anomalib 40000).
    """

    version = "1"
    score_meaning = "largest anomaly probability of the image's regions under a kernel density of training regions"
    exportable = False

    class Config(ImageModelConfig):
        kind: Literal["rkde"] = "rkde"
        regions: Literal["detector", "grid", "detector_and_grid"] = "detector"
        detector_weights: str | None = Field(None, description="CenterNet ONNX file (../shared/models/centernet.onnx).")
        roi_score_threshold: float = Field(0.001, ge=0, le=1)
        min_box_size: float = Field(25, ge=0)
        iou_threshold: float = Field(0.3, gt=0, le=1)
        max_detections_per_image: int = Field(100, ge=1)
        fallback: Literal["grid", "image"] = "grid"
        grid: int = Field(4, ge=1)
        layers: list[str] = Field(default_factory=lambda: ["layer3", "layer4"], min_length=1)
        roi_output: int = Field(2, ge=1)
        n_pca_components: int = Field(16, ge=1)
        feature_scaling_method: Literal["scale", "norm"] = "scale"
        max_training_points: int = Field(40000, ge=2)

        def model_post_init(self, __context: Any) -> None:
            super().model_post_init(__context)
            if self.regions != "grid" and self.detector_weights is None:
                raise ValueError(f"detector_weights: required with regions {self.regions!r} (the CenterNet ONNX "
                                 f"file, ../shared/models/centernet.onnx); regions 'grid' needs no detector")

    def __init__(self, config: ImageModelConfig) -> None:
        super().__init__(config)
        self._proposer: RegionProposer | None = None
        self._preprocess = Preprocess(self.input_size)

    @property
    def proposer(self) -> RegionProposer:
        """The region step (built on first use).

        Raises:
            ModelError: ``detector_weights`` is missing or unreadable.
        """
        if self._proposer is None:
            c = self.config
            self._proposer = RegionProposer(c.detector_weights, c.roi_score_threshold, c.min_box_size,
                                            c.iou_threshold, c.max_detections_per_image, c.fallback, c.grid, c.regions)
        return self._proposer

    def _network(self, classifier: KDEClassifier) -> RkdeNetwork:
        return RkdeNetwork(self.input_size, self.extractor, classifier, self.config.roi_output).eval()

    def propose(self, images: np.ndarray) -> tuple[torch.Tensor, list[np.ndarray], int]:
        """Regions of a frame ``(H, W, 3)`` or a batch ``(N, H, W, 3)`` of uint8 RGB frames, resized to the input
        size first (as every image network does).

        Returns:
            ``x (N, 3, h, w) float32`` the resized frames 0-255, per image ``(M_i, 4) float32`` boxes in input
            pixels (``M_i >= 1``), the number of images whose boxes are detections rather than the fallback.

        Raises:
            ModelError: the detector file is missing. ValueError: not uint8 RGB.
        """
        with torch.inference_mode():
            x = self._preprocess(torch.from_numpy(as_batch(images)))
        frames = x.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()
        found = [self.proposer(f) for f in frames]
        return x, [b for b, _ in found], sum(d for _, d in found)

    def fit(self, train: ImageSet, validation: ImageSet | None = None, progress: bool = False) -> dict[str, Any]:
        c = self.config
        t0 = time.perf_counter()
        probe = self._network(KDEClassifier(c.feature_scaling_method))
        rows, detected = [], 0
        with torch.inference_mode():
            for b in tqdm(train.batches(c.batch_size), desc="rkde: regions", unit="batch",
                          total=math.ceil(len(train) / c.batch_size), disable=not progress, leave=False):
                x, boxes, d = self.propose(b.images)
                detected += d
                rows.append(probe.features(x, as_rois(boxes)).numpy())
        feats = np.concatenate(rows)
        classifier = KDEClassifier(c.feature_scaling_method).fit(feats, c.n_pca_components, c.max_training_points,
                                                                 seed=c.seed)
        self.network = self._network(classifier)
        return {"images": len(train), "regions": int(feats.shape[0]), "images_with_detections": detected,
                "training_points": classifier.training_points, "feature_dim": int(feats.shape[1]),
                "seconds": round(time.perf_counter() - t0, 2)}

    def predict(self, images: np.ndarray) -> ImagePrediction:
        """Score a frame ``(H, W, 3)`` or a batch ``(N, H, W, 3)`` of uint8 RGB frames: the base class's outputs plus
        ``boxes`` (per image ``(M_i, 5)``: xyxy in input pixels and the region score).

        Raises:
            ModelError: not fitted, or the detector file is missing. ValueError: not uint8 RGB.
        """
        net = self.require_network()
        with torch.inference_mode():
            x, boxes, _ = self.propose(images)
            scores = net.classifier(net.features(x, as_rois(boxes))).numpy().astype(np.float32)
        per_image = np.split(scores, np.cumsum([len(b) for b in boxes])[:-1])
        maps = np.stack([paint_boxes(b, s, self.input_size) for b, s in zip(boxes, per_image)])[:, None]
        return ImagePrediction(maps, np.array([s.max() for s in per_image], np.float32),
                               [np.concatenate([b, s[:, None]], axis=1) for b, s in zip(boxes, per_image)])

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return self.require_network().classifier.state()

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        self._proposer = None
        _ = self.proposer  # a missing detector file fails the load (naming it), not the first frame
        return self._network(KDEClassifier.from_arrays(self.config.feature_scaling_method, arrays, "rkde"))
