"""C-Flow's per-layer decoder and its likelihood (Gudovskiy, Ishizaka, Kozuka, "CFLOW-AD", WACV 2022, sections
3.3-3.4; anomalib ``cflow_head``, ``get_logp``): a conditional normalising flow over feature *fibres*, the
``C``-vector of one position of a feature map, conditioned on that position's 2-D positional encoding.

The flow is a :class:`~streamad.models.image.fastflow.flow.FlowBlock` of ``coupling_blocks`` conditional affine
coupling steps (FrEIA's ``AllInOneBlock`` as anomalib builds it: soft clamp ``clamp_alpha``, softplus global affine,
hard permutations) whose subnets are fully connected, ``(len(x1) + P) -> 2 (len(x1) + P) -> ReLU -> 2 len(x2)``
(anomalib ``subnet_fc``), written as 1x1 convolutions on fibres shaped ``(M, C, 1, 1)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from streamad.models.image.fastflow.flow import FlowBlock

__all__ = ["conditional_decoder", "fibres", "fibre_conditions", "fibre_log_likelihood", "LOG_NORMAL_CONST"]

LOG_NORMAL_CONST = -0.5 * math.log(2.0 * math.pi)  # log density of N(0, 1) at 0, per dimension


def conditional_decoder(channels: int, condition_channels: int, coupling_blocks: int, clamp_alpha: float,
                        seed: int) -> FlowBlock:
    """One layer's decoder: ``coupling_blocks`` conditional coupling steps over ``channels``-dimensional fibres
    with fully connected subnets (hidden width twice their input), seeded permutations."""
    return FlowBlock(channels, coupling_blocks, False, 2.0, clamp_alpha, seed=seed,
                     condition_channels=condition_channels, kernel_size=1)


def fibres(features: torch.Tensor) -> torch.Tensor:
    """``(N, C, h, w) -> (N h w, C, 1, 1)``: one row per position, image-major then row-major."""
    n, c, h, w = features.shape
    return features.permute(0, 2, 3, 1).reshape(n * h * w, c, 1, 1)


def fibre_conditions(encoding: torch.Tensor, images: int) -> torch.Tensor:
    """The positional encoding ``(P, h, w)`` repeated for ``images`` images: ``(images h w, P, 1, 1)``, in the
    order of :func:`fibres`."""
    p, h, w = encoding.shape
    per_image = encoding.permute(1, 2, 0).reshape(1, h * w, p)
    return per_image.expand(images, h * w, p).reshape(images * h * w, p, 1, 1)


def fibre_log_likelihood(decoder: nn.Module, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """Log-likelihood per dimension of fibres under the decoder (anomalib ``get_logp`` divided by ``C``):
    ``(C log N(0; 0, 1) - 0.5 |z|^2 + log |det J|) / C``.

    Args:
        decoder: a :func:`conditional_decoder`. x: fibres ``(M, C, 1, 1)`` float32. cond: ``(M, P, 1, 1)``.

    Returns:
        ``(M,)`` float32, nats per feature dimension (at most ``log N(0; 0, 1) + log |det J| / C``).
    """
    z, log_det = decoder(x, cond)
    c = x.shape[1]
    return (c * LOG_NORMAL_CONST - 0.5 * (z * z).sum((1, 2, 3)) + log_det) / c
