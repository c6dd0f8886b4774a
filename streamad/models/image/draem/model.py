"""DRAEM (Zavrtanik, Kristan, Skocaj, "DRAEM - A discriminatively trained reconstruction embedding for surface
anomaly detection", ICCV 2021, arXiv 2108.07610), following anomalib's ``Draem`` / ``DraemModel`` / ``DraemLoss`` /
``Augmenter``.

* No pretrained backbone: both sub-networks are trained from scratch (:mod:`~streamad.models.image.draem.networks`)
  on normal images only. Input: the RGB frame resized to ``input_size`` (sides multiples of 32), scaled to 0-1.
* Training step (:class:`DraemStep`): simulated anomalies are pasted into half of the batch
  (:class:`~streamad.models.image.draem.augmenter.AnomalyGenerator`: Perlin masks, procedural or folder textures,
  opacity ``beta``); the reconstructive network reconstructs the augmented batch, the discriminative network
  segments the simulated anomalies from the concatenated augmented image and reconstruction; one Adam (anomalib lr
  1e-4) on ``L2 + 2 * SSIM loss + focal loss`` (:mod:`~streamad.models.image.draem.loss`), plus ``sspcab_lambda``
  times the SSPCAB block's ``MSE(output, input)`` when ``enable_sspcab``.
* Anomaly map (anomalib ``Draem.validation_step``): the softmax probability of the anomalous class per pixel, in
  0-1. Image score: the map's maximum (anomalib's post-processing of a model that returns only a map; the paper
  takes the maximum of the map smoothed by a 21x21 mean filter instead).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from streamad.models.image.base import ImageNetwork
from streamad.models.image.draem.augmenter import AnomalyGenerator, load_sources
from streamad.models.image.draem.loss import draem_losses
from streamad.models.image.draem.networks import DiscriminativeSubNetwork, ReconstructiveSubNetwork, check_unet_size
from streamad.models.image.image_set import ImageSet
from streamad.models.image.training import TrainedImageModel, TrainedImageModelConfig, TrainingSetup
from streamad.models.image.whole_network import WholeNetworkState
from streamad.registry import IMAGE_MODELS

__all__ = ["Draem", "DraemNetwork", "DraemStep"]


class DraemNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 -> (anomaly_map (N, 1, h, w) float32 in 0-1, score (N,) float32 in 0-1)``: the
    anomalous-class softmax probability per pixel and its maximum (see the module doc).

    Args:
        size: input ``(h, w)``, multiples of 32. recon_width / disc_width: base widths of the reconstructive and
            discriminative networks. sspcab: the reconstructive encoder's fifth block is SSPCAB.
    """

    def __init__(self, size: tuple[int, int], recon_width: int, disc_width: int, sspcab: bool = False) -> None:
        super().__init__(size)
        self.reconstructive = ReconstructiveSubNetwork(recon_width, sspcab)
        self.discriminative = DiscriminativeSubNetwork(disc_width)

    def segment(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (N, 3, h, w) float32 0-1 -> (reconstruction (N, 3, h, w), logits (N, 2, h, w))``
        (anomalib ``DraemModel.forward`` in training mode)."""
        reconstruction = self.reconstructive(x)
        return reconstruction, self.discriminative(torch.cat([x, reconstruction], 1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, logits = self.segment(self.preprocess(images) * (1.0 / 255.0))
        amap = F.softmax(logits, dim=1)[:, 1:2]
        return amap, amap.flatten(1).amax(1)


class DraemStep:
    """One DRAEM optimisation step on a batch ``x (N, 3, h, w) float32`` in 0-255 (anomalib
    ``Draem.training_step``): simulated anomalies, the two networks, :func:`draem_losses` (+ the SSPCAB loss), one
    Adam step.

    Attributes:
        last: the last step's losses (``l2``, ``ssim``, ``focal``, ``total``; ``sspcab`` when enabled; floats).

    ``__call__(x) -> float``: the total loss.
    """

    def __init__(self, network: DraemNetwork, generator: AnomalyGenerator, optimizer: torch.optim.Optimizer,
                 sspcab_lambda: float) -> None:
        self.network, self.generator, self.optimizer = network, generator, optimizer
        self.sspcab_lambda = float(sspcab_lambda)
        self.last: dict[str, float] = {}

    def __call__(self, x: torch.Tensor) -> float:
        clean = x * (1.0 / 255.0)
        augmented, masks = self.generator(clean)
        reconstruction, logits = self.network.segment(augmented)
        parts = draem_losses(clean, reconstruction, masks, logits)
        io = self.network.reconstructive.sspcab_io
        if io is not None:
            parts["sspcab"] = F.mse_loss(io[1], io[0])
            parts["total"] = parts["total"] + self.sspcab_lambda * parts["sspcab"]
        self.optimizer.zero_grad(set_to_none=True)
        parts["total"].backward()
        self.optimizer.step()
        self.last = {k: float(v.detach()) for k, v in parts.items()}
        return self.last["total"]


@IMAGE_MODELS.register("draem")
class Draem(WholeNetworkState, TrainedImageModel):
    """DRAEM with anomalib's parameters (see the module doc and ``README.md`` beside this file).

    Config:
        input_size: sides multiples of 32 (the discriminative U-Net pools 5 times).
        batch_size: 8 (anomalib's DRAEM config). lr: Adam's (1e-4, anomalib). weight_decay: Adam's (0).
        recon_base_width: reconstructive network width ``w`` (anomalib 128). disc_base_width: discriminative (64).
        beta: ``(low, high)`` range of the anomaly opacity (anomalib ``Draem`` (0.1, 1.0)).
        p_anomalous: share of each batch that gets a simulated anomaly (anomalib 0.5).
        anomaly_source_path: a folder of texture images for the anomalies (anomalib: DTD); ``None``: procedural
            colour Perlin textures (:mod:`~streamad.models.image.draem.augmenter`).
        enable_sspcab / sspcab_lambda: SSPCAB as the fifth reconstructive encoder block and its loss weight
            (False / 0.1, anomalib).
        max_epochs, patience: as every trained model (anomalib's config: 700 epochs).
        backbone, weights, layers: unused (no pretrained network).

    Raises:
        pydantic.ValidationError: an ``input_size`` side not a multiple of 32, ``beta`` not ``0 <= low <= high
            <= 1``.
    """

    version = "1"
    array_prefix = "draem"
    score_meaning = "maximum over the pixels of the discriminative network's anomalous-class probability, 0-1"

    class Config(TrainedImageModelConfig):
        kind: Literal["draem"] = "draem"
        batch_size: int = Field(8, ge=1)
        lr: float = Field(1e-4, gt=0)
        recon_base_width: int = Field(128, ge=1)
        disc_base_width: int = Field(64, ge=1)
        beta: tuple[float, float] = (0.1, 1.0)
        p_anomalous: float = Field(0.5, gt=0, le=1)
        anomaly_source_path: str | None = None
        enable_sspcab: bool = False
        sspcab_lambda: float = Field(0.1, ge=0)

        @model_validator(mode="after")
        def _check(self) -> "Draem.Config":
            check_unet_size("draem", self.input_size)
            lo, hi = self.beta
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"draem: beta must be a range (low, high) with 0 <= low <= high <= 1, got "
                                 f"{list(self.beta)}")
            return self

    def backbone_identity(self) -> dict[str, str]:
        """DRAEM uses no pretrained backbone: ``{"backbone": "none", "weights_sha256": "none"}``."""
        return {"backbone": "none", "weights_sha256": "none"}

    def _network(self) -> DraemNetwork:
        """A fresh network initialised from ``seed`` (torch's default initialisation, as anomalib; global random
        state untouched)."""
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(c.seed))
            net = DraemNetwork(self.input_size, c.recon_base_width, c.disc_base_width, c.enable_sspcab)
        return net.eval()

    def _training(self) -> TrainingSetup:
        """A fresh network, its Adam, the anomaly generator (seeded by ``seed``) and the :class:`DraemStep`.

        Raises:
            ValueError: ``anomaly_source_path`` is not a folder of images.
        """
        c = self.config
        sources = None if c.anomaly_source_path is None else load_sources(c.anomaly_source_path, self.input_size)
        net = self._network()
        generator = AnomalyGenerator(self.input_size, c.seed, c.beta, c.p_anomalous, sources)
        opt = torch.optim.Adam(net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self._step = DraemStep(net, generator, opt, c.sspcab_lambda)
        return TrainingSetup(net, net, step=self._step)

    def fit(self, train: ImageSet, validation: ImageSet | None = None, progress: bool = False) -> dict[str, Any]:
        """As :meth:`TrainedImageModel.fit`; the statistics add the last step's ``last_losses``.

        Raises:
            ValueError: no training image, a loss that is not finite, a bad ``anomaly_source_path``.
        """
        stats = super().fit(train, validation, progress)
        return {**stats, "last_losses": {k: round(v, 6) for k, v in self._step.last.items()}}
