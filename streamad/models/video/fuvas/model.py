"""The FUVAS video model ("FUVAS: Few-shot Unsupervised Video Anomaly Segmentation via Low-Rank
Factorization of Spatio-Temporal Features", ICASSP 2025; anomalib ``Fuvas`` / ``FUVASModel``).

A clip is described by the deep features of its frames on a grid of cells (the ``clip_features`` operator). One
PCA (the low-rank factorisation) is fitted on the normal training clips' whole feature vectors (every cell and
channel of the clip flattened, as anomalib does). A clip's squared feature reconstruction error is summed over
channels and time per cell: that is the anomaly map (one score per cell); the frame score is the map's sum
(anomalib) or, as a streamad option, its largest cell.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from streamad.errors import ModelError
from streamad.models.base import RegionScores, VideoModel
from streamad.models.components.dynamic_buffers import assign_buffers, buffer_arrays
from streamad.models.components.pca import PCA
from streamad.parts import PartConfig
from streamad.registry import VIDEO_MODELS

__all__ = ["Fuvas"]

STREAM = "clip"  # the Clip.features key of the clip_features operator


@VIDEO_MODELS.register("fuvas")
class Fuvas(VideoModel):
    """PCA feature-reconstruction model over a clip's grid of spatio-temporal features.

    Input of :meth:`fit` / :meth:`predict`: ``features["clip"]`` ``(M, D) float32``, M grid cells by D values (time
    x channels) per cell, the same ``(M, D)`` for every clip. Output: ``region_scores`` ``(M,) float32`` squared
    reconstruction error per cell (feature units squared), ``frame_score`` their sum (or max),
    ``contributions["clip"]`` the cells' errors divided by the largest cell error of the training clips (1.0 = the
    worst cell seen on normal data).
    """

    version = "1"

    class Config(PartConfig):
        """Config of ``kind: fuvas`` (anomalib names and defaults, plus streamad extensions)."""

        kind: Literal["fuvas"] = "fuvas"
        pca_level: float = Field(0.98, gt=0, description="Variance fraction the PCA keeps (anomalib default 0.98), "
                                                         "or a component count (>= 1).")
        frame_score: Literal["sum", "max"] = Field(
            "sum", description="Frame score from the anomaly map: 'sum' of the cells (anomalib) or the largest "
                               "cell (streamad option).")
        train_clip_stride: int = Field(
            1, ge=1, description="streamad extension: fit on every n-th training clip in (stream, frame) order (1 = "
                                 "all). anomalib trains on Ped2 with frames_between_clips 10, but streamad's "
                                 "clip_window serves fit and eval alike and eval must score every frame; this "
                                 "thins the training clips alone. Bounds the PCA's cost and size.")
        seed: int = Field(0, description="Random state of the PCA solver.")

    def __init__(self, config: "Fuvas.Config") -> None:
        super().__init__(config)
        self.pca: PCA | None = None
        self.shape: tuple[int, int] | None = None  # (M, D) of the fitted clips
        self.cell_scale = 1.0

    @property
    def feature_streams(self) -> list[str]:
        return [STREAM]

    def _matrix(self, features: list[dict[str, np.ndarray]], error: type[Exception]) -> np.ndarray:
        """``(N, M * D) float32`` of the clips; raises ``error`` naming the field when one is missing or misshapen."""
        rows = []
        for i, f in enumerate(features):
            if STREAM not in f:
                raise error(f"FUVAS needs features[{STREAM!r}] (add the clip_features operator before "
                            f"'video_model'); clip {i} has {sorted(f)}")
            x = np.asarray(f[STREAM], np.float32)
            want = self.shape or (rows[0].shape if rows else x.shape)
            if x.ndim != 2 or tuple(x.shape) != tuple(want):
                raise error(f"FUVAS: features[{STREAM!r}] of clip {i} has shape {x.shape}, expected (M, D) = "
                            f"{tuple(want)} (grid cells x time*channels; the frame size, layer, pooling and clip "
                            f"length must stay those of the fit)")
            rows.append(x)
        return np.stack(rows).reshape(len(rows), -1)

    def fit(self, features: list[dict[str, np.ndarray]], groups: list[str]) -> None:
        c = self.config
        features = features[:: c.train_clip_stride]
        if len(features) < 2:
            raise ValueError(f"FUVAS needs at least 2 training clips (after train_clip_stride "
                             f"{c.train_clip_stride}), got {len(features)}")
        self.shape = None
        x = self._matrix(features, ValueError)
        shape = tuple(np.asarray(features[0][STREAM]).shape)
        pca = PCA().fit(x, c.pca_level if c.pca_level < 1 else int(c.pca_level), seed=c.seed)
        self.pca, self.shape = pca, (int(shape[0]), int(shape[1]))
        self.cell_scale = max(float(self._cell_errors(x).max()), 1e-12)

    def _cell_errors(self, x: np.ndarray) -> np.ndarray:
        """``(N, M) float32`` squared reconstruction error per cell of ``(N, M * D)`` clip vectors."""
        assert self.pca is not None and self.shape is not None
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
            err = (t - self.pca.mean - self.pca.reconstruct(self.pca(t))) ** 2
            return err.reshape(len(x), *self.shape).sum(dim=2).numpy()

    def predict(self, features: dict[str, np.ndarray]) -> RegionScores:
        return self.predict_batch([features])[0]

    def predict_batch(self, features: list[dict[str, np.ndarray]]) -> list[RegionScores]:
        """Score several clips in one PCA call (the same results as :meth:`predict` per clip).

        Raises:
            ModelError: used before fit or load, ``features["clip"]`` missing, or not of the fitted ``(M, D)``.
        """
        if self.pca is None:
            raise ModelError("FUVAS model used before fit or load")
        if not features:
            return []
        cells = self._cell_errors(self._matrix(features, ModelError))
        reduce = np.sum if self.config.frame_score == "sum" else np.max
        return [RegionScores(row, float(reduce(row)), {STREAM: row / np.float32(self.cell_scale)}) for row in cells]

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if self.pca is None or self.shape is None:
            raise ModelError("FUVAS model has not been fitted")
        return ({"cells": self.shape[0], "cell_dim": self.shape[1], "pca_components": self.pca.n_components,
                 "cell_scale": self.cell_scale}, buffer_arrays(self.pca, "pca."))

    def load_state(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        try:
            shape = (int(params["cells"]), int(params["cell_dim"]))
            scale = float(params["cell_scale"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"FUVAS model parameters lack {exc}; refit the model") from None
        pca = PCA()
        assign_buffers(pca, arrays, "pca.", "fuvas")
        if tuple(pca.mean.shape) != (shape[0] * shape[1],) or pca.components.shape[0] != shape[0] * shape[1]:
            raise ModelError(f"FUVAS: PCA arrays of shape mean {tuple(pca.mean.shape)}, components "
                             f"{tuple(pca.components.shape)} do not fit {shape[0]} cells x {shape[1]} values; refit")
        self.pca, self.shape, self.cell_scale = pca, shape, scale
