"""WinCLIP's sliding windows and score arithmetic (Jeong et al., "WinCLIP: Zero-/Few-Shot Anomaly Classification
and Segmentation", CVPR 2023, arXiv 2303.14814; anomalib ``winclip/utils.py``: ``make_masks``,
``harmonic_aggregation``, ``class_scores``, ``visual_association_score``).

Patches are numbered row-major over the ViT's ``(gh, gw)`` patch grid (``0 .. gh*gw - 1``, the class token not
counted). A window of ``scale`` s is an ``s x s`` block of patches; windows slide with stride 1, so a grid holds
``(gh - s + 1) * (gw - s + 1)`` of them.

Differs from anomalib: :func:`harmonic_aggregation` is a matrix product with a ``(patches, windows)`` coverage matrix
(anomalib loops over the patches in Python), so that it traces into one OpenVINO graph; window scores are clamped
to at least :data:`EPS` first (anomalib divides by a zero score and turns the resulting ``inf`` into 0: the same
result up to 1e-12, where a product with a coverage matrix would turn ``inf * 0`` into NaN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["EPS", "window_masks", "coverage", "harmonic_aggregation", "class_scores", "visual_association_score"]

#: smallest window score :func:`harmonic_aggregation` divides by.
EPS = 1e-12


def window_masks(grid: tuple[int, int], scale: int) -> torch.Tensor:
    """The patches of every ``scale x scale`` window of a ``grid`` of patches, stride 1 (anomalib ``make_masks``).

    Args:
        grid: ``(gh, gw)`` patches.
        scale: window side in patches.

    Returns:
        ``(scale * scale, n_windows) int64``: column ``j`` lists window ``j``'s patch indices (row-major within the
        window); windows are ordered row-major by their top-left patch, ``n_windows = (gh-s+1) * (gw-s+1)``.

    Raises:
        ValueError: ``scale`` is below 1 or larger than a side of the grid.
    """
    gh, gw = int(grid[0]), int(grid[1])
    if scale < 1 or scale > min(gh, gw):
        raise ValueError(f"window scale {scale} does not fit a {gh}x{gw} patch grid (1 <= scale <= {min(gh, gw)})")
    index = torch.arange(gh * gw, dtype=torch.float64).reshape(1, 1, gh, gw)
    return F.unfold(index, kernel_size=scale, stride=1)[0].round().long()


def coverage(masks: torch.Tensor, n_patches: int) -> torch.Tensor:
    """``(n_patches, n_windows) float32``: 1 where the window (column of ``masks``, see :func:`window_masks`) covers
    the patch, else 0."""
    cov = torch.zeros(n_patches, masks.shape[1], dtype=torch.float32)
    cov.scatter_(0, masks, 1.0)
    return cov


def harmonic_aggregation(window_scores: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
    """Each patch's score: the harmonic mean of the scores of the windows that cover it (paper eq. 3).

    Args:
        window_scores: ``(N, n_windows) float32``, positive.
        cover: ``(n_patches, n_windows)`` coverage matrix (:func:`coverage`).

    Returns:
        ``(N, n_patches) float32``; a patch no window covers gets 0 (anomalib's ``nan_to_num``).
    """
    inverse = 1.0 / window_scores.clamp_min(EPS)
    counts = cover.sum(1)
    sums = inverse @ cover.transpose(0, 1)
    return torch.where(counts > 0, counts / sums.clamp_min(EPS), torch.zeros_like(sums))


def class_scores(embeddings: torch.Tensor, text_embeddings: torch.Tensor, temperature: float) -> torch.Tensor:
    """Probability of the anomalous class (paper eq. 1; anomalib ``class_scores(..., target_class=1)``).

    Args:
        embeddings: ``(..., E)`` image or window embeddings.
        text_embeddings: ``(2, E)``: the normal and the anomalous prompt-ensemble embedding.
        temperature: softmax temperature (CLIP's 0.07).

    Returns:
        ``(...)`` float32 in (0, 1): softmax over the two cosine similarities divided by ``temperature``, anomalous.
    """
    cos = F.normalize(embeddings, dim=-1) @ F.normalize(text_embeddings, dim=-1).transpose(0, 1)
    return (cos / temperature).softmax(dim=-1)[..., 1]


def visual_association_score(embeddings: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Half the cosine distance to the nearest reference embedding (paper eq. 4, anomalib
    ``visual_association_score``).

    Args:
        embeddings: ``(N, n, E)`` patch or window embeddings of the scored images.
        reference: ``(K, n, E)`` the same of the ``K`` normal reference images (all ``K * n`` are compared).

    Returns:
        ``(N, n) float32`` in [0, 1]: ``min_r (1 - cos(x, r)) / 2``.
    """
    ref = F.normalize(reference.reshape(-1, reference.shape[-1]), dim=-1)
    cos = F.normalize(embeddings, dim=-1) @ ref.transpose(0, 1)
    return (1.0 - cos).amin(dim=-1) / 2.0
