"""GANomaly's losses (paper section 3.1, eq. 1-4; anomalib ``GeneratorLoss`` / ``DiscriminatorLoss``).

* Adversarial loss (eq. 1, feature matching): mean squared difference of the discriminator's features of the real
  and the generated image, ``mean((f(x) - f(x^))^2)``.
* Contextual loss (eq. 2): ``mean(|x - x^|)`` (L1).
* Encoder loss (eq. 3): ``mean((z - z^)^2)`` (L2).
* Generator loss (eq. 4): ``wadv * L_adv + wcon * L_con + wenc * L_enc`` (anomalib's weights 1, 50, 1).
* Discriminator loss: ``0.5 * (BCE(D(x), 1) + BCE(D(x^), 0))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["generator_losses", "generator_loss", "discriminator_loss"]


def generator_losses(feat_real: torch.Tensor, feat_fake: torch.Tensor, images: torch.Tensor, fake: torch.Tensor,
                     latent_i: torch.Tensor, latent_o: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three generator losses, each a 0-d tensor: ``adv``, ``con`` and ``enc`` (see the module doc).

    Args:
        feat_real, feat_fake: discriminator features of the real and generated images (same shape).
        images, fake: ``(N, C, s, s)`` real and generated images in [-1, 1].
        latent_i, latent_o: ``z = G_E(x)`` and ``z^ = E(x^)`` (same shape).
    """
    return {"adv": F.mse_loss(feat_fake, feat_real), "con": F.l1_loss(fake, images),
            "enc": F.mse_loss(latent_o, latent_i)}


def generator_loss(losses: dict[str, torch.Tensor], wadv: float, wcon: float, wenc: float) -> torch.Tensor:
    """``wadv * adv + wcon * con + wenc * enc`` of :func:`generator_losses` (paper eq. 4), a 0-d tensor."""
    return wadv * losses["adv"] + wcon * losses["con"] + wenc * losses["enc"]


def discriminator_loss(pred_real: torch.Tensor, pred_fake: torch.Tensor) -> torch.Tensor:
    """``0.5 * (BCE(pred_real, 1) + BCE(pred_fake, 0))`` (a 0-d tensor) of the discriminator's ``(N,)``
    probabilities in (0, 1) for real and generated images."""
    real = F.binary_cross_entropy(pred_real, torch.ones_like(pred_real))
    fake = F.binary_cross_entropy(pred_fake, torch.zeros_like(pred_fake))
    return 0.5 * (real + fake)
