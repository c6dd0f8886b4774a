"""C-Flow (Gudovskiy, Ishizaka, Kozuka, "CFLOW-AD: Real-Time Unsupervised Anomaly Detection with Localization via
Conditional Normalizing Flows", WACV 2022, arXiv 2107.12571), following anomalib's ``Cflow`` / ``CflowModel`` /
``AnomalyMapGenerator``.

* Features: the frozen backbone's ``layers`` (anomalib: ``wide_resnet50_2`` ``layer2``-``layer4``; here by default
  EfficientNet-Lite0 ``layer2``-``layer4``, stride 8, 16, 32), not normalised (anomalib).
* One conditional normalising-flow decoder per layer (:mod:`streamad.models.image.cflow.decoder`) over the feature
  fibres, conditioned on the 2-D positional encoding (:mod:`streamad.models.image.cflow.positional`,
  ``condition_vector`` channels).
* Training (anomalib ``Cflow.training_step``, manual optimisation): for every image batch and every layer, the
  batch's ``N h w`` fibres are shuffled and cut into fibre batches of ``fiber_batch_size`` (the last one takes the
  remainder); each fibre batch is one Adam step (lr 1e-4, no weight decay, one optimiser over every decoder) on
  ``mean(-logsigmoid(log p / C))``, ``log p / C`` the fibres' log-likelihood per dimension.
* Anomaly map (anomalib ``AnomalyMapGenerator``): per layer the log-likelihoods of the positions, minus a reference,
  exponentiated (probabilities, at most about 1), bilinearly upsampled (``align_corners=True``) to the input size and
  summed over the layers; the map is the reference of the sum minus the sum. anomalib's reference is the maximum
  over the whole evaluation batch; a stream is scored frame by frame, so ``reference`` picks either each image's own
  maximum (``image``, the default: anomalib with batch size 1) or the largest log-likelihood each layer reached on
  the training images, recomputed after every training epoch and kept with the best epoch's decoders (``training``:
  a fixed reference like a large batch's, with the number of layers as the sum's reference). Then the Gaussian
  blur sigma 4 shared by every streamad image model (anomalib does not blur C-Flow's map). Image score: the map's
  maximum.
* Training loop: :func:`~streamad.models.image.training.train_epochs` (progress bar with the loss, early stopping on
  the validation metric, the decoders of the best epoch kept, an error when the loss is not finite).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from streamad.models.components.backbone import FeatureExtractor
from streamad.models.components.gaussian_blur import GaussianBlur2d
from streamad.models.components.module_arrays import load_module_arrays, module_arrays
from streamad.models.image.base import ImageNetwork
from streamad.models.image.cflow.decoder import (conditional_decoder, fibre_conditions, fibre_log_likelihood,
                                                 fibres)
from streamad.models.image.cflow.positional import positional_encoding_2d
from streamad.models.image.image_set import ImageSet
from streamad.models.image.training import TrainedImageModel, TrainedImageModelConfig, TrainingSetup
from streamad.registry import IMAGE_MODELS

__all__ = ["Cflow", "CflowNetwork", "cflow_anomaly_map", "train_fibres"]


def cflow_anomaly_map(log_likelihoods: list[torch.Tensor], size: tuple[int, int],
                      reference: torch.Tensor | None = None) -> torch.Tensor:
    """anomalib's C-Flow ``AnomalyMapGenerator`` (see the module doc).

    Args:
        log_likelihoods: per layer ``(N, 1, h_l, w_l)`` float32, log-likelihood per dimension of each position.
        size: output ``(h, w)`` in pixels.
        reference: ``None``: each image's own maximum per layer, and the summed map's maximum (anomalib with one
            image per batch); else ``(L,)`` float32, a fixed log-likelihood per layer, and ``L`` for the sum.

    Returns:
        ``(N, 1, h, w)`` float32. Per-image reference: ``>= 0``, 0 at the image's most likely pixel, at most ``L``.
        Fixed reference: ``L - sum_l exp(ll_l - reference_l)``, at most ``L``, below 0 only where a position is more
        likely than every training position.
    """
    total: torch.Tensor | None = None
    for i, ll in enumerate(log_likelihoods):
        ref = ll.amax((2, 3), keepdim=True) if reference is None else reference[i]
        up = F.interpolate(torch.exp(ll - ref), size=tuple(size), mode="bilinear", align_corners=True)
        total = up if total is None else total + up
    assert total is not None
    if reference is None:
        return total.amax((2, 3), keepdim=True) - total
    return len(log_likelihoods) - total


class CflowNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 -> (anomaly_map (N, 1, h, w) float32, score (N,) float32)``, see the module doc.

    Args:
        size: input ``(h, w)``. extractor: the frozen backbone. decoders: one conditional flow per layer.
        encodings: per layer the positional encoding ``(P, h_l, w_l)`` float32 of its feature map.
        fixed_reference: the map's reference is ``decoders.reference`` (``(L,)`` float32, the training maximum per
            layer, set after every training epoch) rather than each image's maximum. sigma: Gaussian blur of the map
            (4).
    """

    def __init__(self, size: tuple[int, int], extractor: FeatureExtractor, decoders: nn.ModuleList,
                 encodings: list[torch.Tensor], fixed_reference: bool = False, sigma: float = 4.0) -> None:
        super().__init__(size)
        self.extractor = extractor
        self.decoders = decoders
        for i, enc in enumerate(encodings):  # rebuilt from the config, not stored
            self.register_buffer(f"encoding{i}", enc, persistent=False)
        self.fixed_reference = bool(fixed_reference)
        if not hasattr(decoders, "reference"):  # a buffer of the trained part: kept with the best epoch, saved
            decoders.register_buffer("reference", torch.zeros(len(decoders)))
        self.blur = GaussianBlur2d(sigma)

    def encodings(self) -> list[torch.Tensor]:
        """Per layer the ``(P, h_l, w_l)`` positional encoding."""
        return [getattr(self, f"encoding{i}") for i in range(len(self.decoders))]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, 3, h, w)`` 0-255 -> the frozen backbone's ``(N, C_l, h_l, w_l)`` per layer (no gradient)."""
        with torch.no_grad():
            return list(self.extractor(x).values())

    def log_likelihoods(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, 3, h, w)`` 0-255 -> per layer ``(N, 1, h_l, w_l)``: each position's log-likelihood per dimension."""
        out = []
        for f, enc, decoder in zip(self.features(x), self.encodings(), self.decoders):
            n, _, h, w = f.shape
            ll = fibre_log_likelihood(decoder, fibres(f), fibre_conditions(enc, n))
            out.append(ll.reshape(n, 1, h, w))
        return out

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lls = self.log_likelihoods(self.preprocess(images))
        amap = self.blur(cflow_anomaly_map(lls, self.size, self.decoders.reference if self.fixed_reference else None))
        return amap, amap.flatten(1).amax(1)

    @torch.no_grad()
    def set_training_reference(self, train: ImageSet, batch_size: int) -> None:
        """Set ``decoders.reference`` to the largest log-likelihood per dimension each layer gives a position of the
        images of ``train`` (``(N, H, W, 3) uint8`` batches of ``batch_size``)."""
        best = torch.full((len(self.decoders),), -torch.inf)
        for batch in train.batches(batch_size):
            lls = self.log_likelihoods(self.preprocess(torch.from_numpy(batch.images)))
            best = torch.maximum(best, torch.stack([ll.amax() for ll in lls]))
        self.decoders.reference.copy_(best)


