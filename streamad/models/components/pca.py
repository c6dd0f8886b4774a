"""Principal component analysis for DFM and DFKDE (anomalib ``PCA``), fitted by scikit-learn and applied by a torch
module so that it is part of an exported graph.

``n_components`` is a count (``>= 1``) or a fraction of explained variance in ``(0, 1)`` (anomalib ``pca_level``
0.97). scikit-learn keeps the smallest number of components whose cumulative explained variance *exceeds* the
fraction; anomalib's own PCA keeps one component fewer (it takes the index of that component as the count).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["PCA"]


class PCA(nn.Module):
    """Centring and projection onto the principal axes.

    ``forward(x (N, D) float32) -> (N, K) float32`` = ``(x - mean) @ components``; :meth:`reconstruct` maps back to
    the centred input space (``(N, K) -> (N, D)``, anomalib ``inverse_transform``, which does not add the mean).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("components", torch.zeros(0, 0))  # (D, K)

    def fit(self, features: np.ndarray, n_components: float, seed: int = 0) -> "PCA":
        """Fit on ``(N, D) float`` features; returns ``self``.

        Raises:
            ValueError: fewer than 2 samples, or ``n_components`` out of range (``<= 0``, or an integer count above
                ``min(N, D)``).
        """
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"PCA: need (N, D) features with N >= 2, got shape {x.shape}")
        if n_components <= 0:
            raise ValueError(f"PCA: n_components must be > 0, got {n_components}")
        k: int | float = float(n_components) if n_components < 1 else int(n_components)
        if isinstance(k, int) and k > min(x.shape):
            raise ValueError(f"PCA: n_components {k} exceeds min(samples, features) = {min(x.shape)}")
        from sklearn.decomposition import PCA as _SkPCA  # on use: scikit-learn takes a second to import

        sk = _SkPCA(n_components=k, svd_solver="full", random_state=seed).fit(x)
        self.mean = torch.from_numpy(sk.mean_).float()
        self.components = torch.from_numpy(np.ascontiguousarray(sk.components_.T)).float()
        return self

    @property
    def n_components(self) -> int:
        """Number of kept components ``K``."""
        return int(self.components.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x - self.mean, self.components)

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        return torch.matmul(z, self.components.T)
