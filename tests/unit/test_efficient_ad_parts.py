"""The nearest-neighbour scoring of benchmarks/efficient_ad_parts.py ``--knn`` (how much of the distillation
source's separation a fitted EfficientAD keeps), on generated images."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from helpers import load_benchmark


@pytest.fixture(scope="module")
def parts():
    return load_benchmark("efficient_ad_parts")


def _tile(rng: np.random.Generator, defect: bool) -> torch.Tensor:
    """A ``(1, 3, 32, 32)`` 0-255 grey texture; a defect is a dark 4x4 spot."""
    x = 128 + 10 * rng.standard_normal((32, 32))
    if defect:
        y, c = rng.integers(2, 26, 2)
        x[y:y + 4, c:c + 4] = 10
    return torch.from_numpy(np.repeat(x[None, None], 3, 1)).float()


def test_knn_scores_rank_an_image_with_a_patch_unlike_training_above_normal_ones(parts):
    rng = np.random.default_rng(0)
    train = [_tile(rng, False) for _ in range(20)]
    valid = [_tile(rng, k % 2 == 1) for k in range(20)]

    def features(x: torch.Tensor) -> torch.Tensor:  # (C, h, w): 4x4 cell means and standard deviations
        cells = x[0, :1].unfold(1, 4, 4).unfold(2, 4, 4)
        return torch.stack([cells.mean((-1, -2))[0], cells.std((-1, -2))[0]])

    scores = parts.knn_scores(features, train, valid, bank_size=500)
    assert scores.shape == (20,) and scores.dtype == np.float32
    normal, defective = scores[0::2], scores[1::2]
    assert defective.min() > normal.max()
    # the bank is a seeded sample: the same call scores the same
    np.testing.assert_array_equal(scores, parts.knn_scores(features, train, valid, bank_size=500))


def test_knn_scores_without_training_images_is_a_clear_error(parts):
    with pytest.raises(ValueError, match="no training image"):
        parts.knn_scores(lambda x: x[0], [], [torch.zeros(1, 3, 8, 8)], bank_size=10)
