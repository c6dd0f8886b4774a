"""AI-VAD's grouped k-nearest-neighbour density (anomalib ``models.video.ai_vad.density.GroupedKNNEstimator``),
with an optional subsampled memory bank (streamad extension, to bound the scoring cost)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from streamad.errors import ModelError
from streamad.models.components.blas_threads import one_blas_thread
from streamad.models.components.kcenter_greedy import k_center_greedy
from streamad.models.video.aivad.density import DensityEstimator

__all__ = ["GroupedKNNEstimator", "BANK_SAMPLING"]

#: Memory-bank subsampling methods: keep every row, a seeded random subset, or a k-center greedy coreset.
BANK_SAMPLING = ("none", "random", "kcenter")


def _knn_distance(bank: np.ndarray, x: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """``(M,) float64`` mean Euclidean distance of each row of ``x`` to its ``k`` nearest rows of ``bank``.

    Squared distances by the expansion ``|x|^2 - 2 x.b + |b|^2`` (one matrix product per ``chunk`` query rows, as
    scikit-learn's brute-force neighbours and ``torch.cdist`` compute them), clipped at 0.
    """
    k = min(k, len(bank))
    b = np.asarray(bank, np.float32)
    bb = np.einsum("ij,ij->i", b, b)
    out = np.empty(len(x), np.float64)
    with one_blas_thread():
        for a in range(0, len(x), chunk):
            q = np.asarray(x[a:a + chunk], np.float32)
            d2 = np.einsum("ij,ij->i", q, q)[:, None] - 2.0 * (q @ b.T) + bb[None, :]
            near = np.partition(d2, k - 1, axis=1)[:, :k] if k < len(b) else d2
            out[a:a + chunk] = np.sqrt(np.maximum(near, 0.0)).mean(axis=1)
    return out


class GroupedKNNEstimator(DensityEstimator):
    """Nearest-neighbour distance to the normal training regions, min-max normalised with leave-own-video-out
    distances (anomalib ``GroupedKNNEstimator``): a region's density is its mean distance to the ``n_neighbors``
    nearest bank rows.

    Fitting stacks the training features into a memory bank. The normalisation statistics are the minimum and
    maximum, over every training region, of its mean distance to the ``n_neighbors`` nearest regions of the *other*
    videos (a region's own video would give distances near 0). A test region's score is its mean distance to its
    ``n_neighbors`` nearest bank rows, ``(d - min) / (max - min)`` (not clipped).

    streamad extension: ``bank_size`` > 0 keeps at most that many bank rows after the statistics are computed, chosen
    by ``bank_sampling`` (``random``: a seeded uniform subset; ``kcenter``: the k-center greedy coreset of PatchCore,
    which keeps the rows that cover the feature space). Scoring cost is linear in the bank size.

    Args:
        n_neighbors: ``k`` (anomalib ``n_neighbors_pose`` / ``n_neighbors_deep``, default 1).
        bank_size: rows kept in the bank (0 = all, anomalib).
        bank_sampling: ``none``, ``random`` or ``kcenter``.
        seed: seed of the subsampling.

    Raises:
        ValueError: unknown ``bank_sampling`` or ``n_neighbors`` < 1.
    """

    def __init__(self, n_neighbors: int = 1, bank_size: int = 0,
                 bank_sampling: Literal["none", "random", "kcenter"] = "none", seed: int = 0) -> None:
        if bank_sampling not in BANK_SAMPLING:
            raise ValueError(f"GroupedKNNEstimator bank_sampling must be one of {BANK_SAMPLING}, got {bank_sampling!r}")
        if n_neighbors < 1:
            raise ValueError(f"GroupedKNNEstimator n_neighbors must be >= 1, got {n_neighbors}")
        self.n_neighbors = n_neighbors
        self.bank_size = bank_size
        self.bank_sampling = bank_sampling
        self.seed = seed
        self.bank: np.ndarray | None = None

    def fit(self, features: np.ndarray, groups: np.ndarray) -> None:
        """Fit on ``(N, D) float32`` training features; ``groups`` ``(N,)`` names the video of each row.

        With a single video the statistics use every other row of that video instead (no video to leave out).

        Raises:
            ValueError: features not ``(N, D)``, lengths differ, or fewer than 2 rows.
        """
        x = np.asarray(features, np.float32)
        g = np.asarray(groups)
        if x.ndim != 2 or len(x) != len(g):
            raise ValueError(f"GroupedKNNEstimator expects (N, D) features and N groups, got {x.shape} and {g.shape}")
        if len(x) < 2:
            raise ValueError(f"GroupedKNNEstimator needs at least 2 training regions, got {len(x)}")
        names = np.unique(g)
        dist = np.empty(len(x), np.float64)
        if len(names) == 1:
            d = _knn_distance(x, x, self.n_neighbors + 1)  # the row itself is its own nearest neighbour
            dist[:] = d * (self.n_neighbors + 1) / max(self.n_neighbors, 1)
        else:
            for name in names:
                own = g == name
                dist[own] = _knn_distance(x[~own], x[own], self.n_neighbors)
        self.min, self.max = float(dist.min()), float(dist.max())
        self.bank = self._subsample(x)

    def _subsample(self, x: np.ndarray) -> np.ndarray:
        if self.bank_size <= 0 or self.bank_sampling == "none" or len(x) <= self.bank_size:
            return x
        if self.bank_sampling == "random":
            idx = np.sort(np.random.default_rng(self.seed).choice(len(x), self.bank_size, replace=False))
        else:
            idx = np.sort(k_center_greedy(x, (self.bank_size + 0.5) / len(x), seed=self.seed))
        return np.ascontiguousarray(x[idx])

    @property
    def fitted(self) -> bool:
        return self.bank is not None

    def _density(self, features: np.ndarray) -> np.ndarray:
        """Mean distance of the rows to their ``n_neighbors`` nearest bank rows."""
        assert self.bank is not None
        x = np.asarray(features, np.float32)
        if x.ndim != 2 or x.shape[1] != self.bank.shape[1]:
            raise ModelError(f"GroupedKNNEstimator was fitted on {self.bank.shape[1]}-d features but got shape "
                             f"{x.shape}: the feature operators' settings differ from those the model was fitted "
                             f"with (refit the model)")
        return _knn_distance(self.bank, x, self.n_neighbors)

    def state(self, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Params and arrays that restore this estimator (no pickle)."""
        if self.bank is None:
            raise ModelError("GroupedKNNEstimator has not been fitted")
        params = {"n_neighbors": self.n_neighbors, "bank_size": self.bank_size, "bank_sampling": self.bank_sampling,
                  "seed": self.seed, "min": self.min, "max": self.max}
        return params, {f"{prefix}.bank": self.bank}

    @classmethod
    def from_state(cls, prefix: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> "GroupedKNNEstimator":
        """Rebuild from :meth:`state`. Raises :class:`ModelError` when the bank array is missing."""
        try:
            est = cls(int(params["n_neighbors"]), int(params.get("bank_size", 0)),
                      params.get("bank_sampling", "none"), int(params.get("seed", 0)))
        except (KeyError, ValueError) as exc:
            raise ModelError(f"model weights for {prefix!r}: {exc}") from None
        bank = arrays.get(f"{prefix}.bank")
        if bank is None:
            raise ModelError(f"model weights lack array {prefix + '.bank'!r}")
        est.bank = np.asarray(bank, np.float32)
        est.min, est.max = float(params["min"]), float(params["max"])
        return est
