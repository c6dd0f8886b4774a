"""Sparse random projection of patch features before the k-center greedy coreset search (anomalib
``SparseRandomProjection(eps=0.9)``; Li, Hastie, Church, "Very sparse random projections", KDD 2006).

scikit-learn's :class:`sklearn.random_projection.SparseRandomProjection` does the work. The target dimension is
the Johnson-Lindenstrauss bound for ``eps`` (Dasgupta & Gupta), as in anomalib, but never more than the input
dimension: with a small backbone (EfficientNet-Lite0 patches have 152 dims) the bound for eps 0.9 exceeds the input
dimension, where anomalib would project *up*; then the features are kept as they are (or projected to
``n_components`` when given, to make the greedy search cheaper).
"""

from __future__ import annotations

import numpy as np

__all__ = ["project_features"]


def project_features(features: np.ndarray, eps: float = 0.9, n_components: int | None = None,
                     seed: int = 0) -> np.ndarray:
    """Project ``(N, D) float32`` features to ``(N, K) float32``.

    Args:
        features: the patch features.
        eps: Johnson-Lindenstrauss distortion that sets ``K`` when ``n_components`` is not given.
        n_components: explicit ``K`` (capped at ``D``).
        seed: random state of the projection matrix.

    Returns:
        The projected features; ``features`` itself when ``K >= D`` (no projection needed).

    Raises:
        ValueError: ``features`` is not 2-D or empty, ``eps`` not in ``(0, 1)``, ``n_components < 1``.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"project_features: expected (N, D) features with N > 0, got shape {features.shape}")
    if not 0 < eps < 1:
        raise ValueError(f"project_features: eps must be in (0, 1), got {eps}")
    if n_components is not None and n_components < 1:
        raise ValueError(f"project_features: n_components must be >= 1, got {n_components}")
    from sklearn.random_projection import SparseRandomProjection, johnson_lindenstrauss_min_dim  # on use: scikit-learn takes a second to import

    n, d = features.shape
    k = int(johnson_lindenstrauss_min_dim(n, eps=eps)) if n_components is None else int(n_components)
    if k >= d:
        return features
    srp = SparseRandomProjection(n_components=k, random_state=seed, dense_output=True)
    return np.ascontiguousarray(srp.fit_transform(features), dtype=np.float32)
