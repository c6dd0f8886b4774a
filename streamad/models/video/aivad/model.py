"""The AI-VAD video model (Reiss & Hoshen, "Attribute-based Representations for Accurate and Interpretable Video
Anomaly Detection", arXiv 2212.00789; anomalib ``AiVadModel``).

Regions of a clip are described by attributes (velocity, pose, deep appearance), each attribute's density is
estimated on normal training regions, and a region's score is the sum of its normalised per-attribute scores.
Feature extraction is done by pipeline operators (``object_regions`` or ``foreground_regions``, ``optical_flow``,
``velocity_features``, ``pose_features``, ``deep_features``); this class holds the density estimators: a GMM for
velocity (:class:`~streamad.models.video.aivad.density.GMMEstimator`) and grouped kNN for pose and deep features
(:class:`~streamad.models.video.aivad.knn.GroupedKNNEstimator`), combined as anomalib ``CombinedDensityEstimator``.

Each stream is switched on with its anomalib flag. Unlike anomalib, ``use_pose_features`` and ``use_deep_features``
default to false, because each needs its operator (and network file) in the pipeline; the examples
``*_aivad.yaml`` switch all three on.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from streamad.errors import ModelError
from streamad.models.base import RegionScores, VideoModel
from streamad.models.video.aivad.density import CombinedDensityEstimator, GMMEstimator, rows_with_attribute
from streamad.models.video.aivad.knn import GroupedKNNEstimator
from streamad.parts import PartConfig
from streamad.registry import VIDEO_MODELS

__all__ = ["AiVad"]

_OPERATOR_OF = {"velocity": "optical_flow + velocity_features", "pose": "pose_features", "deep": "deep_features"}


@VIDEO_MODELS.register("aivad")
class AiVad(VideoModel):
    """AI-VAD density model over region attributes.

    Config: see :class:`AiVad.Config`.
    """

    version = "1"

    class Config(PartConfig):
        """Config of ``kind: aivad`` (anomalib names and meanings, plus streamad extensions)."""

        kind: Literal["aivad"] = "aivad"
        use_velocity_features: bool = Field(True, description="Model the velocity attribute with a GMM (anomalib).")
        use_pose_features: bool = Field(
            False, description="Model the pose attribute with grouped kNN (anomalib; needs pose_features).")
        use_deep_features: bool = Field(
            False, description="Model the deep (appearance) attribute with grouped kNN (anomalib; needs "
                                "deep_features).")
        n_neighbors_pose: int = Field(1, ge=1, description="k of the pose kNN (anomalib default 1).")
        n_neighbors_deep: int = Field(1, ge=1, description="k of the deep kNN (anomalib default 1).")
        bank_size: int = Field(
            0, ge=0, description="streamad extension: at most this many training regions kept per kNN memory bank "
                                 "(0 = all, anomalib); bounds the scoring cost, which is linear in it.")
        bank_sampling: Literal["random", "kcenter"] = Field(
            "kcenter", description="streamad extension: how bank_size rows are chosen: a seeded random subset or "
                                   "the k-center greedy coreset (PatchCore's).")
        n_components_velocity: int = Field(
            2, ge=1, description="GMM components for velocity (anomalib AiVad default 2, AiVadModel default 5).")
        reg_covar_velocity: float = Field(
            1e-6, gt=0, description="streamad extension (anomalib/scikit-learn value 1e-6): added to the diagonal of "
                                    "each velocity GMM covariance, in square pixels (squared feature units). 0.01 "
                                    "px^2 means differences below about 0.1 px of flow do not matter, so regions "
                                    "that barely move do not give a near-singular density.")
        velocity_transform: Literal["none", "log1p"] = Field(
            "none", description="streamad extension: element-wise transform of the velocity features before the GMM "
                                "('none' = anomalib; 'log1p' = log(1 + x), compresses large speeds).")
        seed: int = Field(0, description="Random state of the GMM fit (fits are reproducible).")

        @model_validator(mode="after")
        def _streams(self) -> "AiVad.Config":
            if not (self.use_velocity_features or self.use_pose_features or self.use_deep_features):
                raise ValueError("at least one feature stream must be enabled (use_velocity_features, "
                                 "use_pose_features, use_deep_features)")
            return self

    def __init__(self, config: "AiVad.Config") -> None:
        super().__init__(config)
        self.estimator: CombinedDensityEstimator | None = None

    @property
    def feature_streams(self) -> list[str]:
        c = self.config
        flags = {"velocity": c.use_velocity_features, "pose": c.use_pose_features, "deep": c.use_deep_features}
        return [name for name, on in flags.items() if on]

    def _new_estimator(self, name: str) -> Any:
        c = self.config
        if name == "velocity":
            return GMMEstimator(c.n_components_velocity, seed=c.seed, reg_covar=c.reg_covar_velocity,
                                transform=c.velocity_transform)
        k = c.n_neighbors_pose if name == "pose" else c.n_neighbors_deep
        return GroupedKNNEstimator(k, c.bank_size, c.bank_sampling if c.bank_size else "none", seed=c.seed)

    def fit(self, features: list[dict[str, np.ndarray]], groups: list[str]) -> None:
        ests: dict[str, Any] = {}
        for name in self.feature_streams:
            missing = sum(1 for f in features if name not in f)
            if missing:
                raise ValueError(f"{missing} of {len(features)} training clips have no {name!r} features: add the "
                                 f"{_OPERATOR_OF[name]} operator before 'video_model' or switch use_{name}_features off")
            keep = [i for i, f in enumerate(features) if len(f[name])]
            if not keep:
                raise ValueError(f"No regions were extracted during training. ({len(features)} training clips gave no "
                                 f"{name!r} feature rows: check the training streams and the region operator's "
                                 f"thresholds)")
            x = np.concatenate([features[i][name] for i in keep])
            g = np.concatenate([[groups[i]] * len(features[i][name]) for i in keep])
            has = rows_with_attribute(x)
            if not has.any():
                raise ValueError(f"No training region has {name!r} features (every row is NaN): with "
                                 f"persons_only, the training streams must show people")
            est = self._new_estimator(name)
            if name == "velocity":
                est.fit(x[has])
            else:
                est.fit(x[has], g[has])
            ests[name] = est
        self.estimator = CombinedDensityEstimator(ests)

    def predict(self, features: dict[str, np.ndarray]) -> RegionScores:
        if self.estimator is None:
            raise ModelError("AI-VAD model used before fit or load")
        self._check_streams(features)
        region, frame, contrib = self.estimator.predict(features)
        return RegionScores(region, frame, contrib)

    def _check_streams(self, features: dict[str, np.ndarray]) -> None:
        """Raises :class:`ModelError` naming the operators to add when a feature stream is missing."""
        missing = [n for n in self.feature_streams if n not in features]
        if missing:
            raise ModelError(f"AI-VAD needs features {missing}: add the matching operators before 'video_model' "
                             f"({', '.join(f'{n} -> {_OPERATOR_OF[n]}' for n in missing)})")

    def predict_batch(self, features: list[dict[str, np.ndarray]]) -> list[RegionScores]:
        """Score several clips in one density call per feature stream (their regions concatenated), then split:
        the same region scores, contributions and frame scores as :meth:`predict` per clip."""
        if len(features) < 2:
            return [self.predict(f) for f in features]
        names = self.feature_streams
        for f in features:
            self._check_streams(f)
        rows = {n: [np.asarray(f[n]) for f in features if len(f[n])] for n in names}
        if not all(rows.values()):  # no clip has regions
            return [self.predict(f) for f in features]
        whole = self.predict({n: np.concatenate(r) for n, r in rows.items()})
        bounds = np.cumsum([0] + [len(f[names[0]]) for f in features])
        out = []
        for f, a, b in zip(features, bounds[:-1], bounds[1:]):
            contrib = {n: c[a:b] for n, c in whole.contributions.items()}
            has = {n: rows_with_attribute(f[n]) for n in contrib}
            frame = float(sum(float(c[has[n]].max()) for n, c in contrib.items() if has[n].any()))
            out.append(RegionScores(whole.region_scores[a:b], frame, contrib))
        return out

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if self.estimator is None:
            raise ModelError("AI-VAD model has not been fitted")
        params: dict[str, Any] = {"estimators": {}}
        arrays: dict[str, np.ndarray] = {}
        for name, est in self.estimator.estimators.items():
            p, a = est.state(name)
            params["estimators"][name] = {"type": "gmm" if isinstance(est, GMMEstimator) else "knn", **p}
            arrays.update(a)
        return params, arrays

    def load_state(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        ests: dict[str, Any] = {}
        for name in self.feature_streams:
            p = params.get("estimators", {}).get(name)
            if p is None:
                raise ModelError(f"model directory has no fitted estimator for feature stream {name!r}")
            cls = GMMEstimator if p.get("type", "gmm") == "gmm" else GroupedKNNEstimator
            ests[name] = cls.from_state(name, p, arrays)
        self.estimator = CombinedDensityEstimator(ests)
