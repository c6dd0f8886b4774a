"""DRAEM's two sub-networks (paper section 3.1, figure 3; anomalib ``draem.torch_model``:
``ReconstructiveSubNetwork``, ``DiscriminativeSubNetwork`` and their encoders / decoders), trained from scratch.

Every block is 3x3 convolutions with BatchNorm and ReLU; ``w`` is the base width (anomalib: 128 for the
reconstructive, 64 for the discriminative network; configurable here so that CPU training fits a budget).

* :class:`ReconstructiveSubNetwork` ``(N, 3, H, W) -> (N, 3, H, W)``: an encoder of 5 double-convolution blocks
  (``w, 2w, 4w, 8w, 8w`` channels) with 2x2 max pooling between them (stride 16; the fifth block is
  :class:`~streamad.models.image.draem.sspcab.Sspcab` when enabled), and a decoder without skip connections: 4 times
  bilinear 2x upsampling (``align_corners=True``) + convolution, a double-convolution block, then a 3x3 convolution
  to 3 channels, no output activation.
* :class:`DiscriminativeSubNetwork` ``(N, 6, H, W) -> (N, 2, H, W)`` logits (``in_channels`` other than 6: DSR's
  anomaly detection and upsampling modules, the same U-Net as anomalib's ``UnetModel``): a U-Net, encoder of 6 blocks
  (``w, 2w, 4w, 8w, 8w, 8w``, stride 32) whose first five outputs are concatenated to the decoder's upsampled maps.

``H`` and ``W`` must be multiples of 32.
"""

from __future__ import annotations

import torch
from torch import nn

from streamad.models.image.draem.sspcab import Sspcab

__all__ = ["ReconstructiveSubNetwork", "DiscriminativeSubNetwork", "conv_bn_relu", "double_conv", "up_conv",
           "check_unet_size"]

UNET_STRIDE = 32
"""The discriminative U-Net pools 5 times: input sides must be multiples of this."""


def check_unet_size(kind: str, input_size: tuple[int, int]) -> None:
    """For a model config whose network holds :class:`DiscriminativeSubNetwork` (DRAEM, DSR).

    Raises:
        ValueError: an ``input_size`` side not a multiple of 32 (the message names ``kind``).
    """
    h, w = input_size
    if h % UNET_STRIDE or w % UNET_STRIDE:
        raise ValueError(f"{kind}: input_size sides must be multiples of {UNET_STRIDE} (e.g. [128, 128] or "
                         f"[256, 256]), got {list(input_size)}")


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    """3x3 convolution (padding 1) + BatchNorm + ReLU."""
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def double_conv(c_in: int, c_mid: int, c_out: int | None = None) -> nn.Sequential:
    """Two :func:`conv_bn_relu`: ``c_in -> c_mid -> c_out`` (``c_out`` defaults to ``c_mid``)."""
    return nn.Sequential(*conv_bn_relu(c_in, c_mid), *conv_bn_relu(c_mid, c_mid if c_out is None else c_out))


def up_conv(c_in: int, c_out: int) -> nn.Sequential:
    """Bilinear 2x upsampling (``align_corners=True``, anomalib) + :func:`conv_bn_relu`."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), *conv_bn_relu(c_in, c_out))


class ReconstructiveSubNetwork(nn.Module):
    """``x (N, 3, H, W) float32 0-1 -> reconstruction (N, 3, H, W)`` (see the module doc).

    Args:
        width: base width ``w`` (anomalib 128). sspcab: the fifth encoder block is an SSPCAB block.

    Attributes:
        sspcab_io: after a forward pass with ``sspcab``, the SSPCAB block's ``(input, output)`` (anomalib reads them
            with forward hooks for the SSPCAB loss); ``None`` otherwise.
    """

    def __init__(self, width: int, sspcab: bool = False) -> None:
        super().__init__()
        w = int(width)
        chans = [3, w, 2 * w, 4 * w, 8 * w]
        self.blocks = nn.ModuleList(double_conv(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.pool = nn.MaxPool2d(2)
        self.bottom = Sspcab(8 * w) if sspcab else double_conv(8 * w, 8 * w)
        self.sspcab = bool(sspcab)
        self.ups = nn.ModuleList(up_conv(c, c) for c in (8 * w, 4 * w, 2 * w, w))
        self.decode = nn.ModuleList(double_conv(c, c, c_out) for c, c_out in
                                    ((8 * w, 4 * w), (4 * w, 2 * w), (2 * w, w), (w, w)))
        self.out = nn.Conv2d(w, 3, 3, padding=1)
        self.sspcab_io: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))
        x_in = self.pool(x)
        x = self.bottom(x_in)
        self.sspcab_io = (x_in, x) if self.sspcab else None
        for up, dec in zip(self.ups, self.decode):
            x = dec(up(x))
        return self.out(x)


class DiscriminativeSubNetwork(nn.Module):
    """``(N, 6, H, W)`` (the image and its reconstruction, 0-1) ``-> (N, 2, H, W)`` logits, class 1 = anomalous
    (see the module doc).

    Args:
        width: base width ``w`` (anomalib 64). in_channels: input channels (6: DRAEM's image and reconstruction).
    """

    def __init__(self, width: int, in_channels: int = 6) -> None:
        super().__init__()
        w = int(width)
        chans = [int(in_channels), w, 2 * w, 4 * w, 8 * w, 8 * w, 8 * w]
        self.blocks = nn.ModuleList(double_conv(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.pool = nn.MaxPool2d(2)
        # decoder level k: upsample from deep channels, concatenate the encoder's skip, double convolution
        levels = [(8 * w, 8 * w, 8 * w), (8 * w, 4 * w, 8 * w), (4 * w, 2 * w, 4 * w), (2 * w, w, 2 * w),
                  (w, w, w)]  # (from, to, skip channels)
        self.ups = nn.ModuleList(up_conv(a, b) for a, b, _ in levels)
        self.decode = nn.ModuleList(double_conv(b + s, b) for _, b, s in levels)
        self.out = nn.Conv2d(w, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        for up, dec, skip in zip(self.ups, self.decode, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], 1))
        return self.out(x)
