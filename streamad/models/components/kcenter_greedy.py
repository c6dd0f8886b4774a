"""k-center greedy coreset selection (Sener & Savarese, "Active Learning for Convolutional Neural Networks: A
Core-Set Approach", ICLR 2018), as PatchCore uses it to subsample its memory bank (anomalib ``KCenterGreedy``).

Starting from a random point, each step adds the point farthest from every point chosen so far, which minimises
the largest distance of any feature to its nearest coreset member. As in anomalib, the random start point is not
itself part of the coreset, and distances are measured on a sparse random projection of the features
(:func:`~streamad.models.components.random_projection.project_features`). Each step is one pass over all
``N`` features (a matrix-vector product in torch), so the cost is ``coreset size * N * K``.
"""

from __future__ import annotations

import numpy as np
import torch

from streamad.models.components.random_projection import project_features

__all__ = ["k_center_greedy"]


def k_center_greedy(features: np.ndarray, sampling_ratio: float, seed: int = 0, eps: float = 0.9,
                    n_components: int | None = None, progress: bool = False) -> np.ndarray:
    """Indices of the coreset of ``features``.

    Args:
        features: ``(N, D) float32`` patch features.
        sampling_ratio: coreset size as a fraction of ``N`` (anomalib ``coreset_sampling_ratio``); the size is
            ``max(1, int(N * sampling_ratio))``.
        seed: seeds the start point and the projection.
        eps, n_components: projection settings (:func:`project_features`).
        progress: show a tqdm progress bar.

    Returns:
        ``(M,) int64`` distinct indices into ``features``, in the order they were chosen.

    Raises:
        ValueError: no features, or ``sampling_ratio`` not in ``(0, 1]``.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"k_center_greedy: expected (N, D) features with N > 0, got shape {features.shape}")
    if not 0 < sampling_ratio <= 1:
        raise ValueError(f"k_center_greedy: sampling_ratio must be in (0, 1], got {sampling_ratio}")
    n = features.shape[0]
    size = max(1, int(n * sampling_ratio))
    x = torch.from_numpy(project_features(np.asarray(features, np.float32), eps, n_components, seed))
    sq = (x * x).sum(1)
    rng = np.random.default_rng(seed)
    idx = int(rng.integers(n))
    min_d = torch.full((n,), float("inf"))
    chosen = np.empty(size, np.int64)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=size, desc="coreset", unit="pt", dynamic_ncols=True, leave=False)
    with torch.inference_mode():
        for i in range(size):
            c = x[idx]
            d = sq - 2.0 * torch.mv(x, c) + sq[idx]
            torch.minimum(min_d, d, out=min_d)
            idx = int(torch.argmax(min_d))
            min_d[idx] = -1.0  # chosen: never the farthest again (anomalib sets 0 on distances >= 0)
            chosen[i] = idx
            if bar is not None and (i % 256 == 255 or i == size - 1):
                bar.update(i + 1 - bar.n)
    if bar is not None:
        bar.close()
    return chosen
