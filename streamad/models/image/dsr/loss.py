"""DSR's losses (paper section 3.4; anomalib ``DsrSecondStageLoss`` and ``DsrThirdStageLoss``), with DRAEM's focal
loss (:func:`~streamad.models.image.draem.loss.focal_loss`, kornia ``FocalLoss(alpha=1, gamma=2)``):

* Phase 2: ``MSE(F~_hi, Q_hi) + MSE(F~_lo, Q_lo) + 10 * MSE(I_spc, I) + L_focal(M, M_gt)``: the subspace
  restriction outputs (before their re-quantisation) against the quantised features of the clean image, the
  object-specific decoder's image against the clean image (anomalib weighs it by 10), the anomaly detection
  module's logits against the simulated mask.
* Phase 3: ``L_focal`` of the upsampling module's logits against the image-level mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamad.models.image.draem.loss import focal_loss

__all__ = ["second_stage_losses", "third_stage_loss", "IMAGE_WEIGHT"]

IMAGE_WEIGHT = 10.0
"""Weight of the object-specific image reconstruction term (anomalib ``DsrSecondStageLoss``)."""


def second_stage_losses(recon_hi: torch.Tensor, recon_lo: torch.Tensor, q_hi: torch.Tensor, q_lo: torch.Tensor,
                        image: torch.Tensor, object_image: torch.Tensor, logits: torch.Tensor,
                        mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The parts of phase 2's loss, each a 0-d tensor: ``hi``, ``lo``, ``image`` (already times 10), ``focal`` and
    their sum ``total``.

    Args:
        recon_hi / q_hi: ``(N, d, H/8, W/8)``; recon_lo / q_lo: ``(N, d, H/4, W/4)`` float32. image / object_image:
            ``(N, 3, H, W)`` float32 0-1. logits: ``(N, 2, H, W)`` (class 1 = anomalous). mask: ``(N, 1, H, W)``
            0 / 1.
    """
    parts = {"hi": F.mse_loss(recon_hi, q_hi), "lo": F.mse_loss(recon_lo, q_lo),
             "image": IMAGE_WEIGHT * F.mse_loss(object_image, image), "focal": focal_loss(logits, mask[:, 0].long())}
    parts["total"] = parts["hi"] + parts["lo"] + parts["image"] + parts["focal"]
    return parts


def third_stage_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Phase 3's 0-d focal loss: ``logits (N, 2, H, W)`` against ``mask (N, 1, H, W)`` 0 / 1."""
    return focal_loss(logits, mask[:, 0].long())
