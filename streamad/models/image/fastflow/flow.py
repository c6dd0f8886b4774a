"""FastFlow's 2-D normalising flow: a stack of affine coupling steps in the form of FrEIA's ``AllInOneBlock`` as
anomalib configures it (``affine_clamping=2.0``, ``permute_soft=False``, ``global_affine_type='SOFTPLUS'``,
``global_affine_init=1.0``, no GIN, no Householder reflections, no reversed pre-permutation).

One :class:`CouplingStep` maps ``x (N, C, h, w)`` to ``y`` and ``log |det J|`` ``(N,)``:

1. split the channels: ``x1`` (the first ``C - C // 2``) and ``x2`` (the last ``C // 2``);
2. the subnet (conv ``k x k`` -> ReLU -> conv ``k x k``, ``int(len(x1) * hidden_ratio)`` hidden channels, "same"
   zero padding) maps ``x1`` to ``a``, scaled by 0.1; ``s = clamp * tanh(a[:C // 2])`` (soft clamp),
   ``x2' = x2 * exp(s) + a[C // 2:]``; ``log |det| = sum(s)``;
3. global affine ("ActNorm"): ``y = concat(x1, x2') * g + b`` with ``g = 0.1 * softplus_beta=0.5(s_global)``
   (``s_global`` starts where ``g = 1``), ``log |det| += h * w * sum(log g)``;
4. a fixed channel permutation (seeded; FrEIA multiplies by a permutation matrix, the same as picking channels).

A conditional step (``condition_channels > 0``, FrEIA's ``AllInOneBlock`` with ``cond_shape``, as C-Flow's decoders)
feeds ``concat(x1, c)`` to the subnet, ``c (N, condition_channels, h, w)`` a fixed side input such as a positional
encoding; the hidden width is then ``int((len(x1) + condition_channels) * hidden_ratio)``.

A :class:`FlowBlock` chains ``flow_steps`` of them; anomalib alternates 3x3 and 1x1 subnets (odd steps 1x1) unless
``conv3x3_only``. Only ``torch`` ops with static shapes: the flow traces and exports to ONNX / OpenVINO.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CouplingStep", "FlowBlock"]

_SCALE_INIT = 2.0 * math.log(math.exp(0.5 * 10.0 * 1.0) - 1.0)  # softplus_0.5(x) * 0.1 = 1 (global_affine_init 1)


class CouplingStep(nn.Module):
    """One affine coupling step (see the module doc).

    Args:
        channels: ``C``, at least 2. kernel_size: the subnet's odd convolution size (1 or 3).
        hidden_ratio: subnet hidden channels per input channel. clamp: the soft clamp ``alpha`` (2.0).
        permutation: ``(C,) int64`` output channel order. condition_channels: channels of the side input ``c``
            given to :meth:`forward` (0: unconditional).

    Raises:
        ValueError: fewer than 2 channels, an even kernel size or a permutation of the wrong length.
    """

    def __init__(self, channels: int, kernel_size: int, hidden_ratio: float, clamp: float,
                 permutation: torch.Tensor, condition_channels: int = 0) -> None:
        super().__init__()
        if channels < 2 or kernel_size % 2 == 0 or permutation.shape != (channels,):
            raise ValueError(f"CouplingStep: need >= 2 channels, an odd kernel and a permutation of {channels}, "
                             f"got {channels}, {kernel_size}, {tuple(permutation.shape)}")
        self.split = channels - channels // 2
        self.half = channels // 2
        self.clamp = float(clamp)
        subnet_in = self.split + int(condition_channels)
        hidden = int(subnet_in * hidden_ratio)
        pad = kernel_size // 2
        self.subnet = nn.Sequential(nn.Conv2d(subnet_in, hidden, kernel_size, padding=pad), nn.ReLU(),
                                    nn.Conv2d(hidden, 2 * self.half, kernel_size, padding=pad))
        self.global_scale = nn.Parameter(torch.full((1, channels, 1, 1), _SCALE_INIT))
        self.global_offset = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("permutation", permutation.to(torch.int64).clone())

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (N, C, h, w)`` float32 (and ``cond (N, condition_channels, h, w)`` for a conditional step) ->
        (``y`` of ``x``'s shape, ``log |det J|`` ``(N,)`` summed over the positions)."""
        x1, x2 = x[:, : self.split], x[:, self.split:]
        a = 0.1 * self.subnet(x1 if cond is None else torch.cat([x1, cond], 1))
        s = self.clamp * torch.tanh(a[:, : self.half])
        x2 = x2 * torch.exp(s) + a[:, self.half:]
        log_det = s.sum((1, 2, 3))
        # 0.1 * softplus with beta 0.5, written out: OpenVINO's conversion of softplus' beta differs from torch
        g = 0.2 * F.softplus(0.5 * self.global_scale)
        y = torch.cat([x1, x2], 1) * g + self.global_offset
        log_det = log_det + (x.shape[2] * x.shape[3]) * torch.log(g).sum()
        return torch.index_select(y, 1, self.permutation), log_det


class FlowBlock(nn.Module):
    """``flow_steps`` coupling steps over a ``(N, C, h, w)`` feature map: ``x -> (z, log |det J| (N,))``.

    Args:
        channels: ``C``. flow_steps: number of steps (anomalib 8). conv3x3_only: every subnet 3x3 (else odd
            steps use 1x1). hidden_ratio: subnet width ratio (1.0). clamp: soft clamp (2.0).
        seed: seeds the steps' channel permutations. condition_channels: side-input channels of every step (0).
        kernel_size: when given, every subnet's kernel (C-Flow's fully connected subnets on fibres: 1), overriding
            the 3x3 / 1x1 alternation.
    """

    def __init__(self, channels: int, flow_steps: int, conv3x3_only: bool, hidden_ratio: float,
                 clamp: float = 2.0, seed: int = 0, condition_channels: int = 0,
                 kernel_size: int | None = None) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)

        def kernel(i: int) -> int:
            if kernel_size is not None:
                return kernel_size
            return 1 if (i % 2 == 1 and not conv3x3_only) else 3

        self.steps = nn.ModuleList(
            CouplingStep(channels, kernel(i), hidden_ratio, clamp,
                         torch.from_numpy(rng.permutation(channels).astype(np.int64)), condition_channels)
            for i in range(flow_steps))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (N, C, h, w)`` float32 (and the side input ``cond`` of a conditional flow) -> (``z``, ``(N,)``)."""
        log_det = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for step in self.steps:
            x, ld = step(x, cond)
            log_det = log_det + ld
        return x, log_det
