"""anomalib's ``KDEClassifier`` (used by DFKDE and R-KDE): PCA, feature scaling and a Gaussian kernel density
estimate over feature vectors, turned into an anomaly probability.

* Fit (:meth:`KDEClassifier.fit`): at most ``max_training_points`` vectors (a seeded random subset; anomalib 40000),
  PCA to ``n_components`` (:class:`~streamad.models.components.pca.PCA`), scaled (``scale``: divided by the largest
  projected norm seen in training; ``norm``: each vector to unit length), then a Gaussian KDE with Scott's bandwidth
  (:class:`~streamad.models.components.kde.GaussianKDE`).
* Score (:meth:`KDEClassifier.forward`): the anomaly probability ``1 / (1 + exp(0.05 * (log_density - 12)))``
  (anomalib ``compute_probabilities``, 0.x ``threshold_steepness`` 0.05, ``threshold_offset`` 12): low density =
  high probability.

The fitted buffers are named ``pca.*``, ``kde.*`` and ``max_length`` (what DFKDE has always saved).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from streamad.models.components.dynamic_buffers import assign_buffers, buffer_arrays
from streamad.models.components.kde import GaussianKDE
from streamad.models.components.pca import PCA

__all__ = ["KDEClassifier", "FeatureScaling"]

FeatureScaling = Literal["scale", "norm"]

#: anomalib 0.x ``KDEClassifier`` defaults of ``compute_probabilities``.
_STEEPNESS, _OFFSET = 0.05, 12.0


class KDEClassifier(nn.Module):
    """``forward(features (N, D) float32) -> (N,) float32`` anomaly probabilities in ``(0, 1)``, see the module doc.

    Args:
        scaling: ``scale`` (anomalib default) or ``norm``.
    """

    def __init__(self, scaling: FeatureScaling = "scale") -> None:
        super().__init__()
        self.scaling = scaling
        self.pca = PCA()
        self.kde = GaussianKDE()
        self.register_buffer("max_length", torch.ones(()))

    def scale(self, z: torch.Tensor) -> torch.Tensor:
        """anomalib ``KDEClassifier.pre_process`` on projected features ``(N, K)``."""
        if self.scaling == "norm":
            return z / torch.linalg.vector_norm(z, dim=1, keepdim=True)
        return z / self.max_length

    def fit(self, features: np.ndarray, n_components: int, max_points: int, seed: int = 0) -> "KDEClassifier":
        """Fit on ``(N, D) float`` features (a seeded subset of ``max_points`` when ``N`` exceeds it); returns self.

        Raises:
            ValueError: ``N <= n_components`` (neither PCA nor the KDE can be fitted), or constant features.
        """
        x = np.asarray(features, np.float32)
        if x.ndim != 2 or x.shape[0] <= n_components:
            raise ValueError(f"KDE classifier: need more feature vectors than n_pca_components ({n_components}), "
                             f"got shape {x.shape}")
        if x.shape[0] > max_points:
            keep = np.random.default_rng(seed).choice(x.shape[0], max_points, replace=False)
            x = x[np.sort(keep)]
        self.pca.fit(x, n_components, seed=seed)
        with torch.inference_mode():
            z = self.pca(torch.from_numpy(x))
            self.max_length = torch.linalg.vector_norm(z, dim=1).max()
            scaled = self.scale(z)
        self.kde.fit(scaled.double().numpy())
        return self

    @property
    def training_points(self) -> int:
        """Number of vectors the KDE holds (0 before :meth:`fit`)."""
        return int(self.kde.dataset.shape[0])

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``({"training_points"}, {"pca.*", "kde.*", "max_length"} arrays)`` for a model's ``_fitted_state``."""
        return {"training_points": self.training_points}, buffer_arrays(self)

    @classmethod
    def from_arrays(cls, scaling: FeatureScaling, arrays: dict[str, np.ndarray], what: str) -> "KDEClassifier":
        """The fitted classifier from :meth:`state`'s arrays.

        Raises:
            ModelError: an array is missing (the message names ``what``, the model kind, and the key).
        """
        classifier = cls(scaling)
        assign_buffers(classifier, arrays, "", what)
        return classifier

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        log_density = self.kde(self.scale(self.pca(features)))
        return 1.0 / (1.0 + torch.exp(_STEEPNESS * (log_density - _OFFSET)))
