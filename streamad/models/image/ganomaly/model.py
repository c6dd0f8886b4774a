"""GANomaly (Akcay, Atapour-Abarghouei, Breckon, "GANomaly: Semi-Supervised Anomaly Detection via Adversarial
Training", ACCV 2018, arXiv 1805.06725), following anomalib's ``Ganomaly`` / ``GanomalyModel`` / ``GeneratorLoss`` /
``DiscriminatorLoss``.

* No pretrained backbone: every network is trained from scratch (DCGAN initialisation) on normal images only
  (:mod:`~streamad.models.image.ganomaly.networks`). Input: the RGB frame resized to a square power-of-two
  ``input_size`` and scaled to [-1, 1] (the decoder's Tanh range).
* Generator: encoder ``G_E`` -> latent ``z``, decoder ``G_D`` -> reconstruction ``x^``, second encoder ``E`` ->
  ``z^``. Discriminator: DCGAN classifier of real vs reconstructed images.
* One training step (:class:`AdversarialStep`) updates both with their own Adam (anomalib lr 2e-4, betas
  (0.5, 0.999)): the generator on ``wadv * L_adv + wcon * L_con + wenc * L_enc`` (paper eq. 4, weights 1, 50, 1;
  :mod:`~streamad.models.image.ganomaly.loss`), then the discriminator on its BCE loss; when that loss falls below
  1e-5 the discriminator is re-initialised (anomalib, after the original code).
* Image score (paper eq. 5, anomalib ``GanomalyModel.forward``): ``mean over the latent of (z - z^)^2``. GANomaly
  has no anomaly map: the map is that image score at every pixel (as DFKDE's), so pixel metrics carry no
  localisation (:attr:`Ganomaly.has_anomaly_map` is ``False``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from streamad.models.components.module_arrays import load_module_arrays, module_arrays
from streamad.models.image.base import ImageNetwork
from streamad.models.image.ganomaly.loss import discriminator_loss, generator_loss, generator_losses
from streamad.models.image.ganomaly.networks import Discriminator, Generator, dcgan_init_
from streamad.models.image.image_set import ImageSet
from streamad.models.image.training import TrainedImageModel, TrainedImageModelConfig, TrainingSetup
from streamad.registry import IMAGE_MODELS

__all__ = ["Ganomaly", "GanomalyNetwork", "AdversarialStep", "COLLAPSE"]

COLLAPSE = 1e-5
"""Discriminator loss below which the discriminator is re-initialised (anomalib, the original code)."""


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, s, s) float32`` in 0-255 -> the same in [-1, 1] (``x / 127.5 - 1``)."""
    return x * (1.0 / 127.5) - 1.0


class GanomalyNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 -> (anomaly_map (N, 1, s, s) float32, score (N,) float32)``: the score is
    ``mean((z - z^)^2)`` over the latent, the map that score at every pixel (see the module doc).

    Args:
        size: input ``(s, s)``. generator: the trained :class:`~streamad.models.image.ganomaly.networks.Generator`.
    """

    def __init__(self, size: tuple[int, int], generator: Generator) -> None:
        super().__init__(size)
        self.generator = generator

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, _, z_hat = self.generator(to_unit_range(self.preprocess(images)))
        score = (z - z_hat).pow(2).flatten(1).mean(1)
        n = score.shape[0]
        return score.reshape(n, 1, 1, 1).expand(n, 1, self.size[0], self.size[1]), score


class AdversarialStep:
    """One GANomaly optimisation step on a batch ``x (N, 3, s, s) float32`` in 0-255 (anomalib
    ``Ganomaly.training_step``): the generator's Adam step on :func:`generator_loss`, then the discriminator's on
    :func:`discriminator_loss` of the real and the (detached) reconstructed images; a discriminator loss below
    :data:`COLLAPSE` re-initialises the discriminator (:func:`dcgan_init_`, seeded by ``seed`` and the count).

    Attributes:
        reinits: discriminator re-initialisations so far. last: the last step's losses (``adv``, ``con``, ``enc``,
            ``generator``, ``discriminator``; floats).

    ``__call__(x) -> float``: the generator loss.

    Raises:
        ValueError: the discriminator loss is not finite (the generator's is checked by ``train_epochs``).
    """

    def __init__(self, generator: Generator, discriminator: Discriminator, g_opt: torch.optim.Optimizer,
                 d_opt: torch.optim.Optimizer, weights: tuple[float, float, float], seed: int) -> None:
        self.generator, self.discriminator = generator, discriminator
        self.g_opt, self.d_opt = g_opt, d_opt
        self.weights = weights
        self.seed = int(seed)
        self.reinits = 0
        self.last: dict[str, float] = {}

    def __call__(self, x: torch.Tensor) -> float:
        x = to_unit_range(x)
        z, fake, z_hat = self.generator(x)
        pred_real, feat_real = self.discriminator(x)  # the generator step leaves the discriminator as it is
        _, feat_fake = self.discriminator(fake)
        parts = generator_losses(feat_real.detach(), feat_fake, x, fake, z, z_hat)
        g_loss = generator_loss(parts, *self.weights)
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_opt.step()
        pred_fake, _ = self.discriminator(fake.detach())
        d_loss = discriminator_loss(pred_real, pred_fake)
        self.d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_opt.step()
        d = float(d_loss.detach())
        if not math.isfinite(d):
            raise ValueError(f"ganomaly: the discriminator loss became {d}; lower the learning rate")
        if d < COLLAPSE:
            self.reinits += 1
            dcgan_init_(self.discriminator, torch.Generator().manual_seed(self.seed + self.reinits))
        self.last = {**{k: float(v.detach()) for k, v in parts.items()}, "generator": float(g_loss.detach()),
                     "discriminator": d}
        return self.last["generator"]


@IMAGE_MODELS.register("ganomaly")
class Ganomaly(TrainedImageModel):
    """GANomaly with anomalib's parameters (see the module doc and ``README.md`` beside this file).

    Config:
        input_size: square, each side a power of two >= 32 (anomalib pads to the next power of two instead).
        batch_size: 32 (anomalib). n_features: channels of the first convolution, doubled at every stride-2 step
            (64). latent_vec_size: size of ``z`` (100). extra_layers: 3x3 layers after the first convolution of the
            encoders and before the last of the decoder (0). add_final_conv_layer: encoders end with the 4x4
            convolution to the latent vector (True; else ``z`` is the 4x4 pyramid top).
        wadv, wcon, wenc: weights of the adversarial, contextual and encoder losses (1, 50, 1).
        lr, beta1, beta2: both Adams (2e-4, 0.5, 0.999). weight_decay: both Adams' (0).
        max_epochs, patience: as every trained model (anomalib's config: 100 epochs).
        backbone, weights, layers: unused (no pretrained network).

    Raises:
        pydantic.ValidationError: ``input_size`` not square or not a power of two.
    """

    version = "1"
    score_meaning = "mean squared difference of the latent vectors of the image and of its reconstruction, >= 0"
    has_anomaly_map = False

    class Config(TrainedImageModelConfig):
        kind: Literal["ganomaly"] = "ganomaly"
        n_features: int = Field(64, ge=1)
        latent_vec_size: int = Field(100, ge=1)
        extra_layers: int = Field(0, ge=0)
        add_final_conv_layer: bool = True
        wadv: float = Field(1.0, ge=0)
        wcon: float = Field(50.0, ge=0)
        wenc: float = Field(1.0, ge=0)
        lr: float = Field(2e-4, gt=0)
        beta1: float = Field(0.5, ge=0, lt=1)
        beta2: float = Field(0.999, ge=0, lt=1)

        def model_post_init(self, context: Any, /) -> None:
            super().model_post_init(context)
            h, w = self.input_size
            if h != w or h & (h - 1):
                raise ValueError(f"ganomaly: input_size must be square with a power-of-two side (e.g. [64, 64] or "
                                 f"[128, 128]), got {list(self.input_size)}")

    def backbone_identity(self) -> dict[str, str]:
        """GANomaly uses no pretrained backbone: ``{"backbone": "none", "weights_sha256": "none"}``."""
        return {"backbone": "none", "weights_sha256": "none"}

    def _networks(self) -> tuple[GanomalyNetwork, Discriminator]:
        """A fresh network and discriminator, DCGAN-initialised from ``seed`` (global random state untouched)."""
        c = self.config
        s = self.input_size[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(c.seed))
            gen = Generator(s, 3, c.n_features, c.latent_vec_size, c.extra_layers, c.add_final_conv_layer)
            disc = Discriminator(s, 3, c.n_features, c.extra_layers)
            dcgan_init_(gen)
            dcgan_init_(disc)
        return GanomalyNetwork(self.input_size, gen).eval(), disc

    def _training(self) -> TrainingSetup:
        """A fresh generator and discriminator, an Adam for each, the :class:`AdversarialStep`."""
        c = self.config
        net, disc = self._networks()
        betas = (c.beta1, c.beta2)
        g_opt = torch.optim.Adam(net.generator.parameters(), lr=c.lr, betas=betas, weight_decay=c.weight_decay)
        d_opt = torch.optim.Adam(disc.parameters(), lr=c.lr, betas=betas, weight_decay=c.weight_decay)
        self._step = AdversarialStep(net.generator, disc, g_opt, d_opt, (c.wadv, c.wcon, c.wenc), c.seed)
        module = nn.ModuleDict({"generator": net.generator, "discriminator": disc})
        return TrainingSetup(net, module, step=self._step)

    def fit(self, train: ImageSet, validation: ImageSet | None = None, progress: bool = False) -> dict[str, Any]:
        """As :meth:`TrainedImageModel.fit`; the statistics add ``discriminator_reinits`` and the last step's
        ``last_losses``.

        Raises:
            ValueError: no training image, a loss that is not finite.
        """
        stats = super().fit(train, validation, progress)
        return {**stats, "discriminator_reinits": self._step.reinits,
                "last_losses": {k: round(v, 6) for k, v in self._step.last.items()}}

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        net = self.require_network()
        arrays = module_arrays(net.generator, "generator.")
        return {"generator_arrays": len(arrays)}, arrays

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        net, _ = self._networks()
        load_module_arrays(net.generator, arrays, "generator.", "ganomaly")
        return net