def train_fibres(net: CflowNetwork, optimizer: torch.optim.Optimizer, x: torch.Tensor, fiber_batch_size: int,
                 generator: torch.Generator) -> float:
    """anomalib's C-Flow training step on one image batch: for every layer, its fibres shuffled (``generator``) and
    cut into fibre batches of ``fiber_batch_size`` (the last one takes the remainder), one optimiser step each on
    ``mean(-logsigmoid(log p / C))``.

    Args:
        x: the preprocessed batch ``(N, 3, h, w)`` float32 in 0-255.

    Returns:
        the loss averaged over every fibre of every layer (a float; NaN when training diverged, which
        :func:`~streamad.models.image.training.train_epochs` reports as an error).

    Raises:
        ValueError: a layer with fewer fibres than ``fiber_batch_size`` (anomalib raises too): lower it or enlarge
            the batch or the input.
    """
    total, count = 0.0, 0
    for layer, (f, enc, decoder) in enumerate(zip(net.features(x), net.encodings(), net.decoders)):
        e, c = fibres(f), fibre_conditions(enc, f.shape[0])
        m = e.shape[0]
        steps = m // fiber_batch_size
        if steps < 1:
            raise ValueError(f"cflow: layer {layer} has {m} fibres per batch, fewer than fiber_batch_size "
                             f"{fiber_batch_size}; lower fiber_batch_size or raise batch_size / input_size")
        perm = torch.randperm(m, generator=generator)
        for b in range(steps):
            idx = perm[b * fiber_batch_size: m if b == steps - 1 else (b + 1) * fiber_batch_size]
            loss = -F.logsigmoid(fibre_log_likelihood(decoder, e[idx], c[idx]))
            optimizer.zero_grad(set_to_none=True)
            loss.mean().backward()
            optimizer.step()
            total, count = total + float(loss.detach().sum()), count + len(idx)
    return total / count


