"""Gaussian densities of feature vectors: one per patch position (PaDiM) and one for whole images (DFM).

* :class:`PatchGaussian` follows anomalib ``MultiVariateGaussian`` (Defard et al., "PaDiM", arXiv 2011.08785): at
  every position of the feature map, the mean and the covariance of the training embeddings, regularised by
  ``0.01 * I``, kept as mean and inverse covariance. Statistics are accumulated batch by batch (sums in float64),
  so the training embeddings are never all held in memory (anomalib stores them all).
* :func:`mahalanobis_map` is anomalib's PaDiM distance ``sqrt(clamp((x - mu)^T S^-1 (x - mu), 0))`` per position.
* :class:`GaussianNLL` follows anomalib ``SingleClassGaussian`` (DFM, Ahuja et al., arXiv 1909.11786): a Gaussian
  fitted by SVD of the centred data, scored by ``||(x - mu) U / s||^2 + 2 sum(log s)`` (negative log-likelihood up
  to constants).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["PatchGaussian", "mahalanobis_map", "GaussianNLL"]


class PatchGaussian:
    """Per-position Gaussian of ``(N, C, H, W)`` embeddings, fitted incrementally.

    Args:
        regularization: added to the covariance diagonal (anomalib: 0.01).
    """

    def __init__(self, regularization: float = 0.01) -> None:
        self.regularization = float(regularization)
        self.count = 0
        self._sum: torch.Tensor | None = None  # (P, C) float64
        self._outer: torch.Tensor | None = None  # (P, C, C) float64

    def update(self, embedding: torch.Tensor) -> None:
        """Add a batch of embeddings ``(N, C, H, W) float32``.

        Raises:
            ValueError: the shape differs from earlier batches.
        """
        n, c, h, w = embedding.shape
        x = embedding.detach().reshape(n, c, h * w).permute(2, 0, 1).double()  # (P, N, C)
        if self._sum is None:
            self._sum = torch.zeros(h * w, c, dtype=torch.float64)
            self._outer = torch.zeros(h * w, c, c, dtype=torch.float64)
        elif self._sum.shape != (h * w, c):
            raise ValueError(f"PatchGaussian: embedding of {c} channels x {h}x{w} positions after batches of "
                             f"{self._sum.shape[1]} channels x {self._sum.shape[0]} positions")
        self._sum += x.sum(1)
        assert self._outer is not None
        self._outer.baddbmm_(x.transpose(1, 2), x)
        self.count += n

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean (C, P) float32, inverse covariance (P, C, C) float32)`` (anomalib's layout), with the unbiased
        covariance (``N - 1``) plus ``regularization * I``.

        Raises:
            ValueError: fewer than 2 embeddings were seen.
        """
        if self._sum is None or self.count < 2 or self._outer is None:
            raise ValueError(f"PatchGaussian: need at least 2 training images, got {self.count}")
        n = self.count
        mean = self._sum / n  # (P, C)
        cov = (self._outer - n * mean[:, :, None] * mean[:, None, :]) / (n - 1)
        cov += self.regularization * torch.eye(cov.shape[-1], dtype=torch.float64)
        inv = torch.linalg.inv(cov)
        return mean.T.contiguous().float(), inv.float()


def mahalanobis_map(embedding: torch.Tensor, mean: torch.Tensor, inv_covariance: torch.Tensor) -> torch.Tensor:
    """Mahalanobis distance of each position of ``embedding (N, C, H, W)`` to its Gaussian.

    Args:
        mean: ``(C, H * W)``; inv_covariance: ``(H * W, C, C)`` (from :meth:`PatchGaussian.compute`).

    Returns:
        ``(N, 1, H, W) float32`` distances (anomalib ``AnomalyMapGenerator.compute_distance``).
    """
    n, c, h, w = embedding.shape
    delta = (embedding.reshape(n, c, h * w) - mean).permute(2, 0, 1)  # (P, N, C)
    dist = (torch.matmul(delta, inv_covariance) * delta).sum(2).permute(1, 0)  # (N, P)
    return dist.reshape(n, 1, h, w).clamp(min=0).sqrt()


class GaussianNLL(nn.Module):
    """A single Gaussian over ``(N, D)`` features scored by its negative log-likelihood (anomalib
    ``SingleClassGaussian``).

    :meth:`fit` (numpy/torch, float64) sets the buffers ``mean (D,)``, ``u (D, K)`` and ``sigma (K,)``;
    ``forward(features (N, D) float32) -> (N,) float32`` NLL scores (higher = less likely).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("u_over_sigma", torch.zeros(0, 0))
        self.register_buffer("log_det", torch.zeros(()))

    def fit(self, features: np.ndarray) -> None:
        """Fit on ``(N, D)`` features (``N >= 2``).

        Raises:
            ValueError: fewer than 2 samples.
        """
        x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"GaussianNLL: need (N, D) features with N >= 2, got shape {tuple(x.shape)}")
        mean = x.mean(0)
        centred = (x - mean).T / np.sqrt(x.shape[0])  # (D, N), anomalib's layout
        u, s, _ = torch.linalg.svd(centred, full_matrices=False)
        keep = s > s.max() * 1e-12  # drop null directions (a rank-deficient sample)
        u, s = u[:, keep], s[keep]
        self.mean = mean.float()
        self.u_over_sigma = (u / s).float()
        self.log_det = (2 * torch.log(s).sum()).float()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = torch.matmul(features - self.mean, self.u_over_sigma)
        return (z * z).sum(1) + self.log_det
