"""A seeded hold-out of a dataset split's videos: normal footage the model is not fitted on, for label-free
calibration (the image threshold, min-max normalisation) and for validation without test labels.

The video datasets ship no validation split (anomalib's ``UCSDped`` / ``Avenue`` / ``ShanghaiTech`` datamodules
validate on the test split, ``SAME_AS_TEST``). ``holdout`` makes one from the training videos, the same way for
every dataset, so that one pipeline config serves them all (only the source's ``kind`` differs)::

    fit:
      train:      [{kind: ucsd_ped, split: train, holdout: {fraction: 0.25, seed: 0, part: fit}}]
      validation: [{kind: ucsd_ped, split: train, holdout: {fraction: 0.25, seed: 0, part: held_out}}]

The held-out videos are ``numpy.random.default_rng(seed).choice(n, k, replace=False)`` of the ``n`` videos in the
split's order, ``k = round(fraction * n)`` (at least 1, at most ``n - 1``): with seed 0 the 4 of Ped2's 16 training
clips that ``benchmarks/aivad_validation_study.py`` validates AI-VAD's settings on.
"""

from __future__ import annotations

from typing import Literal, Sequence, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from streamad.errors import ConfigError

__all__ = ["HoldoutConfig", "held_out_indices", "apply_holdout"]

V = TypeVar("V")


class HoldoutConfig(BaseModel):
    """``holdout`` of a dataset source.

    Attributes:
        fraction: share of the videos held out, ``0 < fraction < 1``.
        seed: seed of the choice (the same seed in ``fit.train`` and ``fit.validation`` gives complementary parts).
        part: ``fit`` (the videos not held out) or ``held_out``.
    """

    model_config = ConfigDict(extra="forbid")

    fraction: float = Field(gt=0, lt=1)
    seed: int = 0
    part: Literal["fit", "held_out"]


def held_out_indices(n: int, fraction: float, seed: int) -> list[int]:
    """Sorted positions of the held-out videos among ``n``.

    Args:
        n: number of videos, at least 2. fraction: share held out, ``0 < fraction < 1``. seed: the rng seed.

    Returns:
        ``k = min(n - 1, max(1, round(fraction * n)))`` sorted positions in ``[0, n)``.

    Raises:
        ValueError: ``n < 2`` (nothing would be left to fit on or to hold out).
    """
    if n < 2:
        raise ValueError(f"a hold-out needs at least 2 videos, got {n}")
    k = min(n - 1, max(1, round(fraction * n)))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n, k, replace=False))


def apply_holdout(videos: Sequence[V], holdout: HoldoutConfig | None, where: str) -> list[V]:
    """The part of ``videos`` that ``holdout`` selects (all of them when ``holdout`` is ``None``), in their order.

    Args:
        videos: the split's videos (after ``videos`` / ``scenes`` selection), in the split's order.
        holdout: the source's ``holdout`` setting, or ``None``.
        where: the config key path of the source (``fit.train[0]``), for messages.

    Raises:
        ConfigError: fewer than 2 videos to split (names ``<where>.holdout``).
    """
    if holdout is None:
        return list(videos)
    try:
        held = set(held_out_indices(len(videos), holdout.fraction, holdout.seed))
    except ValueError as exc:
        raise ConfigError(f"{where}.holdout: {exc}") from None
    keep = (lambda i: i in held) if holdout.part == "held_out" else (lambda i: i not in held)
    return [v for i, v in enumerate(videos) if keep(i)]
