"""The locally aware neighbourhood mean that PatchCore and PaDiM share: squares, rectangles, borders, validation."""

from __future__ import annotations

import pytest
import torch

from streamad.models.components.patch_pool import PatchPool, patch_sides


def test_rectangle_averages_in_image_neighbours() -> None:
    """A ``[3, 5]`` neighbourhood (3 rows, 5 columns) keeps the map's size; inside, each position is the mean of
    its 15 neighbours; at a corner, of the 2 x 3 in-image ones (no zero padding in the mean)."""
    x = torch.randn(2, 4, 7, 9)
    y = PatchPool([3, 5])(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y[:, :, 3, 4], x[:, :, 2:5, 2:7].mean((2, 3)))
    torch.testing.assert_close(y[:, :, 0, 0], x[:, :, 0:2, 0:3].mean((2, 3)))
    torch.testing.assert_close(y[:, :, 6, 8], x[:, :, 5:7, 6:9].mean((2, 3)))


def test_anomalib_square_counts_padding_and_one_is_identity() -> None:
    """``3`` is anomalib's ``AvgPool2d(3, 1, 1)``: a corner is the sum of its 4 in-image cells over 9."""
    x = torch.rand(1, 2, 5, 5)
    y = PatchPool(3)(x)
    torch.testing.assert_close(y[:, :, 0, 0], x[:, :, 0:2, 0:2].sum((2, 3)) / 9)
    assert PatchPool(1)(x) is x and PatchPool([1, 1]).sides == (1, 1)


@pytest.mark.parametrize("bad", [0, 2, -3, [3, 4], [3], [3, 5, 7], "3", 3.0])
def test_even_or_malformed_sizes_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="patch_size must be an odd positive integer or \\[height, width\\]"):
        patch_sides(bad)  # type: ignore[arg-type]
