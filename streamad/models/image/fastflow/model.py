"""FastFlow (Yu, Zheng, Wang, Zhang, Huang, Ji, "FastFlow: Unsupervised Anomaly Detection and Localization via 2D
Normalizing Flows", arXiv 2111.07677), following anomalib's ``FastflowModel`` / ``FastflowLoss`` /
``AnomalyMapGenerator``.

* Features: the frozen backbone's ``layers`` (anomalib's CNN backbones: stages 1-3, stride 4, 8, 16), each through
  a trainable ``LayerNorm`` over ``(C, h, w)`` with element-wise affine parameters (what anomalib does for
  ResNets; its ViT backbones keep their own norm).
* One 2-D normalising flow per layer (:mod:`streamad.models.image.fastflow.flow`: ``flow_steps`` affine coupling
  steps, 3x3 / 1x1 subnets alternating unless ``conv3x3_only``), mapping features ``x`` to ``z``.
* Loss (anomalib ``FastflowLoss``, the negative log-likelihood up to a constant): for each layer the batch mean of
  ``0.5 * sum(z^2) - log |det J|``, summed over layers. Adam, lr 1e-3, weight decay 1e-5 (anomalib).
* Anomaly map (anomalib ``AnomalyMapGenerator``): per layer ``-exp(-0.5 * mean_c z^2)`` (minus the likelihood of
  each position under the standard normal, per channel), bilinearly upsampled to the input size, averaged over
  layers; values in ``[-1, 0]``. Then the Gaussian blur sigma 4 shared by every streamad image model (anomalib does
  not blur FastFlow's map). Image score: the map's maximum.
* Training: :func:`~streamad.models.image.training.train_epochs`, early stopping on the validation metric, the
  flows and norms of the best epoch kept.
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
from streamad.models.image.fastflow.flow import FlowBlock
from streamad.models.image.training import TrainedImageModel, TrainedImageModelConfig, TrainingSetup
from streamad.registry import IMAGE_MODELS

__all__ = ["Fastflow", "FastflowNetwork", "fastflow_loss"]


def fastflow_loss(hidden: list[torch.Tensor], log_dets: list[torch.Tensor]) -> torch.Tensor:
    """anomalib's ``FastflowLoss``: ``sum over layers of mean over the batch of 0.5 * sum(z^2) - log |det J|``."""
    total = torch.zeros(())
    for z, ld in zip(hidden, log_dets):
        total = total + (0.5 * (z * z).sum((1, 2, 3)) - ld).mean()
    return total


class FastflowNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 -> (anomaly_map (N, 1, h, w), score (N,))``, see the module doc.

    Args:
        size: input ``(h, w)``. extractor: the frozen backbone. norms: one ``LayerNorm((C, h_l, w_l))`` per layer.
        flows: one :class:`FlowBlock` per layer. sigma: Gaussian blur of the map (4).
    """

    def __init__(self, size: tuple[int, int], extractor: FeatureExtractor, norms: nn.ModuleList,
                 flows: nn.ModuleList, sigma: float = 4.0) -> None:
        super().__init__(size)
        self.extractor = extractor
        self.norms = norms
        self.flows = flows
        self.blur = GaussianBlur2d(sigma)

    def hidden(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(N, 3, h, w)`` 0-255 -> (``z`` per layer, ``log |det J|`` ``(N,)`` per layer)."""
        with torch.no_grad():
            feats = list(self.extractor(x).values())
        zs, lds = [], []
        for f, norm, flow in zip(feats, self.norms, self.flows):
            z, ld = flow(norm(f))
            zs.append(z)
            lds.append(ld)
        return zs, lds

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zs, _ = self.hidden(self.preprocess(images))
        amap = None
        for z in zs:
            prob = torch.exp(-0.5 * (z * z).mean(1, keepdim=True))
            m = F.interpolate(-prob, size=self.size, mode="bilinear", align_corners=False)
            amap = m if amap is None else amap + m
        amap = self.blur(amap / len(zs))
        return amap, amap.flatten(1).amax(1)


@IMAGE_MODELS.register("fastflow")
class Fastflow(TrainedImageModel):
    """FastFlow with anomalib's parameters (see the module doc and ``README.md`` beside this file).

    Config:
        layers: default ``[layer1, layer2, layer3]`` (stride 4, 8, 16; anomalib's ``out_indices=[1, 2, 3]``).
        flow_steps: coupling steps per flow (8). conv3x3_only: only 3x3 subnets (False: odd steps 1x1).
        hidden_ratio: subnet hidden channels per input channel (1.0).
        lr, weight_decay: Adam (anomalib 1e-3, 1e-5).
        max_epochs: upper bound on epochs (anomalib's config: 500). patience: early-stopping patience (3).
    """

    version = "1"
    score_meaning = "minus the smallest mean per-layer Gaussian likelihood of the flows' outputs, in [-1, 0]"

    class Config(TrainedImageModelConfig):
        kind: Literal["fastflow"] = "fastflow"
        flow_steps: int = Field(8, ge=1)
        conv3x3_only: bool = False
        hidden_ratio: float = Field(1.0, gt=0)
        weight_decay: float = Field(1e-5, ge=0)
        max_epochs: int = Field(500, ge=1)

    def _heads(self) -> tuple[nn.ModuleList, nn.ModuleList]:
        """Fresh LayerNorms and flows for the backbone's feature shapes at the input size (seeded)."""
        c = self.config
        with torch.no_grad():
            feats = self.extractor(torch.zeros(1, 3, *self.input_size))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(c.seed))
            norms = nn.ModuleList(nn.LayerNorm(tuple(f.shape[1:]), elementwise_affine=True) for f in feats.values())
            flows = nn.ModuleList(FlowBlock(int(f.shape[1]), c.flow_steps, c.conv3x3_only, c.hidden_ratio,
                                            seed=c.seed + i) for i, f in enumerate(feats.values()))
        return norms, flows

    def _training(self) -> TrainingSetup:
        """Fresh norms and flows, Adam over them, the FastFlow loss."""
        c = self.config
        norms, flows = self._heads()
        net = FastflowNetwork(self.input_size, self.extractor, norms, flows)
        heads = nn.ModuleList([norms, flows])
        opt = torch.optim.Adam(heads.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        return TrainingSetup(net, heads, opt, lambda x: fastflow_loss(*net.hidden(x)))

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        net = self.require_network()
        arrays = {**module_arrays(net.norms, "norms."), **module_arrays(net.flows, "flows.")}
        return {"layers": len(net.flows), "flow_steps": self.config.flow_steps}, arrays

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        norms, flows = self._heads()
        load_module_arrays(norms, arrays, "norms.", "fastflow")
        load_module_arrays(flows, arrays, "flows.", "fastflow")
        return FastflowNetwork(self.input_size, self.extractor, norms, flows)
