"""2-D Perlin noise and the thresholded Perlin masks of DRAEM's synthetic anomalies (Zavrtanik, Kristan, Skocaj,
"DRAEM", ICCV 2021, arXiv 2108.07610, section 3.2; anomalib ``data.utils.generators.random_2d_perlin`` and
``data.utils.augmenter.Augmenter.generate_perturbation``).

* :func:`perlin_noise`: gradient noise on a ``res_y x res_x`` lattice of random unit gradients, interpolated with the
  fade curve ``6t^5 - 15t^4 + 10t^3`` and scaled by ``sqrt(2)`` (values in about [-1, 1]).
* :func:`perlin_mask`: anomalib's mask: noise at a random power-of-two scale ``2^k``, ``k`` uniform in 0..6 for
  each axis, generated at the next power of two of the size and cropped, rotated by a random angle in
  [-90, 90] degrees (zero outside the rotated square), thresholded at 0.5.

Every random draw comes from the ``torch.Generator`` passed in, so a seeded generator gives the same masks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["perlin_noise", "perlin_mask", "next_pow2", "MASK_THRESHOLD", "MAX_SCALE_EXPONENT"]

MASK_THRESHOLD = 0.5
"""Noise above this is anomalous (DRAEM, anomalib)."""
MAX_SCALE_EXPONENT = 6
"""Lattice cells per axis are ``2^k`` with ``k`` uniform in ``0..6`` (anomalib ``perlin_scale``)."""


def next_pow2(value: int) -> int:
    """The smallest power of two >= ``value`` (anomalib ``nextpow2``)."""
    return 1 << max(int(value) - 1, 0).bit_length()


def _fade(t: torch.Tensor) -> torch.Tensor:
    return ((6 * t - 15) * t + 10) * t * t * t


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Perlin noise ``(H, W) float32`` in about [-1, 1] with ``res = (res_y, res_x)`` lattice cells per axis.

    Raises:
        ValueError: a side is not a positive multiple of its ``res`` (anomalib's ``random_2d_perlin`` requires the
            same).
    """
    (h, w), (ry, rx) = (int(shape[0]), int(shape[1])), (int(res[0]), int(res[1]))
    if ry < 1 or rx < 1 or h < ry or w < rx or h % ry or w % rx:
        raise ValueError(f"perlin_noise: shape {(h, w)} must be positive multiples of res {(ry, rx)}")
    angles = 2 * math.pi * torch.rand(ry + 1, rx + 1, generator=generator)
    grads = torch.stack([angles.cos(), angles.sin()], -1)  # (ry + 1, rx + 1, 2) unit gradients
    y = torch.arange(h, dtype=torch.float32) * (ry / h)
    x = torch.arange(w, dtype=torch.float32) * (rx / w)
    iy, ix = y.long(), x.long()
    fy, fx = (y - iy)[:, None], (x - ix)[None, :]

    def corner(dy: int, dx: int) -> torch.Tensor:  # gradient . offset from that lattice corner
        g = grads[iy + dy][:, ix + dx]  # (h, w, 2)
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    ty, tx = _fade(fy), _fade(fx)
    top = torch.lerp(corner(0, 0), corner(0, 1), tx.expand(h, w))
    bottom = torch.lerp(corner(1, 0), corner(1, 1), tx.expand(h, w))
    return math.sqrt(2.0) * torch.lerp(top, bottom, ty.expand(h, w))


def _rotate(image: torch.Tensor, degrees: float) -> torch.Tensor:
    """``(H, W)`` rotated about its centre by ``degrees`` (bilinear), zero where no source pixel maps."""
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])[None]
    grid = F.affine_grid(theta, [1, 1, *image.shape], align_corners=False)
    return F.grid_sample(image[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0]


def perlin_mask(shape: tuple[int, int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One DRAEM anomaly mask: ``(mask (H, W) float32 of 0 / 1, noise (H, W) float32)``, the noise the rotated
    Perlin noise it was thresholded from (see the module doc). A coarse scale can leave the mask empty, as in
    anomalib (the image then trains as normal)."""
    h, w = int(shape[0]), int(shape[1])
    sy, sx = (1 << int(torch.randint(0, MAX_SCALE_EXPONENT + 1, (1,), generator=generator)) for _ in range(2))
    ph, pw = next_pow2(max(h, sy)), next_pow2(max(w, sx))
    noise = perlin_noise((ph, pw), (sy, sx), generator)[:h, :w]
    angle = float(torch.rand((), generator=generator)) * 180.0 - 90.0
    noise = _rotate(noise, angle)
    return (noise > MASK_THRESHOLD).float(), noise
