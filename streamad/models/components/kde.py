"""Gaussian kernel density estimate with Scott's bandwidth (anomalib ``GaussianKDE``, used by DFKDE's
``KDEClassifier``).

Fitting whitens the data with the Cholesky factor of the inverse bandwidth covariance
(``cov(data) * n^(-2 / (d + 4))``, Scott's rule); the density of ``x`` is
``norm * mean_i exp(-||(x - x_i) L||^2 / 2)``. :meth:`GaussianKDE.forward` returns its logarithm, computed with
``logsumexp``: anomalib sums the exponentials in float32 and adds ``1e-300`` before the log, which underflows to
``log(0)`` far from the data; the log-sum-exp is the same number wherever anomalib's is finite.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["GaussianKDE"]


class GaussianKDE(nn.Module):
    """Gaussian KDE over ``(N, D)`` features; ``forward(x (M, D) float32) -> (M,) float32`` log-densities."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("bw_transform", torch.zeros(0, 0))
        self.register_buffer("dataset", torch.zeros(0, 0))
        self.register_buffer("log_norm", torch.zeros(()))

    def fit(self, features: np.ndarray) -> "GaussianKDE":
        """Fit on ``(N, D)`` features, ``N > D``; returns ``self``.

        Raises:
            ValueError: too few samples, or a singular covariance (constant features).
        """
        x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
        n, d = x.shape
        if n <= d:
            raise ValueError(f"GaussianKDE: need more samples than dimensions, got {n} samples of {d} dims")
        factor = n ** (-1.0 / (d + 4))
        cov = torch.cov(x.T)
        try:
            inv_cov = torch.linalg.inv(cov) / factor**2
            bw = torch.linalg.cholesky(inv_cov)
        except RuntimeError as exc:  # torch.linalg.LinAlgError subclasses RuntimeError
            raise ValueError(f"GaussianKDE: the feature covariance is singular ({exc})") from None
        self.bw_transform = bw.float()
        self.dataset = (x @ bw).float()
        self.log_norm = (torch.log(torch.diag(bw)).sum() - d / 2 * math.log(2 * math.pi)).float()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.matmul(x, self.bw_transform)  # (M, D)
        sq = (z * z).sum(1, keepdim=True) - 2 * torch.matmul(z, self.dataset.T) + (self.dataset**2).sum(1)
        n = self.dataset.shape[0]
        return torch.logsumexp(-0.5 * sq.clamp(min=0), dim=1) - math.log(n) + self.log_norm
