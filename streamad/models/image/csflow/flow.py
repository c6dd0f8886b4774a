"""CS-Flow's cross-scale normalising flow (Rudolph, Wehrbein, Rosenhahn, Wandt, "Fully Convolutional
Cross-Scale-Flows for Image-based Defect Detection", WACV 2022, arXiv 2110.02855, sections 3.2-3.3; anomalib's
``CrossConvolutions``, ``ParallelPermute``, ``ParallelGlowCouplingLayer`` and ``CrossScaleFlow``).

The flow maps three feature maps ``x_k (N, C, h / 2^k, w / 2^k)`` float32 (scale 0 the largest) jointly to latents
``z_k`` of the same shapes and returns ``log |det J|`` ``(N,)``. It is a chain of :class:`CrossScaleCoupling`
blocks, each preceded by a fixed channel permutation (seeded per block, the same for the three scales' own
channel counts):

1. every scale's channels are split into ``x1`` (the first ``C // 2``) and ``x2`` (the rest);
2. :class:`CrossConvolutions` over the three ``x2`` give ``(s, t)`` per scale; ``x1' = x1 * exp(c(s)) + t``;
3. :class:`CrossConvolutions` over the three ``x1'`` give ``(s', t')``; ``x2' = x2 * exp(c(s')) + t'``;
4. ``z = concat(x1', x2')`` and ``log |det J| = sum c(s) + sum c(s')`` over every scale, channel and position,

where ``c(s) = alpha * 2 / pi * atan(s / alpha)`` is the paper's soft clamp (arctangent, ``alpha`` = ``clamp``,
anomalib 3; anomalib writes ``2 / pi`` as 0.636). Each scale's subnetwork sees the other scales: a hidden layer per
scale (conv ``k x k`` + leaky ReLU 0.1) is mapped back to ``2 * C_other`` channels by its own conv, plus the
bilinearly upsampled hidden layer of the next smaller scale and the stride-2 convolved hidden layer of the next larger
one (figure 4 of the paper), times a learned per-scale ``gamma`` that starts at 0, so every block starts as the
identity. The last block uses ``5 x 5`` kernels, the others ``3 x 3`` (anomalib).

Only ``torch`` ops with static shapes (``atan``, ``exp``, convolutions, ``interpolate`` to fixed sizes): the flow
traces and exports to ONNX / OpenVINO.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CrossConvolutions", "CrossScaleCoupling", "CrossScaleFlow", "soft_clamp", "SCALES"]

SCALES = 3


def soft_clamp(s: torch.Tensor, clamp: float) -> torch.Tensor:
    """The paper's soft clamp of log-scales: ``clamp * 2 / pi * atan(s / clamp)``, in ``(-clamp, clamp)``; the
    identity when ``clamp <= 0`` (anomalib's convention)."""
    if clamp <= 0:
        return s
    return (clamp * 2.0 / math.pi) * torch.atan(s / clamp)


class CrossConvolutions(nn.Module):
    """The subnetwork of a cross-scale coupling (paper figure 4, anomalib ``CrossConvolutions``): three
    ``(N, in_channels, h_k, w_k)`` maps -> three ``(N, out_channels, h_k, w_k)`` maps.

    Args:
        in_channels: channels of each input. out_channels: of each output (``2 x`` the transformed half).
        hidden: hidden channels per scale (anomalib ``cross_conv_hidden_channels``, 1024).
        kernel_size: odd convolution size (3, the last block 5). leaky_slope: of the leaky ReLU (0.1).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int, kernel_size: int,
                 leaky_slope: float = 0.1) -> None:
        super().__init__()
        pad = kernel_size // 2

        def conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=pad)

        self.inner = nn.ModuleList(conv(in_channels, hidden) for _ in range(SCALES))
        self.outer = nn.ModuleList(conv(hidden, out_channels) for _ in range(SCALES))
        self.up = nn.ModuleList(conv(hidden, out_channels) for _ in range(SCALES - 1))  # scale k+1 -> k
        self.down = nn.ModuleList(conv(hidden, out_channels, 2) for _ in range(SCALES - 1))  # scale k -> k+1
        self.gamma = nn.Parameter(torch.zeros(SCALES))
        self.slope = float(leaky_slope)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Three ``(N, in_channels, h_k, w_k)`` float32 maps (scale 0 the largest; ``h_{k+1} = ceil(h_k / 2)``) ->
        three ``(N, out_channels, h_k, w_k)`` float32 maps."""
        hid = [F.leaky_relu(conv(x), self.slope) for conv, x in zip(self.inner, xs)]
        outs = []
        for k in range(SCALES):
            out = self.outer[k](hid[k])
            if k + 1 < SCALES:  # the smaller scale, upsampled to this one
                up = F.interpolate(hid[k + 1], size=tuple(hid[k].shape[-2:]), mode="bilinear", align_corners=False)
                out = out + self.up[k](up)
            if k > 0:  # the larger scale, strided down to this one
                out = out + self.down[k - 1](hid[k - 1])
            outs.append(out * self.gamma[k])
        return outs


class CrossScaleCoupling(nn.Module):
    """One permutation + affine coupling over the three scales (see the module doc).

    Args:
        channels: ``C`` of every scale, at least 2. hidden: subnet hidden channels. kernel_size: odd subnet kernel.
        clamp: the soft clamp ``alpha``. seed: seeds the channel permutation.

    Raises:
        ValueError: fewer than 2 channels or an even kernel size.
    """

    def __init__(self, channels: int, hidden: int, kernel_size: int, clamp: float, seed: int) -> None:
        super().__init__()
        if channels < 2 or kernel_size % 2 == 0:
            raise ValueError(f"CrossScaleCoupling: need >= 2 channels and an odd kernel, got {channels}, "
                             f"{kernel_size}")
        self.half1 = channels // 2
        self.half2 = channels - self.half1
        self.clamp = float(clamp)
        perm = np.random.default_rng(seed).permutation(channels)
        self.register_buffer("permutation", torch.from_numpy(perm).to(torch.int64))
        self.sub1 = CrossConvolutions(self.half2, 2 * self.half1, hidden, kernel_size)  # x2 -> (s, t) of x1
        self.sub2 = CrossConvolutions(self.half1, 2 * self.half2, hidden, kernel_size)  # x1' -> (s', t') of x2

    @staticmethod
    def _affine(xs: list[torch.Tensor], params: list[torch.Tensor], n: int,
                clamp: float) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``x * exp(c(s)) + t`` per scale with ``(s, t)`` the first / last ``n`` channels of ``params``; the summed
        log-scales ``(N,)``."""
        out, log_det = [], None
        for x, p in zip(xs, params):
            s = soft_clamp(p[:, :n], clamp)
            out.append(x * torch.exp(s) + p[:, n:])
            ld = s.sum((1, 2, 3))
            log_det = ld if log_det is None else log_det + ld
        assert log_det is not None
        return out, log_det

    def forward(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Three ``(N, C, h_k, w_k)`` maps -> (three latents of the same shapes, ``log |det J|`` ``(N,)``)."""
        xs = [torch.index_select(x, 1, self.permutation) for x in xs]
        x1 = [x[:, : self.half1] for x in xs]
        x2 = [x[:, self.half1:] for x in xs]
        y1, ld1 = self._affine(x1, self.sub1(x2), self.half1, self.clamp)
        y2, ld2 = self._affine(x2, self.sub2(y1), self.half2, self.clamp)
        return [torch.cat([a, b], 1) for a, b in zip(y1, y2)], ld1 + ld2

    def inverse(self, zs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The exact inverse of :meth:`forward` (tests; the anomaly detector never samples)."""
        y1 = [z[:, : self.half1] for z in zs]
        y2 = [z[:, self.half1:] for z in zs]
        x2 = []
        for y, p in zip(y2, self.sub2(y1)):
            x2.append((y - p[:, self.half2:]) * torch.exp(-soft_clamp(p[:, : self.half2], self.clamp)))
        x1 = []
        for y, p in zip(y1, self.sub1(x2)):
            x1.append((y - p[:, self.half1:]) * torch.exp(-soft_clamp(p[:, : self.half1], self.clamp)))
        inv = torch.argsort(self.permutation)
        return [torch.index_select(torch.cat([a, b], 1), 1, inv) for a, b in zip(x1, x2)]


class CrossScaleFlow(nn.Module):
    """``blocks`` :class:`CrossScaleCoupling` blocks: three feature maps -> (three latents, ``log |det J|`` ``(N,)``).

    Args:
        channels: ``C`` of the feature maps. blocks: coupling blocks (anomalib ``n_coupling_blocks``, 4).
        hidden: subnet hidden channels (anomalib ``cross_conv_hidden_channels``, 1024). clamp: soft clamp (3).
        seed: block ``i``'s permutation is seeded with ``seed + i`` (anomalib: ``i``).
    """

    def __init__(self, channels: int, blocks: int, hidden: int, clamp: float, seed: int = 0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            CrossScaleCoupling(channels, hidden, 5 if i == blocks - 1 else 3, clamp, seed + i) for i in range(blocks))

    def forward(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Three ``(N, C, h_k, w_k)`` float32 feature maps -> (three latents of the same shapes, ``log |det J|``
        ``(N,)`` float32, summed over the blocks)."""
        log_det = torch.zeros(xs[0].shape[0], dtype=xs[0].dtype, device=xs[0].device)
        for block in self.blocks:
            xs, ld = block(xs)
            log_det = log_det + ld
        return xs, log_det

    def inverse(self, zs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The exact inverse of :meth:`forward`."""
        for block in reversed(self.blocks):
            zs = block.inverse(zs)
        return zs
