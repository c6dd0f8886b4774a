"""CFA (Lee, Lee, Song, "CFA: Coupled-hypersphere-based Feature Adaptation for Target-Oriented Anomaly
Localization", IEEE Access 2022, arXiv 2206.04325), following anomalib's ``CfaModel`` / ``CfaLoss`` /
``cfa.anomaly_map.AnomalyMapGenerator``.

* Features (paper III-B): the frozen backbone's ``layers``, 3x3-averaged, resized to the largest layer's grid and
  concatenated; the trainable descriptor, a CoordConv 1x1 projection to ``D = C // gamma_d`` channels
  (:mod:`~streamad.models.image.cfa.descriptor`).
* Memory bank (III-C): before the first epoch, the mean descriptor feature over the training set at each grid
  position, k-means-compressed to ``h w // gamma_c`` centroids when ``gamma_c > 1``
  (:mod:`~streamad.models.image.cfa.memory_bank`); fixed afterwards, a buffer of the exported network.
* Loss (III-D, eq. 3-5; anomalib ``CfaLoss``): with ``d`` the squared distances of a feature to its
  ``K + J`` nearest centroids in increasing order (``K = num_nearest_neighbors``, ``J = num_hard_negative_features``)
  and ``r = radius``: attraction ``mean(max(0, d_k - r^2))`` over the ``K`` nearest, repulsion
  ``mean(max(0, r^2 - d_j - alpha))`` over the ``J`` next ones (the hard negatives), ``alpha = 0.1``, the sum times
  1000. AdamW (anomalib: lr 1e-3, weight decay 5e-4, amsgrad). (With anomalib's ``radius`` 1e-5 the repulsion is 0
  unless ``r^2 > alpha``, as in anomalib.)
* Anomaly map (III-E; anomalib ``AnomalyMapGenerator.compute_score``): the Euclidean distances ``e`` to the ``K``
  nearest centroids, ``softmin(e)_1 * e_1`` per position (the nearest distance weighted by how much nearer it is than
  the others), bilinearly upsampled to the input size, Gaussian blur sigma 4. Image score: the map's maximum.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from tqdm import tqdm

from streamad.errors import ModelError
from streamad.models.components.backbone import FeatureExtractor
from streamad.models.components.module_arrays import load_module_arrays, module_arrays
from streamad.models.components.upsample_blur import UpsampleBlur
from streamad.models.image.base import ImageNetwork
from streamad.models.image.cfa.descriptor import Descriptor
from streamad.models.image.cfa.memory_bank import kmeans, squared_distances
from streamad.models.image.image_set import ImageSet
from streamad.models.image.training import TrainedImageModel, TrainedImageModelConfig, TrainingSetup
from streamad.registry import IMAGE_MODELS

__all__ = ["Cfa", "CfaNetwork", "cfa_loss", "cfa_score_map", "REPULSION_MARGIN"]

REPULSION_MARGIN = 0.1  # the paper's alpha (anomalib CfaLoss.alpha)


def cfa_loss(sq_distances: torch.Tensor, num_nearest: int, num_hard_negatives: int, radius: float,
             alpha: float = REPULSION_MARGIN) -> torch.Tensor:
    """CFA's loss (paper eq. 3-5, anomalib ``CfaLoss.forward``), a 0-d tensor:
    ``1000 * (mean(relu(d[..., :K] - r^2)) + mean(relu(r^2 - d[..., K:K+J] - alpha)))`` with ``d`` the ``K + J``
    smallest squared distances of each position in increasing order. Without hard negatives (``J = 0``) the
    repulsion is 0.

    Args:
        sq_distances: ``(N, P, M)`` float32 squared distances of ``P`` positions to ``M`` centroids.
        num_nearest: ``K``. num_hard_negatives: ``J``. radius: ``r`` (descriptor units). alpha: the margin.

    Raises:
        ValueError: fewer than ``K + J`` centroids.
    """
    k, j = int(num_nearest), int(num_hard_negatives)
    if sq_distances.shape[-1] < k + j:
        raise ValueError(f"cfa: {sq_distances.shape[-1]} centroids, fewer than num_nearest_neighbors + "
                         f"num_hard_negative_features = {k + j}")
    d = sq_distances.topk(k + j, dim=-1, largest=False).values
    r2 = float(radius) ** 2
    attract = F.relu(d[..., :k] - r2).mean()
    repel = F.relu(r2 - d[..., k:] - alpha).mean() if j > 0 else torch.zeros(())
    return 1000.0 * (attract + repel)


def cfa_score_map(sq_distances: torch.Tensor, num_nearest: int, grid: tuple[int, int]) -> torch.Tensor:
    """``(N, P, M)`` squared distances -> ``(N, 1, h, w)`` float32 patch scores ``softmin(e)_1 * e_1``, ``e`` the
    Euclidean distances to the ``num_nearest`` nearest centroids in increasing order (anomalib
    ``AnomalyMapGenerator.compute_score``); ``grid = (h, w)`` with ``h * w = P``."""
    e = sq_distances.topk(int(num_nearest), dim=-1, largest=False).values.sqrt()
    score = F.softmax(-e, dim=-1)[..., 0] * e[..., 0]  # softmin, written as softmax of -e for the exporters
    return score.reshape(score.shape[0], 1, int(grid[0]), int(grid[1]))


class CfaNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 -> (anomaly_map (N, 1, h, w) float32, score (N,) float32)``, see the module doc.

    Attributes:
        grid: ``(h, w)`` of the descriptor's features (the largest layer's grid at the input size).
        memory_bank: ``(M, D)`` float32 centroids, a persistent buffer (empty ``(0, D)`` until initialised).

    Args:
        size: input ``(h, w)``. extractor: the frozen backbone. gamma_d: descriptor channel reduction.
        num_nearest: ``K`` of the anomaly map. sigma: Gaussian blur of the map (4).
    """

    def __init__(self, size: tuple[int, int], extractor: FeatureExtractor, gamma_d: int, num_nearest: int,
                 sigma: float = 4.0) -> None:
        super().__init__(size)
        self.extractor = extractor
        with torch.no_grad():  # anomalib CfaModel.get_scale: the layer grids of a blank input
            shapes = [tuple(f.shape[-2:]) for f in extractor(torch.zeros(1, 3, *self.size)).values()]
        self.grid = max(shapes, key=lambda s: s[0] * s[1])
        self.descriptor = Descriptor(sum(extractor.channels[layer] for layer in extractor.layers), gamma_d, self.grid)
        self.num_nearest = int(num_nearest)
        self.register_buffer("memory_bank", torch.zeros(0, self.descriptor.out_channels))
        self.upsample_blur = UpsampleBlur(size, sigma, "bilinear")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, h, w)`` 0-255 -> ``(N, D, grid_h, grid_w)`` target-oriented features (the backbone without
        gradient, the descriptor with)."""
        with torch.no_grad():
            feats = list(self.extractor(x).values())
        return self.descriptor(feats)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, h, w)`` 0-255 -> ``(N, grid_h * grid_w, M)`` squared distances to the centroids.

        Raises:
            ModelError: the memory bank is not initialised (anomalib raises ``ValueError``).
        """
        if self.memory_bank.shape[0] == 0:
            raise ModelError("cfa: the memory bank is not initialised; fit the model first")
        return squared_distances(self.features(x), self.memory_bank)

    @torch.no_grad()
    def initialize_memory_bank(self, train: ImageSet, batch_size: int, gamma_c: int, seed: int,
                               progress: bool = False) -> None:
        """Set :attr:`memory_bank` to the mean descriptor feature over ``train`` at each grid position
        (``h * w`` centroids), k-means-compressed to ``h * w // gamma_c`` when ``gamma_c > 1`` (anomalib
        ``initialize_centroid``, whose running mean of batch means weighs a short last batch differently).

        Raises:
            ValueError: no training image, or ``gamma_c`` leaves no centroid.
        """
        if len(train) == 0:
            raise ValueError("cfa: no training image to initialise the memory bank")
        k = (self.grid[0] * self.grid[1]) // int(gamma_c)
        if k < 1:
            raise ValueError(f"cfa: gamma_c {gamma_c} leaves no centroid of the {self.grid[0]}x{self.grid[1]} grid")
        was = self.descriptor.training
        self.descriptor.train(False)
        total = torch.zeros(self.descriptor.out_channels, *self.grid, dtype=torch.float64)
        for batch in tqdm(train.batches(batch_size), total=-(-len(train) // batch_size), unit="batch",
                          desc="cfa centroids", disable=not progress, leave=False):
            total += self.features(self.preprocess(torch.from_numpy(batch.images))).double().sum(0)
        self.descriptor.train(was)
        centroids = (total / len(train)).float().flatten(1).t().contiguous()  # (h * w, D), row-major positions
        if k < centroids.shape[0]:
            centroids = kmeans(centroids, k, seed)
        self.memory_bank = centroids

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        patch = cfa_score_map(self.distances(self.preprocess(images)), self.num_nearest, self.grid)
        amap = self.upsample_blur(patch)
        return amap, amap.flatten(1).amax(1)


@IMAGE_MODELS.register("cfa")
class Cfa(TrainedImageModel):
    """CFA with anomalib's parameters (see the module doc and ``README.md`` beside this file).

    Config:
        layers: default ``[layer1, layer2, layer3]`` (stride 4, 8, 16; anomalib's for ``wide_resnet50_2``).
        gamma_c: memory compression, ``h w // gamma_c`` centroids (anomalib 1). gamma_d: descriptor channel
            reduction, ``C // gamma_d`` channels (anomalib 1). num_nearest_neighbors: ``K`` of the attraction and
            of the map (anomalib 3). num_hard_negative_features: ``J`` repelled (anomalib 3). radius: hypersphere
            radius ``r`` in descriptor units (anomalib 1e-5).
        lr, weight_decay: AdamW with amsgrad (anomalib 1e-3, 5e-4). max_epochs: upper bound (anomalib's config 30).
        patience: early-stopping patience (3).
    """

    version = "1"
    score_meaning = ("largest softmin-weighted Euclidean distance of a patch's descriptor feature to its nearest "
                     "memory-bank centroid (descriptor units)")

    class Config(TrainedImageModelConfig):
        kind: Literal["cfa"] = "cfa"
        gamma_c: int = Field(1, ge=1)
        gamma_d: int = Field(1, ge=1)
        num_nearest_neighbors: int = Field(3, ge=1)
        num_hard_negative_features: int = Field(3, ge=0)
        radius: float = Field(1e-5, gt=0)
        weight_decay: float = Field(5e-4, ge=0)
        max_epochs: int = Field(30, ge=1)

    def _network(self) -> CfaNetwork:
        """A fresh network, the descriptor initialised from ``seed`` (global random state untouched), the bank empty."""
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(c.seed))
            return CfaNetwork(self.input_size, self.extractor, c.gamma_d, c.num_nearest_neighbors)

    def _training(self) -> TrainingSetup:
        """A fresh network, AdamW over its descriptor, the CFA loss, and the memory bank's initialisation before
        the first epoch."""
        c = self.config
        net = self._network()
        opt = torch.optim.AdamW(net.descriptor.parameters(), lr=c.lr, weight_decay=c.weight_decay, amsgrad=True)

        def prepare(train: ImageSet, progress: bool) -> None:
            net.initialize_memory_bank(train, c.batch_size, c.gamma_c, c.seed, progress)
            if net.memory_bank.shape[0] < c.num_nearest_neighbors + c.num_hard_negative_features:
                raise ValueError(f"cfa: {net.memory_bank.shape[0]} centroids, fewer than num_nearest_neighbors + "
                                 f"num_hard_negative_features; lower gamma_c")

        def loss(x: torch.Tensor) -> torch.Tensor:
            return cfa_loss(net.distances(x), c.num_nearest_neighbors, c.num_hard_negative_features, c.radius)

        return TrainingSetup(net, net.descriptor, opt, loss, prepare)

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        net = self.require_network()
        arrays = module_arrays(net.descriptor, "descriptor.")
        arrays["memory_bank"] = net.memory_bank.detach().cpu().numpy().copy()
        return {"centroids": int(net.memory_bank.shape[0]), "descriptor_channels": net.descriptor.out_channels,
                "grid": list(net.grid)}, arrays

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        net = self._network()
        load_module_arrays(net.descriptor, {k: v for k, v in arrays.items() if k != "memory_bank"}, "descriptor.",
                           "cfa")
        bank = np.asarray(arrays["memory_bank"], np.float32)
        d = net.descriptor.out_channels
        if bank.ndim != 2 or bank.shape[1] != d or bank.shape[0] < self.config.num_nearest_neighbors:
            raise ModelError(f"cfa: weights.npz's memory_bank has shape {list(bank.shape)}, expected [M, {d}] with "
                             f"M >= num_nearest_neighbors; refit")
        net.memory_bank = torch.from_numpy(bank.copy())
        return net
