"""How ``streamad fit`` fits a video model (the ``video_model`` operator's
:class:`~streamad.models.fitting.ModelFitter`): the training clips' region features, grouped by video (as AI-VAD
groups by video path); the shared post-processing fitter turns the validation frame scores into min / max and the
image threshold."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamad.frames import Clip
from streamad.models.base import VideoModel
from streamad.models.fitting import ModelFitter
from streamad.models.handle import ModelHandle

__all__ = ["ClipFitter"]


class ClipFitter(ModelFitter):
    """Fit state of one video model.

    Args:
        model: the unfitted model (``VIDEO_MODELS.get(kind)(config)``).
    """

    sample_unit = "clips"

    def __init__(self, model: VideoModel) -> None:
        super().__init__()
        self.model = model
        self.features: list[dict[str, np.ndarray]] = []
        self.groups: list[str] = []
        self.keys: list[tuple[str, int]] = []  # (stream id, target frame index) of each collected clip

    @property
    def samples(self) -> int:
        """Training clips collected."""
        return len(self.features)

    def collect(self, msg: Any) -> int:
        """Keep a training clip's features and video; returns the frames it stands for."""
        if not isinstance(msg, Clip):
            return 0
        self.features.append(dict(msg.features))
        self.groups.append(msg.target.video or msg.stream_id)
        self.keys.append((msg.stream_id, msg.target.index))
        return 1 + len(msg.extra_targets)

    def fit(self, progress: bool) -> tuple[VideoModel, dict[str, Any]]:
        """Fit on the collected clips; returns the model and ``{"train_clips", "train_regions"}``.

        Raises:
            ValueError: what the model raises when no region was found.
        """
        # The training streams run concurrently, so clips arrive in an order that varies from run to run; the
        # estimators (GMM initialisation, k-center start) depend on row order, so fit in (stream, frame) order.
        order = sorted(range(len(self.keys)), key=self.keys.__getitem__)
        self.model.fit([self.features[i] for i in order], [self.groups[i] for i in order])
        regions = int(sum(len(next(iter(f.values()))) if f else 0 for f in self.features))
        return self.model, {"train_clips": len(self.features), "train_regions": regions}

    def handle(self, model: VideoModel) -> ModelHandle:
        """The fitted model as the ``video_model`` operator shares it."""
        return ModelHandle(model, model.kind, model.version)

    def close(self) -> None:
        """Drop the collected features."""
        self.features.clear()
        self.keys.clear()
