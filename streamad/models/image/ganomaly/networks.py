"""GANomaly's networks (Akcay, Atapour-Abarghouei, Breckon, ACCV 2018, arXiv 1805.06725, section 3 and figure 2;
anomalib ``ganomaly.torch_model``: ``Encoder``, ``Decoder``, ``Generator``, ``Discriminator``), DCGAN-style
(Radford et al. 2016) convolutional networks trained from scratch on square power-of-two images.

* :class:`Encoder` ``(N, C, s, s) -> (N, latent, 1, 1)``: a 4x4 stride-2 convolution with LeakyReLU(0.2), then
  ``extra_layers`` 3x3 stride-1 convolutions, then 4x4 stride-2 convolutions that double the channels (BatchNorm,
  LeakyReLU(0.2)) down to 4x4 pixels, then (``add_final_conv_layer``) a 4x4 valid convolution to the latent vector.
  Without the final convolution the latent is the ``(N, C_top, 4, 4)`` pyramid top.
* :class:`Decoder`: the mirror image, transposed convolutions with BatchNorm and ReLU, a Tanh output in [-1, 1].
* :class:`Generator`: encoder ``G_E``, decoder ``G_D``, second encoder ``E`` (``x -> z -> x^ -> z^``).
* :class:`Discriminator`: an encoder with a one-channel final convolution and a sigmoid (real / fake); its features
  (everything before the final convolution) serve the adversarial feature-matching loss.
* :func:`dcgan_init_`: convolutions ``N(0, 0.02)``, BatchNorm weight ``N(1, 0.02)`` and bias 0 (anomalib
  ``GanomalyModel.weights_init``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["Encoder", "Decoder", "Generator", "Discriminator", "dcgan_init_", "pyramid_depth"]


def pyramid_depth(size: int) -> int:
    """Stride-2 steps from ``size`` down to 4 pixels (``log2(size) - 2``).

    Raises:
        ValueError: ``size`` is not a power of two of at least 8 pixels.
    """
    if size < 8 or size & (size - 1):
        raise ValueError(f"ganomaly: the input side must be a power of two of at least 8 pixels, got {size}")
    return int(math.log2(size)) - 2


def dcgan_init_(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """Re-initialise ``module`` in place as DCGAN does: every (transposed) convolution's weight from
    ``N(0, 0.02)``, every BatchNorm's weight from ``N(1, 0.02)`` and its bias to 0 (running statistics reset).

    Args:
        generator: the random source (``None``: the global torch one).
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.normal_(0.0, 0.02, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.weight.normal_(1.0, 0.02, generator=generator)
                m.bias.zero_()


class Encoder(nn.Module):
    """DCGAN encoder ``(N, channels, size, size) float32 -> (N, out_channels, 1, 1)`` (or ``(N, top, 4, 4)``
    without the final convolution), see the module doc.

    Args:
        size: input side in pixels, a power of two >= 8. channels: input channels. out_channels: the latent size
            (1 for the discriminator). n_features: channels of the first convolution (doubled at every stride-2
            step). extra_layers: 3x3 stride-1 layers after the first one. add_final_conv_layer: end with the 4x4
            valid convolution to ``out_channels``.

    Raises:
        ValueError: ``size`` not a power of two >= 8.
    """

    def __init__(self, size: int, channels: int, out_channels: int, n_features: int, extra_layers: int = 0,
                 add_final_conv_layer: bool = True) -> None:
        super().__init__()
        depth = pyramid_depth(size)
        layers: list[nn.Module] = [nn.Conv2d(channels, n_features, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for _ in range(extra_layers):
            layers += [nn.Conv2d(n_features, n_features, 3, 1, 1, bias=False), nn.BatchNorm2d(n_features),
                       nn.LeakyReLU(0.2, True)]
        c = n_features
        for _ in range(depth - 1):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2, True)]
            c *= 2
        self.top_channels = c
        self.features = nn.Sequential(*layers)
        self.final = nn.Conv2d(c, out_channels, 4, 1, 0, bias=False) if add_final_conv_layer else None
        self.out_channels = out_channels if add_final_conv_layer else c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return f if self.final is None else self.final(f)


class Decoder(nn.Module):
    """DCGAN decoder ``latent (N, in_channels, 1, 1) (or (N, in_channels, 4, 4)) -> (N, channels, size, size)`` in
    [-1, 1] (Tanh), the mirror of :class:`Encoder`.

    Args:
        size, channels, n_features, extra_layers: as the :class:`Encoder` it mirrors (``channels``: of the output
            image). in_channels: the latent's channels. from_vector: the latent is a ``1x1`` vector (the encoder
            has its final convolution; a 4x4 transposed convolution expands it), else a ``4x4`` map (a 3x3
            convolution keeps its size).

    Raises:
        ValueError: ``size`` not a power of two >= 8.
    """

    def __init__(self, size: int, channels: int, in_channels: int, n_features: int, extra_layers: int = 0,
                 from_vector: bool = True) -> None:
        super().__init__()
        depth = pyramid_depth(size)
        c = n_features * 2 ** (depth - 1)
        first = (nn.ConvTranspose2d(in_channels, c, 4, 1, 0, bias=False) if from_vector
                 else nn.ConvTranspose2d(in_channels, c, 3, 1, 1, bias=False))
        layers: list[nn.Module] = [first, nn.BatchNorm2d(c), nn.ReLU(True)]
        for _ in range(depth - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(True)]
            c //= 2
        for _ in range(extra_layers):
            layers += [nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Generator(nn.Module):
    """GANomaly's generator (paper figure 2): ``x (N, C, s, s) in [-1, 1] -> (z, x^, z^)`` with ``z = G_E(x)``,
    ``x^ = G_D(z)`` (``(N, C, s, s)`` in [-1, 1]) and ``z^ = E(x^)``; ``z`` and ``z^`` are ``(N, latent, 1, 1)``
    (``(N, top, 4, 4)`` without the final convolution).

    Args:
        size, channels, n_features, extra_layers, add_final_conv_layer: as :class:`Encoder`. latent_vec_size: the
            latent vector's size (anomalib ``latent_vec_size``, 100).
    """

    def __init__(self, size: int, channels: int, n_features: int, latent_vec_size: int, extra_layers: int = 0,
                 add_final_conv_layer: bool = True) -> None:
        super().__init__()
        self.encoder1 = Encoder(size, channels, latent_vec_size, n_features, extra_layers, add_final_conv_layer)
        self.decoder = Decoder(size, channels, self.encoder1.out_channels, n_features, extra_layers,
                               add_final_conv_layer)
        self.encoder2 = Encoder(size, channels, latent_vec_size, n_features, extra_layers, add_final_conv_layer)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.encoder1(x)
        fake = self.decoder(z)
        return z, fake, self.encoder2(fake)


class Discriminator(nn.Module):
    """GANomaly's discriminator (paper section 3, a DCGAN discriminator): ``x (N, C, s, s) -> (p (N,) in (0, 1),
    features (N, top, 4, 4))``, ``p`` the probability that ``x`` is a real (training) image.

    Args:
        size, channels, n_features, extra_layers: as :class:`Encoder`.
    """

    def __init__(self, size: int, channels: int, n_features: int, extra_layers: int = 0) -> None:
        super().__init__()
        enc = Encoder(size, channels, 1, n_features, extra_layers, True)
        self.features = enc.features
        self.classifier = nn.Sequential(enc.final, nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.classifier(f).flatten(), f
