"""DRAEM's loss (paper section 3.1, eq. 1-3; anomalib ``DraemLoss``, whose parts are kornia's ``SSIMLoss`` and
``FocalLoss``, re-implemented here in torch since kornia is not a dependency):

    ``L = mean((x^ - x)^2) + 2 * L_ssim(x^, x) + L_focal(M^, M)``

* ``L_ssim = mean(clamp((1 - SSIM) / 2, 0, 1))`` over every pixel and channel (kornia ``SSIMLoss``, window 11,
  sigma 1.5, reflected border, ``C1 = 0.01^2``, ``C2 = 0.03^2`` for images in 0-1); times 2 as anomalib (the
  paper's ``lambda`` = 1 on ``1 - SSIM``).
* ``L_focal = mean(-(1 - p_t)^2 * log(p_t))`` over pixels, ``p_t`` the softmax probability of the true class
  (kornia ``FocalLoss(alpha=1, gamma=2, reduction="mean")``).
* ``x`` is the clean image, ``x^`` the reconstruction of its augmented version, ``M`` the simulated anomaly mask and
  ``M^`` the discriminative network's 2-class logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamad.models.components.gaussian_blur import GaussianBlur2d

__all__ = ["ssim_map", "ssim_loss", "focal_loss", "draem_losses", "SSIM_WINDOW", "SSIM_SIGMA"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_WINDOW = GaussianBlur2d(SSIM_SIGMA, SSIM_WINDOW)


def ssim_map(a: torch.Tensor, b: torch.Tensor, max_val: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM ``(N, C, H, W)`` of two ``(N, C, H, W)`` float images in ``0..max_val`` (kornia
    ``metrics.ssim``, Gaussian window 11 / sigma 1.5, reflected border). Sides must exceed 5 pixels."""
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    mu_a, mu_b = _WINDOW(a), _WINDOW(b)
    var_a = _WINDOW(a * a) - mu_a ** 2
    var_b = _WINDOW(b * b) - mu_b ** 2
    cov = _WINDOW(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def ssim_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """kornia ``SSIMLoss(11)``: ``mean(clamp((1 - SSIM) / 2, 0, 1))``, a 0-d tensor (0 for identical images)."""
    return ((1.0 - ssim_map(a, b)) / 2).clamp(0, 1).mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """``mean(-(1 - p_t)^gamma * log p_t)``, a 0-d tensor.

    Args:
        logits: ``(N, K, H, W)`` class logits. target: ``(N, H, W)`` int64 class indices in ``0..K-1``.
    """
    logp = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    return (-(1 - logp.exp()) ** gamma * logp).mean()


def draem_losses(image: torch.Tensor, reconstruction: torch.Tensor, mask: torch.Tensor,
                 logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """The parts of DRAEM's loss, each a 0-d tensor: ``l2``, ``ssim`` (already doubled), ``focal`` and their sum
    ``total`` (anomalib ``DraemLoss.forward``).

    Args:
        image: ``(N, 3, H, W) float32`` clean images 0-1. reconstruction: the same shape. mask: ``(N, 1, H, W)``
            0 / 1 simulated anomaly masks. logits: ``(N, 2, H, W)`` discriminative logits (class 1 = anomalous).
    """
    parts = {"l2": F.mse_loss(reconstruction, image), "ssim": 2.0 * ssim_loss(reconstruction, image),
             "focal": focal_loss(logits, mask[:, 0].long())}
    parts["total"] = parts["l2"] + parts["ssim"] + parts["focal"]
    return parts
