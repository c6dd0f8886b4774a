"""PaDiM (Defard, Setkov, Loesch, Audigier, "PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection
and Localization", ICPR 2020, arXiv 2011.08785), following anomalib's ``PadimModel``.

* Embedding: the backbone layers, deeper ones nearest-upsampled to the first layer's resolution and concatenated;
  a seeded random subset of ``n_features`` channels is kept (anomalib: ``random.sample``; 100 for resnet18).
  ``patch_size`` optionally averages each layer over a neighbourhood first (PatchCore's locally aware features,
  :class:`~streamad.models.components.patch_pool.PatchPool`); the default 1 is PaDiM's embedding, unpooled.
* Fit: at every position of the embedding, a Gaussian (mean, covariance + 0.01 I, kept inverted), accumulated
  batch by batch (:class:`~streamad.models.components.multivariate_gaussian.PatchGaussian`).
* Anomaly map: the Mahalanobis distance of each position to its Gaussian, bilinearly upsampled to the input size,
  Gaussian blur sigma 4. Image score: the map's maximum (anomalib's post-processor derives it the same way).
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
from streamad.models.components.multivariate_gaussian import PatchGaussian, mahalanobis_map
from streamad.models.components.patch_pool import PatchPool, PatchSize
from streamad.models.components.upsample_blur import UpsampleBlur
from streamad.models.image.base import ImageModel, ImageModelConfig, ImageNetwork
from streamad.models.image.image_set import ImageSet
from streamad.registry import IMAGE_MODELS


__all__ = ["Padim", "PadimNetwork"]


class PadimNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 -> (anomaly_map (N, 1, h, w), score (N,))``, see the module doc.

    Args:
        size: input ``(h, w)``. extractor: the backbone. channels: ``(K,) int64`` kept embedding channels.
        mean: ``(K, P) float32``. inv_covariance: ``(P, K, K) float32`` (``P`` = positions of the embedding).
        sigma: Gaussian blur of the map (anomalib 4).
        patch_size: odd side, or odd ``(height, width)``, of the neighbourhood each layer is averaged over, in
            cells of its own map (1: none, PaDiM's embedding).
    """

    def __init__(self, size: tuple[int, int], extractor: FeatureExtractor, channels: torch.Tensor,
                 mean: torch.Tensor, inv_covariance: torch.Tensor, sigma: float = 4.0,
                 patch_size: int | tuple[int, int] = 1) -> None:
        super().__init__(size)
        self.extractor = extractor
        self.pool = PatchPool(patch_size)
        self.register_buffer("channels", channels)
        self.register_buffer("mean", mean)
        self.register_buffer("inv_covariance", inv_covariance)
        self.upsample_blur = UpsampleBlur(size, sigma, "bilinear")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, h, w) float`` -> ``(N, K, h / s, w / s)`` embedding (kept channels only)."""
        feats = [self.pool(f) for f in self.extractor(x).values()]
        first = feats[0]
        ups = [F.interpolate(f, size=first.shape[-2:], mode="nearest") for f in feats[1:]]
        return torch.index_select(torch.cat([first, *ups], 1), 1, self.channels)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embed(self.preprocess(images))
        dist = mahalanobis_map(emb, self.mean, self.inv_covariance)
        amap = self.upsample_blur(dist)
        return amap, amap.flatten(1).amax(1)


@IMAGE_MODELS.register("padim")
class Padim(ImageModel):
    """PaDiM with anomalib's parameters (see the module doc and ``README.md`` beside this file).

    Config:
        layers: default ``[layer1, layer2, layer3]`` (stride 4, 8, 16; anomalib's resnet18 default).
        n_features: embedding channels kept at random (anomalib: 100 for resnet18, 550 for wide_resnet50_2);
            ``None`` keeps all.
        patch_size: odd side, or odd ``[height, width]``, of the neighbourhood each layer is averaged over before
            the Gaussians, in cells of the layer's own map; 1 (default) is PaDiM's unpooled embedding. Wide
            neighbourhoods help wide defects, measured in ``README.md``.
    """

    version = "1"
    score_meaning = "largest Mahalanobis distance of a position's embedding to that position's Gaussian"

    class Config(ImageModelConfig):
        kind: Literal["padim"] = "padim"
        layers: list[str] = Field(default_factory=lambda: ["layer1", "layer2", "layer3"], min_length=1)
        n_features: int | None = Field(100, ge=1)
        patch_size: PatchSize = 1

    def _channels(self) -> torch.Tensor:
        total = sum(self.extractor.channels.values())
        k = total if self.config.n_features is None else min(self.config.n_features, total)
        rng = np.random.default_rng(self.config.seed)
        return torch.from_numpy(np.sort(rng.choice(total, k, replace=False)).astype(np.int64))

    def _network(self, channels: torch.Tensor, mean: torch.Tensor, inv: torch.Tensor) -> PadimNetwork:
        return PadimNetwork(self.input_size, self.extractor, channels, mean, inv, patch_size=self.config.patch_size)

    def fit(self, train: ImageSet, validation: ImageSet | None = None, progress: bool = False) -> dict[str, Any]:
        c = self.config
        if len(train) < 2:
            raise ValueError(f"padim: need at least 2 training images, got {len(train)}")
        t0 = time.perf_counter()
        channels = self._channels()
        probe = self._network(channels, torch.zeros(0), torch.zeros(0))
        gauss = PatchGaussian()
        with torch.inference_mode():
            for b in tqdm(train.batches(c.batch_size), desc="padim: features", unit="batch",
                          total=math.ceil(len(train) / c.batch_size), disable=not progress, leave=False):
                gauss.update(probe.embed(probe.preprocess(torch.from_numpy(b.images))))
        mean, inv = gauss.compute()
        self.network = self._network(channels, mean, inv).eval()
        return {"images": len(train), "channels": int(channels.numel()), "positions": int(mean.shape[1]),
                "seconds": round(time.perf_counter() - t0, 2)}

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        net = self.require_network()
        return ({"channels": int(net.channels.numel()), "positions": int(net.mean.shape[1])},
                {"channels": net.channels.numpy(), "mean": net.mean.numpy(),
                 "inv_covariance": net.inv_covariance.numpy()})

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        channels = np.asarray(arrays["channels"], np.int64)
        mean = np.asarray(arrays["mean"], np.float32)
        inv = np.asarray(arrays["inv_covariance"], np.float32)
        k = channels.size
        total = sum(self.extractor.channels.values())
        if (channels.ndim != 1 or k < 1 or channels.max(initial=-1) >= total or mean.shape[:1] != (k,)
                or inv.shape != (mean.shape[1], k, k)):
            raise ModelError(f"padim: arrays of shapes channels {channels.shape}, mean {mean.shape}, inv_covariance "
                             f"{inv.shape} do not fit each other or the backbone ({total} channels)")
        return self._network(torch.from_numpy(channels), torch.from_numpy(mean), torch.from_numpy(inv))
