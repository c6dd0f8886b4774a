"""``threshold``: anomalib's min-max normalisation with the image threshold, so 0.5 is the decision point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from streamad.errors import ModelError
from streamad.frames import Scores
from streamad.models.components.normalization import min_max_normalize
from streamad.models.store import read_metadata
from streamad.parts import BuildContext, Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["Threshold", "PostProcessStats"]


@dataclass(frozen=True)
class PostProcessStats:
    """Raw-score statistics fitted by ``streamad fit`` on the validation streams.

    Attributes:
        min, max: min-max normalisation statistics (raw units).
        image_threshold: decision threshold (raw units), manual or F1-adaptive.
        pixel_threshold: threshold of anomaly-map pixels and region scores (image models); ``None``: the image
            threshold.
    """

    min: float
    max: float
    image_threshold: float
    pixel_threshold: float | None = None


@OPERATORS.register("threshold")
class Threshold(Operator):
    """Normalise scores and label frames (anomalib min-max normalisation callback).

    ``normalized = clip((score - image_threshold) / (max - min) + 0.5, 0, 1)``; ``anomalous = normalized >= 0.5``.
    Region scores are normalised with the same statistics and the pixel threshold (anomalib normalises box scores
    with the pixel threshold; without a fitted pixel threshold, as for video models, it is the image threshold). Statistics come from the model directory
    (``model.json`` ``postprocess``); ``image_threshold`` in the config overrides the fitted threshold (raw units).

    Input/output: :class:`Scores` (sets ``normalized``, ``anomalous``; ``region_scores`` become normalised).
    """

    class Config(PartConfig):
        kind: Literal["threshold"] = "threshold"
        image_threshold: float | None = None

    @classmethod
    def create_shared(cls, config: "Threshold.Config", ctx: BuildContext) -> PostProcessStats:
        if "postprocess" in ctx.shared:
            p = ctx.shared["postprocess"]
        else:
            if ctx.model_dir is None:
                raise ModelError("threshold needs a fitted model directory (give --model or model_dir)")
            p = read_metadata(ctx.model_dir).get("postprocess")
            if not p:
                raise ModelError(f"{ctx.model_dir}/model.json has no 'postprocess' statistics: refit the model")
        thr = config.image_threshold if config.image_threshold is not None else p["image_threshold"]
        pix = p.get("pixel_threshold")
        return PostProcessStats(float(p["min"]), float(p["max"]), float(thr), None if pix is None else float(pix))

    def process(self, s: Scores) -> list[Scores]:
        st: PostProcessStats = self.shared
        s.normalized = float(min_max_normalize(s.score, st.image_threshold, st.min, st.max))
        s.anomalous = s.normalized >= 0.5
        if len(s.region_scores):
            region_thr = st.image_threshold if st.pixel_threshold is None else st.pixel_threshold
            s.region_scores = np.asarray(
                min_max_normalize(np.asarray(s.region_scores, np.float32), region_thr, st.min, st.max),
                np.float32)
        return [s]
