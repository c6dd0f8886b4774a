"""DSR's vector quantiser (paper section 3.1; anomalib ``dsr.torch_model.VectorQuantizer``; van den Oord et al.,
"Neural discrete representation learning", NeurIPS 2017): each feature vector is replaced by its nearest codebook
vector (squared Euclidean distance).

Here it is also trained (phase 1, see :mod:`~streamad.models.image.dsr.discrete`); anomalib only loads a codebook
trained on ImageNet. Training follows the exponential-moving-average VQ-VAE (van den Oord et al., appendix; the DSR
authors train their discrete model with it): in training mode each forward pass moves every code towards the mean
of the vectors assigned to it (``decay`` 0.99, Laplace-smoothed counts), the loss is only the commitment term
``0.25 * ||z - sg[e]||^2``, and the gradient passes straight through to ``z``. Training from scratch on a few hundred
images, codes whose smoothed count falls below ``DEAD_COUNT`` are restarted at random vectors of the batch
(Dhariwal et al., Jukebox, 2020), and the codebook starts from vectors of the first batch (:meth:`VectorQuantizer.
init_from`): otherwise a handful of codes takes every vector. The argmin and the codebook lookup export to ONNX /
OpenVINO as ``ArgMin`` and ``Gather``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VectorQuantizer", "COMMITMENT", "DECAY", "DEAD_COUNT"]

COMMITMENT = 0.25
"""Weight of the commitment term (VQ-VAE, DSR's discrete model)."""
DECAY = 0.99
"""Moving-average decay of the code counts and sums."""
DEAD_COUNT = 0.1
"""A code whose smoothed count (vectors per step) falls below this is restarted."""
_EPS = 1e-5


def _draw(flat: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """``k`` rows of ``flat`` at random (without replacement when there are enough)."""
    n = flat.shape[0]
    pick = torch.randperm(n, generator=g)[:k] if n >= k else torch.randint(0, n, (k,), generator=g)
    return flat[pick]


class VectorQuantizer(nn.Module):
    """``z (N, C, h, w) float32 -> quantised (N, C, h, w)``: the nearest of ``num_embeddings`` codes, with the
    straight-through gradient to ``z`` when ``z`` requires a gradient (phase 1, and the subspace restriction
    modules of phase 2, whose quantiser is frozen), not while an export traces it.

    Args:
        num_embeddings: codebook size ``K`` (anomalib 4096). embedding_dim: ``C`` (anomalib 128).

    Attributes:
        codebook: ``nn.Embedding(K, C)``, initialised uniform in ``+-1/K`` (anomalib).
        ema_count / ema_sum: ``(K,)`` / ``(K, C)`` moving averages of the code counts and vector sums (buffers).
        loss: after a forward pass in training mode, the 0-d commitment loss, else ``None``.
        generator: draws the restarted codes (seeded by :meth:`init_from`).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        k = int(num_embeddings)
        self.codebook = nn.Embedding(k, int(embedding_dim))
        nn.init.uniform_(self.codebook.weight, -1.0 / k, 1.0 / k)
        self.codebook.weight.requires_grad_(False)  # moved by the moving averages, not by the optimiser
        self.register_buffer("ema_count", torch.ones(k))
        self.register_buffer("ema_sum", self.codebook.weight.detach().clone())
        self.loss: torch.Tensor | None = None
        self.generator = torch.Generator().manual_seed(0)

    def init_from(self, z: torch.Tensor, g: torch.Generator) -> None:
        """Set the codebook to ``K`` feature vectors of ``z (N, C, h, w)`` drawn from ``g`` (module doc); later
        restarts draw from ``g`` too."""
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        self.generator = g
        with torch.no_grad():
            self.codebook.weight.copy_(_draw(flat, self.codebook.weight.shape[0], g))
            self.ema_sum.copy_(self.codebook.weight)
            self.ema_count.fill_(1.0)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """``z (N, C, h, w) -> (N, h, w) int64``: the index of each vector's nearest code."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        e = self.codebook.weight
        # |x - e|^2 without the |x|^2 term, which is the same for every code: the same argmin, and no large common
        # term whose rounding (about eps |x|^2) could outweigh the gap between two near codes, so torch and an
        # exported graph (other summation orders) agree on the nearest code
        dist = (e * e).sum(1)[None] - 2.0 * flat @ e.t()
        return dist.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx (N, h, w) int64 -> (N, C, h, w)`` codebook vectors."""
        return self.codebook(idx).permute(0, 3, 1, 2)

    @torch.no_grad()
    def _update(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        onehot = F.one_hot(idx.reshape(-1), self.codebook.weight.shape[0]).to(flat.dtype)
        self.ema_count.mul_(DECAY).add_(onehot.sum(0), alpha=1 - DECAY)
        self.ema_sum.mul_(DECAY).add_(onehot.t() @ flat, alpha=1 - DECAY)
        total = self.ema_count.sum()
        count = (self.ema_count + _EPS) / (total + self.ema_count.numel() * _EPS) * total
        self.codebook.weight.copy_(self.ema_sum / count[:, None])
        dead = self.ema_count < DEAD_COUNT
        if bool(dead.any()):
            fresh = _draw(flat, int(dead.sum()), self.generator)
            self.codebook.weight[dead] = fresh
            self.ema_sum[dead] = fresh
            self.ema_count[dead] = 1.0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        idx = self.indices(z)
        q = self.lookup(idx)
        if self.training:
            self.loss = COMMITMENT * F.mse_loss(z, q.detach())
            self._update(z, idx)
        else:
            self.loss = None
        return z + (q - z).detach() if z.requires_grad and not torch.jit.is_tracing() else q
