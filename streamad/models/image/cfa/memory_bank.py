"""CFA's memory bank: the centroids the target-oriented features are pulled to (CFA paper section III-C, anomalib
``CfaModel.initialize_centroid``), and the squared Euclidean distances to them.

Before training, the (still untrained) descriptor's features are averaged over the training set at every grid
position: one centroid per position, ``h * w`` of them. With ``gamma_c > 1`` they are compressed by k-means into
``h * w // gamma_c`` centroids (the paper's memory compression). The bank is then fixed; only the descriptor trains.
"""

from __future__ import annotations

import torch

__all__ = ["kmeans", "squared_distances"]


def squared_distances(features: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances of every position's feature to every centroid, as
    ``|f|^2 + |c|^2 - 2 f.c`` (a matrix product: ``torch.cdist`` does not export to ONNX / OpenVINO; anomalib
    ``CfaModel.compute_distance``), clamped at 0 against rounding.

    Args:
        features: ``(N, D, h, w)`` float32. bank: ``(M, D)`` float32 centroids.

    Returns:
        ``(N, h * w, M)`` float32, positions in row-major order.
    """
    f = features.flatten(2).transpose(1, 2)  # (N, P, D)
    f_sq = (f * f).sum(-1, keepdim=True)  # (N, P, 1)
    c_sq = (bank * bank).sum(-1).view(1, 1, -1)  # (1, 1, M)
    return (f_sq + c_sq - 2.0 * torch.matmul(f, bank.t())).clamp_min(0.0)


def kmeans(points: torch.Tensor, k: int, seed: int, iterations: int = 30) -> torch.Tensor:
    """Lloyd's k-means of ``points (P, D)`` float32 into ``k`` centroids ``(k, D)``, started by k-means++ seeding
    (Arthur & Vassilvitskii 2007: each next start drawn with probability proportional to its squared distance to the
    nearest start) with ``seed``; a cluster that empties keeps its previous centroid. The global random state is
    untouched.

    Raises:
        ValueError: ``k`` outside ``1 .. P``.
    """
    n = points.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"kmeans: k must lie in 1..{n}, got {k}")
    g = torch.Generator().manual_seed(int(seed))
    picks = [int(torch.randint(n, (1,), generator=g))]
    nearest = ((points - points[picks[0]]) ** 2).sum(1)
    for _ in range(1, k):
        weights = nearest.double()
        pick = int(torch.multinomial(weights, 1, generator=g)) if float(weights.sum()) > 0 else len(picks)
        picks.append(pick)
        nearest = torch.minimum(nearest, ((points - points[pick]) ** 2).sum(1))
    centroids = points[picks].clone()
    for _ in range(iterations):
        assign = squared_distances(points.t().unsqueeze(0).unsqueeze(-1), centroids)[0].argmin(1)  # (P,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).to(points.dtype).unsqueeze(1)
        moved = torch.where(counts > 0, sums / counts.clamp_min(1.0), centroids)
        if torch.equal(moved, centroids):
            break
        centroids = moved
    return centroids
