"""Plain-word reasons for an alert: which feature streams drove a region's score (a streamad step; AI-VAD
motivates its per-stream density scores as interpretable, anomalib reports only the sum).

AI-VAD scores each region once per feature stream (``velocity``, ``pose``, ``deep`` appearance features); each
stream's density score is min-max normalised on the training regions, so a contribution of 1.0 is the largest value
that stream gave a normal training region, and the region score is the sum of the contributions
(:class:`streamad.models.base.RegionScores`). A stream *drove* a region when its contribution reaches the
``threshold`` (default 1.0: beyond anything seen on normal data); when none does, the single largest contributor is
named so that every scored region has a reason.

Words (:data:`STREAM_WORDS`): ``velocity`` -> ``"fast"``, ``pose`` -> ``"unusual pose"``, ``deep`` ->
``"unusual object"``; any other stream ``name`` -> ``"unusual <name>"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = ["STREAM_WORDS", "DEFAULT_THRESHOLD", "stream_word", "drivers", "region_reasons", "event_reasons"]

STREAM_WORDS: dict[str, str] = {"velocity": "fast", "pose": "unusual pose", "deep": "unusual object"}
"""The word an operator reads for each feature stream that drove a region."""

DEFAULT_THRESHOLD = 1.0
"""Contribution (min-max normalised on training regions) from which a stream counts as a driver."""


def stream_word(name: str) -> str:
    """The reason word of feature stream ``name`` (:data:`STREAM_WORDS`, else ``"unusual <name>"``)."""
    return STREAM_WORDS.get(name, f"unusual {name}")


def drivers(contributions: Mapping[str, float], threshold: float = DEFAULT_THRESHOLD) -> list[str]:
    """Names of the feature streams that drove a region, largest contribution first.

    Args:
        contributions: ``{stream name: contribution}`` of one region (plain or numpy floats, normalised units).
            Non-finite values are ignored.
        threshold: a stream drives the region when its contribution is ``>= threshold``.

    Returns:
        The streams at or above ``threshold`` ordered by contribution (ties keep the mapping's order); when none
        reaches it, the single largest contributor; ``[]`` when there is no finite contribution.
    """
    finite = [(name, float(v)) for name, v in contributions.items() if math.isfinite(float(v))]
    if not finite:
        return []
    ranked = sorted(finite, key=lambda nv: -nv[1])  # stable: equal contributions keep their order
    above = [name for name, v in ranked if v >= threshold]
    return above or [ranked[0][0]]


def region_reasons(contributions: Mapping[str, float], threshold: float = DEFAULT_THRESHOLD) -> list[str]:
    """Why one region is anomalous, in words, largest contribution first.

    Example: ``region_reasons({"velocity": 0.2, "deep": 1.4})`` is ``["unusual object"]``;
    ``region_reasons({"velocity": 1.1, "pose": 1.6})`` is ``["unusual pose", "fast"]``;
    ``region_reasons({"velocity": 0.3, "pose": 0.7})`` is ``["unusual pose"]`` (no stream reaches 1.0: the largest).

    Args:
        contributions: ``{stream name: contribution}`` of the region (see :func:`drivers`).
        threshold: contribution from which a stream counts as a reason.

    Returns:
        One word per driving stream (:func:`stream_word`); ``[]`` without contributions (e.g. image models).
    """
    return [stream_word(name) for name in drivers(contributions, threshold)]


def event_reasons(regions: Iterable[Mapping[str, float]], threshold: float = DEFAULT_THRESHOLD) -> list[str]:
    """The union of several regions' reasons, ordered by the largest contribution each reason had.

    Args:
        regions: the ``contributions`` mapping of each region (e.g. the regions an alert lists).
        threshold: as in :func:`region_reasons`.

    Returns:
        Each word once; a word ranks by the largest contribution of its stream over the regions it drove.
    """
    best: dict[str, float] = {}
    for contributions in regions:
        for name in drivers(contributions, threshold):
            best[name] = max(best.get(name, -math.inf), float(contributions[name]))
    return [stream_word(name) for name, _ in sorted(best.items(), key=lambda nv: -nv[1])]
