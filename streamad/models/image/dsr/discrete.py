"""DSR's discrete latent model (paper section 3.1, figure 2; anomalib ``dsr.torch_model.DiscreteLatentModel``,
``EncoderBot``, ``EncoderTop``, ``DecoderBot``, ``Residual``, ``ResidualStack``): a two-level VQ-VAE
(VQ-VAE-2, Razavi et al. 2019) whose general object decoder reconstructs the image from both quantised levels.

* ``encode_bot``: ``(N, 3, H, W) 0-1 -> (N, nh, H/4, W/4)``: two 4x4 stride-2 convolutions (ReLU), a 3x3 one and a
  residual stack. ``encode_top``: ``-> (N, nh, H/8, W/8)``: a 4x4 stride-2 and a 3x3 convolution + residual stack.
* Top level: 1x1 convolution to ``embedding_dim``, :class:`~streamad.models.image.dsr.quantizer.VectorQuantizer`
  (``Q_hi``); upsampled by a 4x4 stride-2 transposed convolution (``upsample_t``), concatenated to the bottom
  features, 1x1 convolution, quantiser (``Q_lo``).
* :class:`GeneralDecoder` (anomalib ``DecoderBot``): ``(N, 2 * embedding_dim, H/4, W/4) -> (N, 3, H, W)``: a 3x3
  convolution, a residual stack, two 4x4 stride-2 transposed convolutions. The object-specific decoder has the same
  layout (anomalib's ``ImageReconstructionNetwork`` differs in its inner blocks).

Phase 1 (anomalib: pretrained on ImageNet and downloaded) is trained here on the training images:
:meth:`DiscreteLatentModel.vq_loss` (reconstruction MSE + both quantisers' commitment losses; the codebooks
follow moving averages, see :mod:`~streamad.models.image.dsr.quantizer`), the codebooks first set to features of
the first batch (:meth:`DiscreteLatentModel.init_codebooks`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from streamad.models.image.dsr.quantizer import VectorQuantizer

__all__ = ["Residual", "ResidualStack", "GeneralDecoder", "DiscreteLatentModel"]


class Residual(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(x))))`` (biases off, anomalib ``Residual``); channels unchanged."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 3, padding=1, bias=False), nn.ReLU(),
                                   nn.Conv2d(hidden, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def ResidualStack(channels: int, layers: int, hidden: int) -> nn.Sequential:  # noqa: N802 (anomalib's name)
    """``layers`` :class:`Residual` blocks then a ReLU (anomalib ``ResidualStack``)."""
    return nn.Sequential(*(Residual(channels, hidden) for _ in range(int(layers))), nn.ReLU())


class GeneralDecoder(nn.Module):
    """``(N, in_channels, H/4, W/4) -> (N, 3, H, W)`` image (no output activation); see the module doc.

    Args:
        in_channels: ``2 * embedding_dim``. hiddens / layers / res_hiddens: anomalib ``num_hiddens`` (128),
            ``num_residual_layers`` (2), ``num_residual_hiddens`` (64).
    """

    def __init__(self, in_channels: int, hiddens: int, layers: int, res_hiddens: int) -> None:
        super().__init__()
        h = int(hiddens)
        self.net = nn.Sequential(nn.Conv2d(in_channels, h, 3, padding=1), ResidualStack(h, layers, res_hiddens),
                                 nn.ConvTranspose2d(h, h // 2, 4, stride=2, padding=1), nn.ReLU(),
                                 nn.ConvTranspose2d(h // 2, 3, 4, stride=2, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DiscreteLatentModel(nn.Module):
    """The two-level VQ-VAE of the module doc.

    Args:
        hiddens, layers, res_hiddens: encoder / decoder widths (anomalib 128, 2, 64).
        num_embeddings: codes per quantiser (anomalib 4096). embedding_dim: their dimension (anomalib 128).
    """

    def __init__(self, hiddens: int, layers: int, res_hiddens: int, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        h, d = int(hiddens), int(embedding_dim)
        self.encode_bot = nn.Sequential(nn.Conv2d(3, h // 2, 4, stride=2, padding=1), nn.ReLU(),
                                        nn.Conv2d(h // 2, h, 4, stride=2, padding=1), nn.ReLU(),
                                        nn.Conv2d(h, h, 3, padding=1), ResidualStack(h, layers, res_hiddens))
        self.encode_top = nn.Sequential(nn.Conv2d(h, h, 4, stride=2, padding=1), nn.ReLU(),
                                        nn.Conv2d(h, h, 3, padding=1), ResidualStack(h, layers, res_hiddens))
        self.pre_vq_top = nn.Conv2d(h, d, 1)
        self.vq_top = VectorQuantizer(num_embeddings, d)
        self.upsample_t = nn.ConvTranspose2d(d, d, 4, stride=2, padding=1)
        self.pre_vq_bot = nn.Conv2d(h + d, d, 1)
        self.vq_bot = VectorQuantizer(num_embeddings, d)
        self.decoder = GeneralDecoder(2 * d, h, layers, res_hiddens)

    def quantise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (N, 3, H, W) 0-1 -> (Q_hi (N, d, H/8, W/8), Q_lo (N, d, H/4, W/4))`` quantised features."""
        bot, z_top = self._encode(x)
        q_top = self.vq_top(z_top)
        return q_top, self.vq_bot(self._bottom_features(bot, q_top))

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (N, 3, H, W) 0-1 -> (bottom encoding (N, c, H/4, W/4), top pre-quantisation features (N, d, H/8,
        W/8))``."""
        bot = self.encode_bot(x)
        return bot, self.pre_vq_top(self.encode_top(bot))

    def _bottom_features(self, bot: torch.Tensor, q_top: torch.Tensor) -> torch.Tensor:
        """The bottom level's pre-quantisation features ``(N, d, H/4, W/4)`` from the bottom encoding and the
        quantised top level."""
        return self.pre_vq_bot(torch.cat([bot, self.upsample_t(q_top)], 1))

    @torch.no_grad()
    def codes_used(self, x: torch.Tensor) -> dict[str, int]:
        """How many distinct codes the images ``x (N, 3, H, W)`` 0-1 take at each level: ``{"top": int,
        "bottom": int}`` (a collapsed codebook uses a handful of its ``num_embeddings``)."""
        bot, z_top = self._encode(x)
        idx_top = self.vq_top.indices(z_top)
        idx_bot = self.vq_bot.indices(self._bottom_features(bot, self.vq_top.lookup(idx_top)))
        return {"top": int(idx_top.unique().numel()), "bottom": int(idx_bot.unique().numel())}

    def init_codebooks(self, x: torch.Tensor, g: torch.Generator) -> None:
        """Both codebooks from the (pre-quantisation) features of the images ``x (N, 3, H, W)`` 0-1
        (:meth:`~streamad.models.image.dsr.quantizer.VectorQuantizer.init_from`), top level first."""
        with torch.no_grad():
            bot, z_top = self._encode(x)
            self.vq_top.init_from(z_top, g)
            self.vq_bot.init_from(self._bottom_features(bot, self.vq_top(z_top)), g)

    def join(self, q_top: torch.Tensor, q_bot: torch.Tensor) -> torch.Tensor:
        """Both levels at ``H/4``: ``(N, 2d, H/4, W/4)`` (the decoders' input)."""
        return torch.cat([self.upsample_t(q_top), q_bot], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (N, 3, H, W) 0-1 -> (N, 3, H, W)``: the general decoder's reconstruction."""
        return self.decoder(self.join(*self.quantise(x)))

    def vq_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Phase 1's 0-d loss in training mode: ``MSE(reconstruction, x)`` + both quantisers' commitment losses (the
        forward pass also moves the codebooks)."""
        recon = self(x)
        assert self.vq_top.loss is not None and self.vq_bot.loss is not None, "vq_loss needs training mode"
        return F.mse_loss(recon, x) + self.vq_top.loss + self.vq_bot.loss
