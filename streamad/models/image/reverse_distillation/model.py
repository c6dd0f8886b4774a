"""Reverse Distillation (Deng & Li, "Anomaly Detection via Reverse Distillation from One-Class Embedding",
CVPR 2022, arXiv 2201.10703), following anomalib's ``ReverseDistillationModel`` / ``ReverseDistillationLoss`` /
``AnomalyMapGenerator``.

* Encoder (teacher): the pretrained backbone's ``layers``, frozen.
* One-class bottleneck (OCBE, :mod:`~streamad.models.image.reverse_distillation.bottleneck`): the encoder layers fused
  at the deepest stride and squeezed by one residual block into a compact embedding.
* Decoder (student, :mod:`~streamad.models.image.reverse_distillation.decoder`): restores every encoder layer from
  the embedding. Bottleneck and decoder are trained (Adam, anomalib's lr 0.005 and betas (0.5, 0.99)) on normal
  images only; an anomaly the embedding cannot express is restored wrongly.
* Loss (paper eq. 2-3): per layer the mean over batch and positions of ``1 - cosine similarity`` of the encoder and
  decoder feature vectors (over channels), summed over layers.
* Anomaly map: per layer ``1 - cosine similarity`` at every position, bilinearly upsampled to the input size
  (``align_corners=True``, as anomalib), added (``anomaly_map_mode: add``, anomalib's default) or multiplied; Gaussian
  blur sigma 4. Image score: the map's maximum.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from streamad.errors import ModelError
from streamad.models.components.backbone import FeatureExtractor
from streamad.models.components.gaussian_blur import GaussianBlur2d
from streamad.models.components.module_arrays import load_module_arrays, module_arrays
from streamad.models.image.base import ImageNetwork
from streamad.models.image.layer_maps import combine_layer_maps, cosine_distance_map
from streamad.models.image.reverse_distillation.bottleneck import OneClassBottleneck
from streamad.models.image.reverse_distillation.decoder import Decoder
from streamad.models.image.training import TrainedImageModel, TrainedImageModelConfig, TrainingSetup
from streamad.registry import IMAGE_MODELS

__all__ = ["ReverseDistillation", "ReverseDistillationNetwork", "reverse_distillation_loss"]


def reverse_distillation_loss(encoder: list[torch.Tensor], decoder: list[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the mean over batch and positions of ``1 - cos(e, d)`` along the channels (a 0-d tensor).

    Args:
        encoder, decoder: per layer ``(N, C_l, h_l, w_l)`` float32, the same shapes pairwise.
    """
    total = torch.zeros(())
    for e, d in zip(encoder, decoder):
        total = total + cosine_distance_map(e, d).mean()
    return total


class ReverseDistillationNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 -> (anomaly_map (N, 1, h, w) float32, score (N,) float32)``, see the module doc.

    Args:
        size: input ``(h, w)``. encoder: the frozen backbone. bottleneck: the :class:`OneClassBottleneck`.
        decoder: the :class:`Decoder`. mode: ``add`` or ``multiply`` the layer maps. sigma: Gaussian blur (4).
    """

    def __init__(self, size: tuple[int, int], encoder: FeatureExtractor, bottleneck: OneClassBottleneck,
                 decoder: Decoder, mode: Literal["add", "multiply"] = "add", sigma: float = 4.0) -> None:
        super().__init__(size)
        self.encoder = encoder
        self.bottleneck = bottleneck
        self.decoder = decoder
        self.mode = mode
        self.blur = GaussianBlur2d(sigma)

    def trainable(self) -> nn.ModuleDict:
        """The trained part: ``bottleneck`` and ``decoder`` (shared with the network, not copies)."""
        return nn.ModuleDict({"bottleneck": self.bottleneck, "decoder": self.decoder})

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(N, 3, h, w)`` 0-255 -> (encoder layers without gradient, decoder layers), shallow to deep."""
        with torch.no_grad():
            enc = list(self.encoder(x).values())
        dec = self.decoder(self.bottleneck(enc), [tuple(e.shape[-2:]) for e in enc])
        return enc, dec

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc, dec = self.features(self.preprocess(images))
        maps = (cosine_distance_map(e, d) for e, d in zip(enc, dec))
        amap = self.blur(combine_layer_maps(maps, self.size, self.mode, align_corners=True))
        return amap, amap.flatten(1).amax(1)


@IMAGE_MODELS.register("reverse_distillation")
class ReverseDistillation(TrainedImageModel):
    """Reverse Distillation with anomalib's parameters (see the module doc and ``README.md`` beside this file).

    Config:
        layers: default ``[layer1, layer2, layer3]`` (stride 4, 8, 16; anomalib's default), shallow to deep.
        lr, betas: Adam over bottleneck and decoder (anomalib 0.005, (0.5, 0.99)).
        anomaly_map_mode: ``add`` (anomalib's default) or ``multiply`` the per-layer maps.
        weight_decay: Adam's (0, as anomalib). max_epochs: upper bound on epochs (anomalib's config: 200). patience:
            early-stopping patience (3).
    """

    version = "1"
    score_meaning = "largest sum (or product) over layers of 1 - cosine similarity of encoder and decoder features"

    class Config(TrainedImageModelConfig):
        kind: Literal["reverse_distillation"] = "reverse_distillation"
        lr: float = Field(0.005, gt=0)
        betas: tuple[float, float] = (0.5, 0.99)
        anomaly_map_mode: Literal["add", "multiply"] = "add"
        max_epochs: int = Field(200, ge=1)

        def model_post_init(self, context: Any, /) -> None:
            super().model_post_init(context)
            if not all(0.0 <= b < 1.0 for b in self.betas):
                raise ValueError(f"betas must lie in [0, 1), got {list(self.betas)}")

    def _network(self) -> ReverseDistillationNetwork:
        """A fresh network, bottleneck and decoder initialised from ``seed`` (global random state untouched).

        Raises:
            ModelError: layers not listed shallow to deep, or strides not powers of two apart.
        """
        enc = self.extractor
        channels = [enc.channels[layer] for layer in enc.layers]
        strides = [enc.strides[layer] for layer in enc.layers]
        if strides != sorted(strides):
            raise ModelError(f"reverse_distillation: list layers shallow to deep, got {enc.layers} (strides {strides})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.config.seed))
            bottleneck = OneClassBottleneck(channels, strides)
            decoder = Decoder(channels, strides, bottleneck.out_channels, bottleneck.out_stride)
        return ReverseDistillationNetwork(self.input_size, enc, bottleneck, decoder, self.config.anomaly_map_mode)

    def _training(self) -> TrainingSetup:
        """A fresh network, Adam over its bottleneck and decoder, the Reverse Distillation loss."""
        c = self.config
        net = self._network()
        part = net.trainable()
        opt = torch.optim.Adam(part.parameters(), lr=c.lr, betas=tuple(c.betas), weight_decay=c.weight_decay)
        return TrainingSetup(net, part, opt, lambda x: reverse_distillation_loss(*net.features(x)))

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        net = self.require_network()
        arrays = module_arrays(net.trainable(), "")
        return {"arrays": len(arrays)}, arrays

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        net = self._network()
        load_module_arrays(net.trainable(), arrays, "", "reverse_distillation")
        return net
