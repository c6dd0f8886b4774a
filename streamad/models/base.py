"""The interface every video model implements, so that the ``score`` operator, ``fit`` and the model store treat
all models alike."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from streamad.parts import PartConfig

__all__ = ["VideoModel", "RegionScores"]


@dataclass
class RegionScores:
    """A model's output for one clip.

    Attributes:
        region_scores: ``(M,) float32`` raw anomaly score of each region (higher = more anomalous).
        frame_score: raw frame score (float).
        contributions: per feature stream, ``(M,) float32`` share of each region's score
            (``{"velocity": ..., "pose": ..., "deep": ...}``); region score = their sum.
    """

    region_scores: np.ndarray
    frame_score: float
    contributions: dict[str, np.ndarray] = field(default_factory=dict)


class VideoModel(abc.ABC):
    """A model that scores the regions of a clip from their features.

    Subclasses register with ``@VIDEO_MODELS.register("<kind>")`` and define a nested ``Config(PartConfig)``.
    ``features`` is ``Clip.features``: ``{stream name: (M, D) float32}``, one row per region.
    """

    Config: ClassVar[type[PartConfig]]
    kind: ClassVar[str]
    version: ClassVar[str] = "1"

    def __init__(self, config: PartConfig) -> None:
        self.config = config

    @property
    @abc.abstractmethod
    def feature_streams(self) -> list[str]:
        """Names of the ``Clip.features`` entries the model needs (e.g. ``["velocity"]``)."""

    @abc.abstractmethod
    def fit(self, features: list[dict[str, np.ndarray]], groups: list[str]) -> None:
        """Fit on training clips: ``features[i]`` of clip i, ``groups[i]`` the video it came from.

        Raises:
            ValueError: no region was found in the whole training set.
        """

    @abc.abstractmethod
    def predict(self, features: dict[str, np.ndarray]) -> RegionScores:
        """Score one clip's regions."""

    def predict_batch(self, features: list[dict[str, np.ndarray]]) -> list[RegionScores]:
        """Score several clips (of any streams) at once; the same results as :meth:`predict` on each.

        The ``score`` operator calls it with the clips waiting when ``runtime.batch_size`` > 1. Models whose
        inference is cheaper in one call override it. Default: :meth:`predict` per clip.
        """
        return [self.predict(f) for f in features]

    @abc.abstractmethod
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(json-serialisable params, named arrays)`` that :meth:`load_state` restores exactly."""

    @abc.abstractmethod
    def load_state(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restore a fitted model from :meth:`state`'s output.

        Raises:
            ModelError: arrays are missing or of the wrong shape.
        """