@IMAGE_MODELS.register("cflow")
class Cflow(TrainedImageModel):
    """C-Flow with anomalib's parameters (see the module doc and ``README.md`` beside this file).

    Config:
        layers: default ``[layer2, layer3, layer4]`` (anomalib's; stride 8, 16, 32).
        fiber_batch_size: fibres per Adam step (64). condition_vector: positional-encoding channels ``P``, a
            multiple of 4 (128). coupling_blocks: coupling steps per decoder (8). clamp_alpha: soft clamp of the
            coupling scale (1.9). permute_soft: only ``False`` (hard permutations, anomalib's default).
        lr: Adam (1e-4). max_epochs (50) / patience (2): anomalib's config (early stopping on the validation metric).
        reference: the anomaly map's likelihood reference, ``image`` (each image's maximum, anomalib with one image
            per batch) or ``training`` (each layer's maximum over the training images).
    """

    version = "1"
    score_meaning = "largest drop of the summed per-layer likelihoods (relative to the image's most likely pixel)"

    class Config(TrainedImageModelConfig):
        kind: Literal["cflow"] = "cflow"
        layers: list[str] = Field(default_factory=lambda: ["layer2", "layer3", "layer4"], min_length=1)
        fiber_batch_size: int = Field(64, ge=1)
        condition_vector: int = Field(128, ge=4)
        coupling_blocks: int = Field(8, ge=1)
        clamp_alpha: float = Field(1.9, gt=0)
        permute_soft: Literal[False] = False
        lr: float = Field(1e-4, gt=0)
        max_epochs: int = Field(50, ge=1)
        patience: int = Field(2, ge=1)
        reference: Literal["image", "training"] = "image"

        @field_validator("condition_vector")
        @classmethod
        def _multiple_of_4(cls, v: int) -> int:
            if v % 4:
                raise ValueError(f"condition_vector must be a multiple of 4 (2-D sin / cos pairs), got {v}")
            return v

    def _network(self) -> CflowNetwork:
        """A fresh network: one seeded decoder per layer, positional encodings for the feature shapes at the
        input size."""
        c = self.config
        with torch.no_grad():
            feats = list(self.extractor(torch.zeros(1, 3, *self.input_size)).values())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(c.seed))
            decoders = nn.ModuleList(conditional_decoder(int(f.shape[1]), c.condition_vector, c.coupling_blocks,
                                                         c.clamp_alpha, seed=c.seed + i) for i, f in enumerate(feats))
        encodings = [positional_encoding_2d(c.condition_vector, int(f.shape[2]), int(f.shape[3])) for f in feats]
        return CflowNetwork(self.input_size, self.extractor, decoders, encodings, c.reference == "training")

    def _training(self) -> TrainingSetup:
        """Fresh decoders, one Adam over all of them, the fibre-batched step; with ``reference: training`` the
        reference from the training images after every epoch."""
        c = self.config
        net = self._network()
        opt = torch.optim.Adam(net.decoders.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        gen = torch.Generator().manual_seed(int(c.seed))
        seen: list[ImageSet] = []

        def end_epoch() -> None:
            if net.fixed_reference:
                net.set_training_reference(seen[0], c.batch_size)

        return TrainingSetup(net, net.decoders, prepare=lambda train, _progress: seen.append(train),
                             step=lambda x: train_fibres(net, opt, x, c.fiber_batch_size, gen), end_epoch=end_epoch)

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        net = self.require_network()
        return ({"layers": len(net.decoders), "coupling_blocks": self.config.coupling_blocks},
                module_arrays(net.decoders, "decoders."))

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        net = self._network()
        load_module_arrays(net.decoders, arrays, "decoders.", "cflow")
        return net
