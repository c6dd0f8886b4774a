"""U-Flow (Tailanian, Pardo, Musé, "U-Flow: A U-shaped Normalizing Flow for Anomaly Detection with Unsupervised
Threshold", arXiv 2211.12353), following anomalib's ``UflowModel`` / ``UFlowLoss`` / ``AnomalyMapGenerator``.

* Features (paper section 3.1): the frozen backbone's ``layers``, each through a trainable ``LayerNorm`` over
  ``(C, h, w)`` with element-wise affine parameters (anomalib's U-Flow feature extractor for CNN backbones). The
  paper's MS-CaiT (two CaiT transformers at two image scales) has no offline weights; the EfficientNet-Lite stages
  stand in. Consecutive layers must differ by a stride factor of 2 (``layer2, layer3, layer4``: 8, 16, 32).
* The U-shaped normalising flow (section 3.2, :mod:`streamad.models.image.uflow.flow`): a flow stage per scale,
  coarse to fine; part of each coarser stage's output is upsampled invertibly and concatenated into the next finer
  stage's input, the rest is that scale's latent variable ``z_l``.
* Loss (anomalib ``UFlowLoss``, the negative log-likelihood of all latents up to a constant): the batch mean of
  ``0.5 * sum_l sum(z_l^2) - log |det J|``. Adam, lr 1e-3, weight decay 1e-5 (anomalib; its ``LinearLR`` decay to
  0.4 over 25 000 steps is left out: a CPU fit here runs a few hundred steps).
* Anomaly map (section 3.3, anomalib ``AnomalyMapGenerator.compute_anomaly_map``): per scale the likelihood of each
  position, ``exp(-0.5 * mean_c z_l^2)``, bilinearly upsampled to the input size; the map is ``1 - `` the mean of
  the scales' likelihoods, in ``[0, 1]``. Then the Gaussian blur sigma 4 shared by every streamad image model
  (anomalib does not blur U-Flow's map). Image score: the map's maximum. The a-contrario NFA mask (section 3.4,
  anomalib ``compute_anomaly_mask``, optional there too) is not implemented: streamad thresholds the normalised map.
* Training: :func:`~streamad.models.image.training.train_epochs`, early stopping on the validation metric, the
  norms and flow of the best epoch kept.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from streamad.errors import ModelError
from streamad.models.components.backbone import FeatureExtractor
from streamad.models.components.gaussian_blur import GaussianBlur2d
from streamad.models.components.module_arrays import load_module_arrays, module_arrays
from streamad.models.image.base import ImageNetwork
from streamad.models.image.training import TrainedImageModel, TrainedImageModelConfig, TrainingSetup
from streamad.models.image.uflow.flow import UShapedFlow
from streamad.registry import IMAGE_MODELS

__all__ = ["Uflow", "UflowNetwork", "uflow_loss", "uflow_anomaly_map"]


def uflow_loss(latents: list[torch.Tensor], log_det: torch.Tensor) -> torch.Tensor:
    """anomalib's ``UFlowLoss``: the batch mean of ``0.5 * sum over scales of sum(z_l^2) - log |det J|`` (0-d).

    Args:
        latents: per scale ``(N, D_l, h_l, w_l)`` float32. log_det: ``(N,)`` float32, of the whole flow.
    """
    sq = torch.stack([(z * z).sum((1, 2, 3)) for z in latents]).sum(0)
    return (0.5 * sq - log_det).mean()


def uflow_anomaly_map(latents: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """anomalib's U-Flow ``compute_anomaly_map``: ``1 - mean over scales of upsample(exp(-0.5 * mean_c z_l^2))``.

    Args:
        latents: per scale ``(N, D_l, h_l, w_l)`` float32. size: output ``(h, w)`` in pixels.

    Returns:
        ``(N, 1, h, w)`` float32 in ``[0, 1]`` (0: every scale's latent at the origin).
    """
    total: torch.Tensor | None = None
    for z in latents:
        prob = torch.exp(-0.5 * (z * z).mean(1, keepdim=True))
        up = F.interpolate(prob, size=tuple(size), mode="bilinear", align_corners=False)
        total = up if total is None else total + up
    assert total is not None
    return 1.0 - total / len(latents)


class UflowNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 -> (anomaly_map (N, 1, h, w) float32, score (N,) float32)``, see the module doc.

    Args:
        size: input ``(h, w)``. extractor: the frozen backbone. norms: one ``LayerNorm((C, h_l, w_l))`` per layer.
        flow: the :class:`UShapedFlow`. sigma: Gaussian blur of the map (4).
    """

    def __init__(self, size: tuple[int, int], extractor: FeatureExtractor, norms: nn.ModuleList,
                 flow: UShapedFlow, sigma: float = 4.0) -> None:
        super().__init__(size)
        self.extractor = extractor
        self.norms = norms
        self.flow = flow
        self.blur = GaussianBlur2d(sigma)

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(N, 3, h, w)`` 0-255 -> (latent ``z_l`` per layer, fine to coarse; ``log |det J|`` ``(N,)``)."""
        with torch.no_grad():
            feats = list(self.extractor(x).values())
        return self.flow([norm(f) for f, norm in zip(feats, self.norms)])

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latents, _ = self.encode(self.preprocess(images))
        amap = self.blur(uflow_anomaly_map(latents, self.size))
        return amap, amap.flatten(1).amax(1)


@IMAGE_MODELS.register("uflow")
class Uflow(TrainedImageModel):
    """U-Flow with anomalib's flow parameters (see the module doc and ``README.md`` beside this file).

    Config:
        layers: default ``[layer1, layer2, layer3]`` (stride 4, 8, 16; anomalib's CNN backbones use stages 1-3);
            consecutive layers must halve the resolution.
        flow_steps: coupling steps per flow stage (anomalib 4). affine_clamp: soft clamp of the coupling scale
            (2.0). hidden_ratio: subnet hidden channels per input channel (anomalib
            ``affine_subnet_channels_ratio``, 1.0).
        lr, weight_decay: Adam (anomalib 1e-3, 1e-5).
    """

    version = "1"
    score_meaning = "one minus the smallest mean over scales of the latents' Gaussian likelihood, in [0, 1]"

    class Config(TrainedImageModelConfig):
        kind: Literal["uflow"] = "uflow"
        flow_steps: int = Field(4, ge=1)
        affine_clamp: float = Field(2.0, gt=0)
        hidden_ratio: float = Field(1.0, gt=0)
        weight_decay: float = Field(1e-5, ge=0)

    def _heads(self) -> tuple[nn.ModuleList, UShapedFlow]:
        """Fresh LayerNorms and U-shaped flow for the backbone's feature shapes at the input size (seeded).

        Raises:
            ModelError: consecutive layers whose resolutions are not exactly 2x apart at this input size.
        """
        c = self.config
        with torch.no_grad():
            feats = self.extractor(torch.zeros(1, 3, *self.input_size))
        shapes = [tuple(int(v) for v in f.shape[1:]) for f in feats.values()]
        for (layer, (_, h, w)), (coarse, (_, hc, wc)) in zip(zip(c.layers, shapes), zip(c.layers[1:], shapes[1:])):
            if (h, w) != (2 * hc, 2 * wc):
                raise ModelError(f"image model uflow: layer {coarse} ({hc}x{wc}) must have half the resolution of "
                                 f"{layer} ({h}x{w}) at input_size {list(self.input_size)}; list layers shallow to "
                                 f"deep, one stride step apart, and use an input size divisible by the deepest "
                                 f"stride")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(c.seed))
            norms = nn.ModuleList(nn.LayerNorm(s, elementwise_affine=True) for s in shapes)
            flow = UShapedFlow([s[0] for s in shapes], c.flow_steps, c.hidden_ratio, c.affine_clamp, seed=c.seed)
        return norms, flow

    def _training(self) -> TrainingSetup:
        """Fresh norms and flow, Adam over them, the U-Flow loss."""
        c = self.config
        norms, flow = self._heads()
        net = UflowNetwork(self.input_size, self.extractor, norms, flow)
        heads = nn.ModuleList([norms, flow])
        opt = torch.optim.Adam(heads.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        return TrainingSetup(net, heads, opt, lambda x: uflow_loss(*net.encode(x)))

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        net = self.require_network()
        arrays = {**module_arrays(net.norms, "norms."), **module_arrays(net.flow, "flow.")}
        return {"layers": len(net.norms), "flow_steps": self.config.flow_steps}, arrays

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        norms, flow = self._heads()
        load_module_arrays(norms, arrays, "norms.", "uflow")
        load_module_arrays(flow, arrays, "flow.", "uflow")
        return UflowNetwork(self.input_size, self.extractor, norms, flow)
