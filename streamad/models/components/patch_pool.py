"""Locally aware patch features: each position of a feature map averaged over its neighbourhood.

PatchCore's aggregation (Roth et al., CVPR 2022, sec. 3.1, the patch size ``p``; anomalib ``PatchcoreModel``:
``AvgPool2d(3, 1, 1)``), offered to PaDiM too. The neighbourhood is ``height x width`` cells of the layer's own map,
stride 1, centred, so the map keeps its size. ``3 x 3`` is anomalib's pool, whose border means count the zero
padding; any other size averages the in-image neighbours only (``count_include_pad=False``), since a wide window
of zeros would drag every border position towards 0. ``1 x 1`` is the identity.

A rectangle (``[height, width]``) suits textures with a direction: Magnetic Tile's grinding marks run vertically
and its ``Uneven`` defects are horizontal bands, which a neighbourhood one row-band high and the whole map wide
tells from the rest of the tile (measured in ``streamad/models/image/patchcore/README.md``).
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import BeforeValidator
from torch import nn


__all__ = ["PatchSize", "PatchPool", "patch_sides"]


def patch_sides(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``p`` or ``[height, width]`` -> ``(height, width)`` in cells.

    Raises:
        ValueError: a side that is not a positive odd integer (the neighbourhood is centred on its position), or a
            list that does not hold exactly two sides.
    """
    sides = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (list, tuple)) else ()
    if len(sides) != 2 or not all(isinstance(s, int) and s >= 1 and s % 2 == 1 for s in sides):
        raise ValueError(f"patch_size must be an odd positive integer or [height, width] of two, got {size!r}")
    return int(sides[0]), int(sides[1])


def _validate(size: object) -> int | tuple[int, int]:
    sides = patch_sides(size)  # type: ignore[arg-type]
    return sides[0] if isinstance(size, int) else sides


#: config field type: ``p`` (a square) or ``[height, width]``, odd sides in cells of each layer's map.
PatchSize = Annotated[int | tuple[int, int], BeforeValidator(_validate)]


class PatchPool(nn.Module):
    """``(N, C, h, w) float32 -> (N, C, h, w) float32``: the mean over each position's neighbourhood.

    Args:
        size: ``p`` or ``(height, width)``, odd, in cells (see the module doc).

    Raises:
        ValueError: from :func:`patch_sides`.
    """

    def __init__(self, size: int | tuple[int, int]) -> None:
        super().__init__()
        self.sides = patch_sides(size)
        self.pool = (None if self.sides == (1, 1) else
                     nn.AvgPool2d(self.sides, 1, (self.sides[0] // 2, self.sides[1] // 2),
                                  count_include_pad=self.sides == (3, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.pool is None else self.pool(x)
