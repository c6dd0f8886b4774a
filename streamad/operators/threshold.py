"""``threshold``: anomalib's min-max normalisation with the image threshold, so 0.5 is the decision point."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from streamad.frames import Scores
from streamad.models.postprocess import PostProcess
from streamad.models.store import read_postprocess
from streamad.parts import BuildContext, Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["Threshold"]


@OPERATORS.register("threshold")
class Threshold(Operator):
    """Normalise scores and label frames (anomalib min-max normalisation callback).

    ``normalized = clip((score - image_threshold) / (max - min) + 0.5, 0, 1)``; ``anomalous = normalized >= 0.5``.
    Region scores are normalised with the same statistics and the pixel threshold (anomalib normalises box scores
    with the pixel threshold; without a fitted pixel threshold, as for video models, it is the image threshold).
    Statistics come from the model directory (``model.json`` ``postprocess``,
    :class:`~streamad.models.postprocess.PostProcess`); ``image_threshold`` in the config overrides the fitted
    threshold (raw units), and the run's ``BuildContext.postprocess`` then carries the override.

    With one model per camera (stream ``model_dir``), each frame is normalised with the statistics of the model
    that scored it (``Scores.postprocess``, with this operator's override), so a hot-swapped model brings its own
    threshold.

    Input/output: :class:`Scores` (sets ``normalized``, ``anomalous``; ``region_scores`` become normalised).
    """

    applies_postprocess: ClassVar[bool] = True

    class Config(PartConfig):
        kind: Literal["threshold"] = "threshold"
        image_threshold: float | None = None

    @classmethod
    def create_shared(cls, config: "Threshold.Config", ctx: BuildContext) -> PostProcess:
        """The post-processing in effect (``ctx.postprocess``, else the model directory's) with this operator's
        override; published back to ``ctx.postprocess``.

        Raises:
            ModelError: no model directory, or one without post-processing statistics.
        """
        post = ctx.postprocess if ctx.postprocess is not None else read_postprocess(ctx.model_dir)
        ctx.postprocess = post.with_overrides(image_threshold=config.image_threshold)
        return ctx.postprocess

    def __init__(self, config: "Threshold.Config", shared: PostProcess, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        self._of: PostProcess | None = None  # the model's post-processing last seen, and it with the override
        self._post: PostProcess = shared

    def _post_for(self, s: Scores) -> PostProcess:
        own = s.postprocess
        if own is None:
            return self.shared
        if own is not self._of:
            self._of, self._post = own, own.with_overrides(image_threshold=self.config.image_threshold)
        return self._post

    def process(self, s: Scores) -> list[Scores]:
        post = self._post_for(s)
        s.normalized = float(post.normalize(s.score))
        s.anomalous = s.normalized >= 0.5
        if len(s.region_scores):
            s.region_scores = np.asarray(post.normalize_regions(np.asarray(s.region_scores, np.float32)), np.float32)
        return [s]

