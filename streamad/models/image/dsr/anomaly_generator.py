"""DSR's anomalies in the quantised feature space (paper section 3.3; anomalib ``DsrAnomalyGenerator`` and
``DiscreteLatentModel.generate_fake_anomalies_joined``), phase 2 only.

* Masks: with probability ``p_anomalous`` (0.5) an image gets a Perlin mask
  (:func:`~streamad.models.components.perlin.perlin_mask`, DRAEM's) drawn at the bottom features' resolution
  ``(H/4, W/4)``; the top level's mask is its 2x2 max pooling, the image-level target its nearest 4x upsampling.
* Replacement (:func:`replace_codes`): under the mask, each quantised vector becomes a code drawn uniformly among
  its ``k`` nearest codebook vectors other than itself, ``k = strength * num_embeddings`` (at least 1), with
  ``strength`` uniform in ``[latent_anomaly_strength, 1]`` per image and level (anomalib 0.2): near-in-distribution
  anomalies with no external data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamad.models.components.perlin import perlin_mask

__all__ = ["replace_codes", "DsrAnomalyGenerator"]


def replace_codes(q: torch.Tensor, codebook: torch.Tensor, mask: torch.Tensor, strength: torch.Tensor,
                  g: torch.Generator) -> torch.Tensor:
    """Quantised features with the masked vectors replaced (module doc).

    Args:
        q: ``(N, C, h, w) float32`` quantised features. codebook: ``(K, C)``. mask: ``(N, 1, h, w)`` 0 / 1.
        strength: ``(N,)`` in 0-1, the share of the codebook to draw from. g: the random generator.

    Returns:
        ``(N, C, h, w) float32``, equal to ``q`` where ``mask`` is 0.
    """
    n, c, h, w = q.shape
    k_total = codebook.shape[0]
    out = q.clone()
    for i in range(n):
        if not bool(mask[i].any()):
            continue
        flat = q[i].permute(1, 2, 0).reshape(-1, c)
        k = max(1, min(int(float(strength[i]) * k_total), k_total - 1))
        nearest = torch.cdist(flat, codebook).topk(k + 1, dim=1, largest=False).indices[:, 1:]  # not itself
        pick = torch.randint(0, k, (flat.shape[0], 1), generator=g)
        codes = codebook[nearest.gather(1, pick)[:, 0]].view(h, w, c).permute(2, 0, 1)
        out[i] = q[i] * (1 - mask[i]) + codes * mask[i]
    return out


class DsrAnomalyGenerator:
    """Masks and strengths for phase 2 (module doc).

    Args:
        feature_size: ``(H/4, W/4)``, the bottom level's resolution. seed: seeds every draw.
        p_anomalous: probability that an image gets an anomaly (anomalib 0.5).
        strength: ``latent_anomaly_strength`` (anomalib 0.2).

    ``masks(n) -> (lo (n, 1, H/4, W/4), hi (n, 1, H/8, W/8), image (n, 1, H, W))`` float32 0 / 1;
    ``strengths(n) -> (n,)`` float32 in ``[strength, 1]``.
    """

    def __init__(self, feature_size: tuple[int, int], seed: int, p_anomalous: float = 0.5,
                 strength: float = 0.2) -> None:
        self.size = (int(feature_size[0]), int(feature_size[1]))
        self.p_anomalous, self.strength = float(p_anomalous), float(strength)
        self.generator = torch.Generator().manual_seed(int(seed))

    def masks(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lo = torch.zeros(n, 1, *self.size)
        for i in range(n):
            if float(torch.rand((), generator=self.generator)) < self.p_anomalous:
                lo[i, 0], _ = perlin_mask(self.size, self.generator)
        return lo, F.max_pool2d(lo, 2), F.interpolate(lo, scale_factor=4.0, mode="nearest")

    def strengths(self, n: int) -> torch.Tensor:
        return self.strength + (1.0 - self.strength) * torch.rand(n, generator=self.generator)
