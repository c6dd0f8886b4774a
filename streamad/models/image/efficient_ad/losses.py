"""EfficientAD's training losses (Batzner et al., arXiv 2303.14535, Sec. 3.2-3.3 and Algorithm 1; anomalib
``EfficientAdModel.forward`` in training mode).

* Hard-feature loss (student-teacher): ``D = (T(x) - S(x)[:, :C])^2`` per channel and position; only the elements
  at or above the ``0.999`` quantile of ``D`` (the hardest 0.1 %) are averaged, so the student imitates the teacher
  where it is worst instead of everywhere (which would let it generalise to anomalies).
* Penalty loss: ``mean(S(p)[:, :C]^2)`` on generic images ``p`` (the paper's ImageNet images), keeping the student
  from imitating the teacher off the training distribution.
* Autoencoder: ``mean((T(a) - A(a))^2)`` on an augmented image ``a``; student-autoencoder:
  ``mean((A(a) - S(a)[:, C:])^2)`` (the student's second half of channels learns the autoencoder's output).
"""

from __future__ import annotations

import torch

__all__ = ["hard_feature_loss", "penalty_loss", "HARD_QUANTILE"]

HARD_QUANTILE = 0.999  # the paper's p_hard


def hard_feature_loss(teacher: torch.Tensor, student: torch.Tensor, quantile: float = HARD_QUANTILE) -> torch.Tensor:
    """Mean of the squared teacher-student differences at or above their ``quantile`` (0-d float32 tensor).

    Args:
        teacher: ``(N, C, h, w)`` normalised teacher features (no gradient needed).
        student: ``(N, C, h, w)``, the student's first ``C`` channels.
        quantile: ``p_hard`` in ``[0, 1]`` (0.999).
    """
    d = (teacher - student) ** 2
    # the quantile of a detached copy: the threshold selects elements, the gradient flows through d
    flat = d.detach().flatten()
    k = max(1, int(round((1.0 - float(quantile)) * flat.numel())))
    threshold = flat.kthvalue(flat.numel() - k + 1).values if k < flat.numel() else flat.min()
    return d[d >= threshold].mean()


def penalty_loss(student_generic: torch.Tensor) -> torch.Tensor:
    """``mean(S(p)[:, :C]^2)`` of the student's first ``C`` channels on generic images (0-d tensor).

    Args:
        student_generic: ``(N, C, h, w)``.
    """
    return (student_generic ** 2).mean()
