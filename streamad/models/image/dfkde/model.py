"""DFKDE, Deep Feature Kernel Density Estimation, following anomalib's ``DfkdeModel`` / ``KDEClassifier``.

* Features: each backbone layer globally average-pooled and concatenated (one vector per image; anomalib's default
  ``layers=("layer4",)``).
* Fit and score: anomalib's ``KDEClassifier``
  (:class:`~streamad.models.components.kde_classifier.KDEClassifier`): at most ``max_training_points`` vectors (a
  seeded random subset; anomalib 40000), PCA to ``n_pca_components`` (16), scaled (``scale``: divided by the largest
  projected norm seen in training; ``norm``: each vector to unit length), then a Gaussian KDE with Scott's bandwidth.
* Image score: the anomaly probability ``1 / (1 + exp(0.05 * (log_density - 12)))`` (anomalib
  ``compute_probabilities``, 0.x ``threshold_steepness`` 0.05, ``threshold_offset`` 12). DFKDE classifies whole
  images: anomalib gives no map; here the map is the image score at every pixel, so pixel metrics carry no
  localisation.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from tqdm import tqdm

from streamad.models.components.backbone import FeatureExtractor
from streamad.models.components.kde_classifier import KDEClassifier
from streamad.models.image.base import ImageModel, ImageModelConfig, ImageNetwork
from streamad.models.image.image_set import ImageSet
from streamad.registry import IMAGE_MODELS


__all__ = ["Dfkde", "DfkdeNetwork"]


class DfkdeNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 -> (anomaly_map (N, 1, h, w), score (N,))``, see the module doc."""

    def __init__(self, size: tuple[int, int], extractor: FeatureExtractor, classifier: KDEClassifier) -> None:
        super().__init__(size)
        self.extractor = extractor
        self.classifier = classifier

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, h, w) float`` -> ``(N, sum of layer channels)`` pooled features."""
        return torch.cat([F.adaptive_avg_pool2d(f, 1).flatten(1) for f in self.extractor(x).values()], 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        score = self.classifier(self.features(self.preprocess(images)))
        n = score.shape[0]
        return score.reshape(n, 1, 1, 1).expand(n, 1, self.size[0], self.size[1]), score


@IMAGE_MODELS.register("dfkde")
class Dfkde(ImageModel):
    """DFKDE with anomalib's parameters (see the module doc and ``README.md`` beside this file).

    Config:
        layers: default ``[layer4]``.
        n_pca_components: PCA components (anomalib 16).
        feature_scaling_method: ``scale`` (anomalib default) or ``norm``.
        max_training_points: training vectors kept at most (anomalib 40000).
    """

    version = "1"
    score_meaning = "anomaly probability from the kernel density of the image's pooled features"

    class Config(ImageModelConfig):
        kind: Literal["dfkde"] = "dfkde"
        layers: list[str] = Field(default_factory=lambda: ["layer4"], min_length=1)
        n_pca_components: int = Field(16, ge=1)
        feature_scaling_method: Literal["scale", "norm"] = "scale"
        max_training_points: int = Field(40000, ge=2)

    def _network(self, classifier: KDEClassifier) -> DfkdeNetwork:
        return DfkdeNetwork(self.input_size, self.extractor, classifier).eval()

    def fit(self, train: ImageSet, validation: ImageSet | None = None, progress: bool = False) -> dict[str, Any]:
        c = self.config
        if len(train) <= c.n_pca_components:
            raise ValueError(f"dfkde: need more training images than n_pca_components ({c.n_pca_components}), "
                             f"got {len(train)}")
        t0 = time.perf_counter()
        probe = self._network(KDEClassifier(c.feature_scaling_method))
        rows = []
        with torch.inference_mode():
            for b in tqdm(train.batches(c.batch_size), desc="dfkde: features", unit="batch",
                          total=math.ceil(len(train) / c.batch_size), disable=not progress, leave=False):
                rows.append(probe.features(probe.preprocess(torch.from_numpy(b.images))).numpy())
        x = np.concatenate(rows)
        classifier = KDEClassifier(c.feature_scaling_method).fit(x, c.n_pca_components, c.max_training_points,
                                                                 seed=c.seed)
        self.network = self._network(classifier)
        return {"images": len(train), "training_points": classifier.training_points, "feature_dim": int(x.shape[1]),
                "seconds": round(time.perf_counter() - t0, 2)}

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return self.require_network().classifier.state()

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        return self._network(KDEClassifier.from_arrays(self.config.feature_scaling_method, arrays, "dfkde"))
