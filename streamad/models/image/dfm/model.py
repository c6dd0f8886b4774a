"""DFM, Deep Feature Modeling (Ahuja, Ndiour, Kalyanpur, Tickoo, "Probabilistic Modeling of Deep Features for
Out-of-Distribution and Adversarial Detection", arXiv 1909.11786), following anomalib's ``DFMModel``.

* Features: one backbone layer, average-pooled with ``pooling_kernel_size``, flattened per image
  (``C * h' * w'`` values).
* Fit: PCA keeping ``pca_level`` of the variance (scikit-learn), then a Gaussian of the projected features
  (:class:`~streamad.models.components.multivariate_gaussian.GaussianNLL`).
* ``score_type: fre``: image score = feature reconstruction error ``||(x - mu) - P P^T (x - mu)||^2``; anomaly map =
  the error summed over channels at each pooled position, bilinearly upsampled (anomalib), then Gaussian blur sigma
  4 as every streamad image model. ``score_type: nll``: image score = the Gaussian's negative log-likelihood of the
  projected features; anomalib gives no map then (classification only), here the map is the image score at every
  pixel, so pixel metrics of ``nll`` carry no localisation.
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

from streamad.errors import ModelError
from streamad.models.components.backbone import FeatureExtractor
from streamad.models.components.dynamic_buffers import assign_buffers, buffer_arrays
from streamad.models.components.gaussian_blur import GaussianBlur2d
from streamad.models.components.multivariate_gaussian import GaussianNLL
from streamad.models.components.pca import PCA
from streamad.models.image.base import ImageModel, ImageModelConfig, ImageNetwork
from streamad.models.image.image_set import ImageSet
from streamad.registry import IMAGE_MODELS


__all__ = ["Dfm", "DfmNetwork"]


class DfmNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 -> (anomaly_map (N, 1, h, w), score (N,))``, see the module doc."""

    def __init__(self, size: tuple[int, int], extractor: FeatureExtractor, pooling_kernel_size: int,
                 score_type: str, pca: PCA, gaussian: GaussianNLL, sigma: float = 4.0) -> None:
        super().__init__(size)
        self.extractor = extractor
        self.kernel = int(pooling_kernel_size)
        self.score_type = score_type
        self.pca = pca
        self.gaussian = gaussian
        self.blur = GaussianBlur2d(sigma)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, h, w) float`` -> pooled layer features ``(N, C, h', w')``."""
        f = next(iter(self.extractor(x).values()))
        return F.avg_pool2d(f, self.kernel) if self.kernel > 1 else f

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(self.preprocess(images))
        n, c, h, w = f.shape
        flat = f.reshape(n, c * h * w)
        z = self.pca(flat)
        if self.score_type == "nll":
            score = self.gaussian(z)
            return score.reshape(n, 1, 1, 1).expand(n, 1, self.size[0], self.size[1]), score
        err = (flat - self.pca.mean) - self.pca.reconstruct(z)
        sq = (err * err).reshape(n, c, h, w)
        score = sq.flatten(1).sum(1)
        fmap = F.interpolate(sq.sum(1, keepdim=True), size=self.size, mode="bilinear", align_corners=False)
        return self.blur(fmap), score


@IMAGE_MODELS.register("dfm")
class Dfm(ImageModel):
    """DFM with anomalib's parameters (see the module doc and ``README.md`` beside this file).

    Config:
        layers: exactly one layer (anomalib ``layer``; default ``[layer3]``).
        pooling_kernel_size: average pooling of the layer's features (anomalib 4).
        pca_level: fraction of variance the PCA keeps (anomalib 0.97), or a component count (``>= 1``).
        score_type: ``fre`` (feature reconstruction error, with a map) or ``nll``.
    """

    version = "1"
    score_meaning = "feature reconstruction error of the PCA (fre) or Gaussian negative log-likelihood (nll)"

    class Config(ImageModelConfig):
        kind: Literal["dfm"] = "dfm"
        layers: list[str] = Field(default_factory=lambda: ["layer3"], min_length=1, max_length=1)
        pooling_kernel_size: int = Field(4, ge=1)
        pca_level: float = Field(0.97, gt=0)
        score_type: Literal["fre", "nll"] = "fre"

    def _network(self, pca: PCA, gaussian: GaussianNLL) -> DfmNetwork:
        c = self.config
        return DfmNetwork(self.input_size, self.extractor, c.pooling_kernel_size, c.score_type, pca, gaussian).eval()

    def fit(self, train: ImageSet, validation: ImageSet | None = None, progress: bool = False) -> dict[str, Any]:
        c = self.config
        if len(train) < 2:
            raise ValueError(f"dfm: need at least 2 training images, got {len(train)}")
        t0 = time.perf_counter()
        probe = self._network(PCA(), GaussianNLL())
        rows = []
        with torch.inference_mode():
            for b in tqdm(train.batches(c.batch_size), desc="dfm: features", unit="batch",
                          total=math.ceil(len(train) / c.batch_size), disable=not progress, leave=False):
                f = probe.features(probe.preprocess(torch.from_numpy(b.images)))
                rows.append(f.reshape(f.shape[0], -1).numpy())
        x = np.concatenate(rows)
        pca = PCA().fit(x, c.pca_level if c.pca_level < 1 else int(c.pca_level), seed=c.seed)
        gaussian = GaussianNLL()
        with torch.inference_mode():
            gaussian.fit(pca(torch.from_numpy(x)).double().numpy())
        self.network = self._network(pca, gaussian)
        return {"images": len(train), "feature_dim": int(x.shape[1]), "pca_components": pca.n_components,
                "seconds": round(time.perf_counter() - t0, 2)}

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        net = self.require_network()
        return ({"pca_components": net.pca.n_components},
                {**buffer_arrays(net.pca, "pca."), **buffer_arrays(net.gaussian, "gaussian.")})

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        pca, gaussian = PCA(), GaussianNLL()
        assign_buffers(pca, arrays, "pca.", "dfm")
        assign_buffers(gaussian, arrays, "gaussian.", "dfm")
        net = self._network(pca, gaussian)
        with torch.inference_mode():  # the shapes must fit the backbone's feature size
            try:
                net(self.example_input())
            except RuntimeError as exc:
                raise ModelError(f"dfm: fitted arrays do not fit backbone {self.config.backbone} layer "
                                 f"{self.config.layers[0]} at input size {list(self.input_size)}: "
                                 f"{str(exc).splitlines()[0]}") from None
        return net
