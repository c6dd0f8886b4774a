"""DSR's vector quantiser (paper section 3.1; anomalib ``dsr.torch_model.VectorQuantizer``; van den Oord et al.,
"Neural discrete representation learning", NeurIPS 2017): each feature vector is replaced by its nearest codebook
vector (squared Euclidean distance).

Here it is also trained (phase 1, see :mod:`~streamad.models.image.dsr.discrete`), with the VQ-VAE loss
``||sg[z] - e||^2 + commitment * ||z - sg[e]||^2`` and the straight-through gradient; anomalib only loads a
codebook trained on ImageNet. The argmin and the codebook lookup export to ONNX / OpenVINO as ``ArgMin`` and
``Gather``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VectorQuantizer", "COMMITMENT"]

COMMITMENT = 0.25
"""Weight of the commitment term (VQ-VAE, DSR's discrete model)."""


class VectorQuantizer(nn.Module):
    """``z (N, C, h, w) float32 -> quantised (N, C, h, w)`` (the nearest of ``num_embeddings`` codes, straight-through
    gradient to ``z``).

    Args:
        num_embeddings: codebook size ``K`` (anomalib 4096). embedding_dim: ``C`` (anomalib 128).

    Attributes:
        codebook: ``nn.Embedding(K, C)``, initialised uniform in ``+-1/K`` (anomalib).
        loss: after a forward pass in training mode, the 0-d VQ loss (codebook + commitment), else ``None``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.codebook = nn.Embedding(int(num_embeddings), int(embedding_dim))
        k = float(num_embeddings)
        nn.init.uniform_(self.codebook.weight, -1.0 / k, 1.0 / k)
        self.loss: torch.Tensor | None = None

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """``z (N, C, h, w) -> (N, h, w) int64``: the index of each vector's nearest code."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        e = self.codebook.weight
        dist = (flat * flat).sum(1, keepdim=True) + (e * e).sum(1)[None] - 2.0 * flat @ e.t()
        return dist.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx (N, h, w) int64 -> (N, C, h, w)`` codebook vectors."""
        return self.codebook(idx).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        q = self.lookup(self.indices(z))
        self.loss = F.mse_loss(q, z.detach()) + COMMITMENT * F.mse_loss(z, q.detach()) if self.training else None
        return z + (q - z).detach() if z.requires_grad and not torch.jit.is_tracing() else q
