"""The AI-VAD video model (Reiss & Hoshen, "Attribute-based Representations for Accurate and Interpretable Video
Anomaly Detection", arXiv 2212.00789; anomalib ``AiVadModel``).

Regions of a clip are described by attributes (velocity, pose, deep appearance), each attribute's density is
estimated on normal training regions, and a region's score is the sum of its normalised per-attribute scores.
Feature extraction is done by pipeline operators (``foreground_regions``, ``optical_flow``,
``velocity_features``); this class holds the density estimators.

This version implements the velocity stream (:class:`~streamad.models.video.aivad.density.GMMEstimator`);
``use_pose_features`` / ``use_deep_features`` are rejected until their extractors exist.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from streamad.errors import ModelError
from streamad.models.base import RegionScores, VideoModel
from streamad.models.video.aivad.density import CombinedDensityEstimator, GMMEstimator
from streamad.parts import PartConfig
from streamad.registry import MODELS

__all__ = ["AiVad"]


@MODELS.register("aivad")
class AiVad(VideoModel):
    """AI-VAD density model over region attributes.

    Config (anomalib names and meanings):
        use_velocity_features: model the velocity attribute with a GMM.
        use_pose_features, use_deep_features: not available in this version (a config error if true).
        n_components_velocity: GMM components for velocity (anomalib ``AiVad`` 2, ``AiVadModel`` 5).
        seed: random state of the GMM fit.
    """

    version = "1"

    class Config(PartConfig):
        kind: Literal["aivad"] = "aivad"
        use_velocity_features: bool = True
        use_pose_features: bool = False
        use_deep_features: bool = False
        n_components_velocity: int = Field(2, ge=1)
        seed: int = 0

        @model_validator(mode="after")
        def _streams(self) -> "AiVad.Config":
            if self.use_pose_features or self.use_deep_features:
                raise ValueError("pose and deep features are not available in this version: set "
                                 "use_pose_features and use_deep_features to false")
            if not self.use_velocity_features:
                raise ValueError("at least one feature stream must be enabled (use_velocity_features)")
            return self

    def __init__(self, config: "AiVad.Config") -> None:
        super().__init__(config)
        self.estimator: CombinedDensityEstimator | None = None

    @property
    def feature_streams(self) -> list[str]:
        return ["velocity"] if self.config.use_velocity_features else []

    def fit(self, features: list[dict[str, np.ndarray]], groups: list[str]) -> None:
        ests: dict[str, Any] = {}
        for name in self.feature_streams:
            rows = [f[name] for f in features if name in f and len(f[name])]
            if not rows:
                raise ValueError("No regions were extracted during training.")
            x = np.concatenate(rows)
            if name == "velocity":
                est = GMMEstimator(self.config.n_components_velocity, seed=self.config.seed)
                est.fit(x)
                ests[name] = est
        self.estimator = CombinedDensityEstimator(ests)

    def predict(self, features: dict[str, np.ndarray]) -> RegionScores:
        if self.estimator is None:
            raise ModelError("AI-VAD model used before fit or load")
        missing = [n for n in self.feature_streams if n not in features]
        if missing:
            raise ModelError(f"AI-VAD needs features {missing}: add the matching operators "
                             f"(velocity -> optical_flow + velocity_features) before 'score'")
        region, frame, contrib = self.estimator.predict(features)
        return RegionScores(region, frame, contrib)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if self.estimator is None:
            raise ModelError("AI-VAD model has not been fitted")
        params: dict[str, Any] = {"estimators": {}}
        arrays: dict[str, np.ndarray] = {}
        for name, est in self.estimator.estimators.items():
            p, a = est.state(name)
            params["estimators"][name] = {"type": "gmm", **p}
            arrays.update(a)
        return params, arrays

    def load_state(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        ests: dict[str, Any] = {}
        for name in self.feature_streams:
            p = params.get("estimators", {}).get(name)
            if p is None:
                raise ModelError(f"model directory has no fitted estimator for feature stream {name!r}")
            ests[name] = GMMEstimator.from_state(name, p, arrays)
        self.estimator = CombinedDensityEstimator(ests)
