"""DRAEM's simulated anomalies (paper section 3.2, figure 4; anomalib ``data.utils.augmenter.Augmenter``), made in
torch from a seeded generator inside the training step.

For each image of a batch, with probability ``p_anomalous`` (0.5): a Perlin mask ``M``
(:func:`~streamad.models.components.perlin.perlin_mask`), an anomaly source texture ``A`` (below) changed by 3
random colour transforms, and the blend ``I_a = (1 - M) * I + M * ((1 - beta) * I + beta * A)`` with ``beta``
uniform in ``beta_range`` (the anomaly's opacity). The other images stay as they are, with an empty mask.

Texture sources. DRAEM and anomalib take ``A`` from the DTD texture set, which cannot be downloaded here:

* ``anomaly_source_path`` unset (the default): a procedural colour texture, each RGB channel its own Perlin noise
  (two octaves at a random lattice scale) mapped to 0-1. anomalib's fallback ("random noise if left empty") uses
  the mask's own grey Perlin noise as the source; independent colour channels give more varied colours and
  structures than that, but far less varied ones than DTD's 5640 photographs of 47 texture classes (woven, cracked,
  porous ...): the discriminative network sees smooth noise blobs, not real-world texture edges.
* ``anomaly_source_path`` set: every image directly in that folder (read once, resized to the input size), one
  drawn per anomaly, as anomalib draws DTD images.

Colour transforms (3 distinct ones per anomaly, as anomalib's ``rand_augmenter``; anomalib's imgaug list minus the
sharpness, equalize and rotation ones, which need imgaug): gamma contrast per channel (0.5-2), brightness
(x0.8-1.2, +-30/255), hue shift by channel permutation, solarize (threshold 32-128 of 255), posterize (2-6 bits),
invert, autocontrast.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from streamad.models.components.perlin import next_pow2, perlin_mask, perlin_noise
from streamad.sources.image_folder import list_images, read_rgb

__all__ = ["AnomalyGenerator", "blend", "procedural_texture", "colour_transform", "load_sources"]


def blend(images: torch.Tensor, source: torch.Tensor, masks: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``images * (1 - m) + m * ((1 - beta) * images + beta * source)`` (anomalib ``augment_batch``).

    Args:
        images, source: ``(N, 3, H, W) float32`` 0-1. masks: ``(N, 1, H, W)`` 0 / 1. beta: ``(N,)`` opacities.
    """
    b = beta.view(-1, 1, 1, 1)
    return images * (1 - masks) + masks * ((1 - b) * images + b * source)


def _uniform(lo: float, hi: float, g: torch.Generator, shape: tuple[int, ...] = ()) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def procedural_texture(size: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    """``(3, H, W) float32`` 0-1: each channel the sum of Perlin noise at a random scale ``2^k`` (``k`` in 1..4)
    and at twice that scale (half the amplitude), mapped from about [-1.5, 1.5] to 0-1 and clipped."""
    h, w = int(size[0]), int(size[1])
    ph, pw = next_pow2(max(h, 32)), next_pow2(max(w, 32))
    channels = []
    for _ in range(3):
        s = 1 << int(torch.randint(1, 5, (1,), generator=g))
        n = perlin_noise((ph, pw), (s, s), g) + 0.5 * perlin_noise((ph, pw), (2 * s, 2 * s), g)
        channels.append(n[:h, :w])
    return (torch.stack(channels) / 3.0 + 0.5).clamp(0, 1)


def _gamma(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x.clamp_min(1e-6) ** _uniform(0.5, 2.0, g, (3, 1, 1))


def _brightness(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return (x * _uniform(0.8, 1.2, g) + _uniform(-30, 30, g) / 255).clamp(0, 1)


def _hue(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x[torch.randperm(3, generator=g)]


def _solarize(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.where(x > _uniform(32, 128, g) / 255, 1 - x, x)


def _posterize(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    levels = float(1 << int(torch.randint(2, 7, (1,), generator=g)))
    return torch.floor(x * (levels - 1) + 0.5) / (levels - 1)


def _invert(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return 1 - x


def _autocontrast(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    lo, hi = x.amin((1, 2), keepdim=True), x.amax((1, 2), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-6)


TRANSFORMS = (_gamma, _brightness, _hue, _solarize, _posterize, _invert, _autocontrast)


def colour_transform(x: torch.Tensor, g: torch.Generator, count: int = 3) -> torch.Tensor:
    """``x (3, H, W)`` 0-1 changed by ``count`` distinct transforms of the module doc, drawn from ``g``."""
    for i in torch.randperm(len(TRANSFORMS), generator=g)[:count].tolist():
        x = TRANSFORMS[i](x, g)
    return x


def load_sources(folder: str | Path, size: tuple[int, int]) -> torch.Tensor:
    """Every image directly in ``folder`` as ``(K, 3, H, W) uint8`` RGB resized to ``size`` (area interpolation).

    Raises:
        ValueError: ``folder`` is not a directory or holds no image (the message names ``anomaly_source_path``).
        SourceError: an unreadable image (named).
    """
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"draem: anomaly_source_path {str(folder)!r} is not a directory")
    files = list_images(path)
    if not files:
        raise ValueError(f"draem: anomaly_source_path {str(folder)!r} holds no image (.png, .jpg, .tif, .bmp)")
    h, w = int(size[0]), int(size[1])
    images = [cv2.resize(read_rgb(f), (w, h), interpolation=cv2.INTER_AREA) for f in files]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


class AnomalyGenerator:
    """Simulated anomalies for a training batch (see the module doc).

    Args:
        size: ``(H, W)`` of the images. seed: seeds every draw (masks, textures, transforms, opacities).
        beta_range: ``(low, high)`` opacity range (anomalib ``Draem`` default (0.1, 1.0)).
        p_anomalous: probability that an image gets an anomaly (anomalib 0.5).
        sources: ``(K, 3, H, W) uint8`` texture images (:func:`load_sources`), or ``None`` for procedural textures.

    ``__call__(images (N, 3, H, W) float32 0-1) -> (augmented (N, 3, H, W) float32, masks (N, 1, H, W) float32
    of 0 / 1)``.
    """

    def __init__(self, size: tuple[int, int], seed: int, beta_range: tuple[float, float] = (0.1, 1.0),
                 p_anomalous: float = 0.5, sources: torch.Tensor | None = None) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.beta_range = (float(beta_range[0]), float(beta_range[1]))
        self.p_anomalous = float(p_anomalous)
        self.sources = sources
        self.generator = torch.Generator().manual_seed(int(seed))

    def texture(self) -> torch.Tensor:
        """One anomaly source ``(3, H, W) float32`` 0-1 before the colour transforms."""
        g = self.generator
        if self.sources is None:
            return procedural_texture(self.size, g)
        k = int(torch.randint(0, self.sources.shape[0], (1,), generator=g))
        return self.sources[k].float() / 255.0

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = images.shape[0]
        g = self.generator
        masks = torch.zeros(n, 1, *self.size)
        source = torch.zeros(n, 3, *self.size)
        for i in range(n):
            if float(torch.rand((), generator=g)) >= self.p_anomalous:
                continue
            masks[i, 0], _ = perlin_mask(self.size, g)
            source[i] = colour_transform(self.texture(), g)
        beta = _uniform(*self.beta_range, g, (n,))
        return blend(images, source, masks, beta), masks
