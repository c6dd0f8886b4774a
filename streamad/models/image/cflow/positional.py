"""The 2-D sinusoidal positional encoding that conditions C-Flow's decoders (Gudovskiy, Ishizaka, Kozuka,
"CFLOW-AD: Real-Time Unsupervised Anomaly Detection with Localization via Conditional Normalizing Flows", WACV 2022,
section 3.3; anomalib ``positional_encoding_2d``), the 1-D encoding of Vaswani et al. applied to each axis.

For ``P`` channels (a multiple of 4) and ``Q = P / 2``, with frequencies ``f_k = 10000^(-2k / Q)``, ``k < Q / 2``:
channel ``2k`` is ``sin(x f_k)``, channel ``2k + 1`` is ``cos(x f_k)`` (``x``: the column, 0-based) and channels
``Q + 2k``, ``Q + 2k + 1`` the same of the row ``y``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["positional_encoding_2d"]


def positional_encoding_2d(channels: int, height: int, width: int) -> torch.Tensor:
    """The encoding of every position of a ``height x width`` grid (see the module doc).

    Args:
        channels: ``P``, a positive multiple of 4 (anomalib ``condition_vector``, 128).
        height, width: the feature map's size in positions.

    Returns:
        ``(P, height, width)`` float32, values in ``[-1, 1]``.

    Raises:
        ValueError: ``channels`` not a positive multiple of 4, or an empty grid.
    """
    if channels <= 0 or channels % 4 or height < 1 or width < 1:
        raise ValueError(f"positional_encoding_2d needs a positive multiple of 4 channels and a non-empty grid, got "
                         f"{channels} channels for {height}x{width}")
    half = channels // 2
    freqs = torch.exp(torch.arange(0, half, 2, dtype=torch.float64) * (-math.log(1e4) / half))  # (half / 2,)

    def axis(n: int) -> torch.Tensor:
        """``(half, n)``: sin / cos interleaved along the channels."""
        angles = freqs[:, None] * torch.arange(n, dtype=torch.float64)[None, :]
        return torch.stack([torch.sin(angles), torch.cos(angles)], 1).reshape(half, n)

    cols = axis(width)[:, None, :].expand(half, height, width)
    rows = axis(height)[:, :, None].expand(half, height, width)
    return torch.cat([cols, rows], 0).to(torch.float32).contiguous()
