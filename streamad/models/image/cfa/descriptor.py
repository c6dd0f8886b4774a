"""CFA's patch descriptor: the frozen backbone's layers made locally aware, brought to one grid and projected by a
trainable CoordConv 1x1 convolution into the "target-oriented" feature space where the memory bank lives (CFA paper
section III-B; anomalib ``cfa.torch_model.Descriptor`` and ``CoordConv2d``).

* Every layer is averaged over its 3x3 neighbourhood (stride 1, zero padding counted, as ``F.avg_pool2d(x, 3, 1, 1)``)
  and bilinearly resized to the largest layer's grid; the layers are concatenated along the channels.
  (anomalib pools only the first layer and resizes the deeper ones unpooled; here every layer is pooled, as the
  paper's locally aware patch features are.)
* CoordConv (Liu et al., "An intriguing failing of convolutional neural networks and the CoordConv solution",
  NeurIPS 2018): two channels holding the column and row coordinates, each from -1 to 1 across the grid, are appended
  before the 1x1 convolution, so the descriptor may tell positions apart.

Built from ``torch.nn.functional`` ops that ONNX and OpenVINO export; the coordinate channels are a buffer of the
grid size (fixed by the model's input size), not computed from the traced shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CoordConv1x1", "Descriptor", "coordinate_channels", "pooled_patch_features"]


def coordinate_channels(h: int, w: int) -> torch.Tensor:
    """``(1, 2, h, w) float32``: channel 0 the column coordinate, channel 1 the row coordinate, each running linearly
    from -1 (first column / row) to 1 (last); a single column or row is 0 (CoordConv's ``AddCoords``)."""
    xs = torch.linspace(-1.0, 1.0, w) if w > 1 else torch.zeros(1)
    ys = torch.linspace(-1.0, 1.0, h) if h > 1 else torch.zeros(1)
    return torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)]).unsqueeze(0).float()


def pooled_patch_features(features: list[torch.Tensor]) -> torch.Tensor:
    """Per-layer ``(N, C_l, h_l, w_l)`` float32 -> ``(N, sum C_l, h, w)``: each layer 3x3-averaged (stride 1), resized
    bilinearly (``align_corners=False``) to the largest ``(h, w)`` and concatenated in the given order.

    Raises:
        ValueError: no layer.
    """
    if not features:
        raise ValueError("pooled_patch_features: no layer")
    h, w = max((tuple(f.shape[-2:]) for f in features), key=lambda s: s[0] * s[1])
    out = []
    for f in features:
        p = F.avg_pool2d(f, 3, 1, 1)
        if tuple(p.shape[-2:]) != (h, w):
            p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
        out.append(p)
    return torch.cat(out, 1)


class CoordConv1x1(nn.Module):
    """``(N, C_in, h, w) -> (N, C_out, h, w)``: a 1x1 convolution (with bias) over the input and the two
    :func:`coordinate_channels` of the ``(h, w)`` grid.

    Args:
        in_channels, out_channels: channels without the coordinates. grid: ``(h, w)`` of the inputs it will see.
    """

    def __init__(self, in_channels: int, out_channels: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels + 2, out_channels, 1)
        self.register_buffer("coords", coordinate_channels(*grid), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coords = self.coords.expand(x.shape[0], -1, -1, -1)
        return self.conv(torch.cat([x, coords], 1))


class Descriptor(nn.Module):
    """The trainable patch descriptor: ``per-layer features -> (N, D, h, w) float32`` target-oriented features,
    :func:`pooled_patch_features` then :class:`CoordConv1x1`.

    Args:
        in_channels: the concatenated channels (sum over layers). gamma_d: the paper's channel reduction,
            ``D = in_channels // gamma_d``. grid: ``(h, w)`` of the largest layer.

    Raises:
        ValueError: ``gamma_d`` leaves no channel.
    """

    def __init__(self, in_channels: int, gamma_d: int, grid: tuple[int, int]) -> None:
        super().__init__()
        out = int(in_channels) // int(gamma_d)
        if out < 1:
            raise ValueError(f"cfa: gamma_d {gamma_d} leaves no descriptor channel of {in_channels}")
        self.out_channels = out
        self.layer = CoordConv1x1(in_channels, out, grid)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.layer(pooled_patch_features(features))
