"""The interface every image model implements, so that the ``image_model`` operator, ``streamad fit``, the model
store and ``streamad export`` treat all image models alike (anomalib's image models, run frame by frame).

A model is a config (:class:`ImageModelConfig`: backbone, layers, input size), a fit on normal images
(:meth:`ImageModel.fit`, from an :class:`~streamad.models.image.image_set.ImageSet`) and, once fitted, one torch
module, :attr:`ImageModel.network`, that maps decoded frames to anomaly maps and image scores:

    ``network(images (N, H, W, 3) uint8 RGB) -> (anomaly_map (N, 1, h, w) float32, score (N,) float32)``

with ``(h, w) = input_size``. The network holds the whole inference path (resize, normalisation, backbone,
anomaly-map head, Gaussian blur sigma 4, image score), so the exported OpenVINO / ONNX graph scores exactly as
:meth:`ImageModel.predict` does. Scores and maps are raw (model units, higher = more anomalous); the shared
post-processing (min-max normalisation with image and pixel thresholds) is applied by the pipeline's
``threshold`` operator, whatever the model.

Memory-bank models (PatchCore, PaDiM, DFM, DFKDE) read the training set once. Gradient-trained models set
:attr:`ImageModel.trainable`, read the training set once per epoch (a tqdm bar with the loss), and get the labelled
validation set to stop early on :meth:`ImageModel.validation_metric`.
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from streamad.errors import ModelError
from streamad.models.components.backbone import FeatureExtractor, build_feature_extractor, packaged_weights
from streamad.models.image.image_set import ImageSet
from streamad.models.image.preprocess import Preprocess, as_batch
from streamad.parts import PartConfig
from streamad.registry import IMAGE_MODELS

__all__ = ["IMAGE_MODELS", "ImageModelConfig", "ImageModel", "ImageNetwork", "ImagePrediction", "file_sha256"]


class ImageModelConfig(PartConfig):
    """Settings every image model shares.

    Attributes:
        backbone: ``efficientnet_lite0``, ``efficientnet_lite1``, ``efficientnet_lite2`` (packaged ImageNet
            weights), ``resnet18``, ``wide_resnet50_2`` or ``timm/<name>`` (see
            :mod:`streamad.models.components.backbone`).
        weights: local backbone weights file (required for every backbone but the EfficientNet-Lite ones).
        layers: backbone layers the model reads, shallow to deep (anomalib ``layers``).
        input_size: ``[height, width]`` in pixels that frames are resized to (anomalib ``image_size``; 256x256).
        batch_size: images per forward pass while fitting.
        seed: seeds every random choice of the fit (channel subsets, coreset start, projections).
    """

    backbone: str = "efficientnet_lite0"
    weights: str | None = None
    layers: list[str] = Field(default_factory=lambda: ["layer2", "layer3"], min_length=1)
    input_size: tuple[int, int] = (256, 256)
    batch_size: int = Field(16, ge=1)
    seed: int = 0

    def model_post_init(self, __context: Any) -> None:
        if min(self.input_size) < 32:
            raise ValueError(f"input_size must be at least 32x32 pixels, got {list(self.input_size)}")


@dataclass
class ImagePrediction:
    """Raw output of an image model for a batch.

    Attributes:
        anomaly_map: ``(N, 1, h, w) float32`` per-pixel anomaly scores at the model's input size.
        score: ``(N,) float32`` image scores (model units).
        boxes: region models only (R-KDE): per image a ``(M_i, 5) float32`` array of the scored regions, rows
            ``(x1, y1, x2, y2, score)`` in pixels of the model's input size; ``None`` for the other models.
    """

    anomaly_map: np.ndarray
    score: np.ndarray
    boxes: list[np.ndarray] | None = None


class ImageNetwork(nn.Module):
    """Base of the image models' inference networks (:attr:`ImageModel.network`):
    ``forward(images (N, H, W, 3) uint8 RGB) -> (anomaly_map (N, 1, h, w) float32, score (N,) float32)``.

    Holds what each of them starts from: ``size``, the input ``(h, w)`` in pixels, and ``preprocess``, the
    :class:`~streamad.models.image.preprocess.Preprocess` step that resizes the frames to it (``(N, 3, h, w)``
    float32 in 0-255). Subclasses add their backbone and head after calling ``super().__init__(size)``.

    Args:
        size: input ``(h, w)`` in pixels.
    """

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = tuple(size)
        self.preprocess = Preprocess(size)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (backbone weights are identified by it in ``model.json``)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ImageModel(abc.ABC):
    """Base of image models. Subclasses register with ``@IMAGE_MODELS.register("<kind>")``, define a nested
    ``Config(ImageModelConfig)`` and implement :meth:`fit`, :meth:`_fitted_state` and :meth:`_build_network`.

    Attributes:
        trainable: gradient-trained (STFPM, FastFlow): the fit job passes the validation set to :meth:`fit`.
        score_meaning: what the raw image score measures (documentation, README tables).
        has_anomaly_map: the map localises (``False``: a whole-image model such as GANomaly, whose map is its image
            score at every pixel, so pixel metrics of it measure no localisation).
        exportable: :attr:`network` maps frames to maps and scores by itself, so ``streamad export`` can convert it
            (``False``: R-KDE, whose regions come from a separate detector network before its torch network).
        discrete_codes: the network picks discrete codes by a nearest-neighbour argmin (DSR's vector quantiser):
            at a near-tie, float summation order alone can pick another code, so an export's map may differ from
            torch's on the few cells of such a pick; ``streamad export`` then checks the scores and the share of
            map pixels that differ (:func:`streamad.export.export_model`).
        network: the fitted inference module (``None`` before :meth:`fit` / :meth:`load_state`).
    """

    Config: ClassVar[type[ImageModelConfig]]
    kind: ClassVar[str]
    version: ClassVar[str] = "1"
    trainable: ClassVar[bool] = False
    score_meaning: ClassVar[str] = ""
    has_anomaly_map: ClassVar[bool] = True
    exportable: ClassVar[bool] = True
    discrete_codes: ClassVar[bool] = False

    def __init__(self, config: ImageModelConfig) -> None:
        self.config = config
        self.network: nn.Module | None = None
        self._extractor: FeatureExtractor | None = None

    # -- shared helpers ------------------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` of the model input and of its anomaly maps, pixels."""
        return (int(self.config.input_size[0]), int(self.config.input_size[1]))

    @property
    def extractor(self) -> FeatureExtractor:
        """The frozen backbone (built on first use).

        Raises:
            ModelError: see :func:`~streamad.models.components.backbone.build_feature_extractor`.
        """
        if self._extractor is None:
            c = self.config
            self._extractor = build_feature_extractor(c.backbone, c.layers, c.weights)
        return self._extractor

    def backbone_identity(self) -> dict[str, str]:
        """``{"backbone", "weights_sha256"}`` recorded in ``model.json`` so that a model is never served with other
        backbone weights than it was fitted with.

        Raises:
            ModelError: the backbone has no packaged weights and ``weights`` is unset.
        """
        c = self.config
        path = Path(c.weights) if c.weights else packaged_weights(c.backbone)
        if path is None:
            raise ModelError(f"image model {self.kind}: backbone {c.backbone} needs weights (a local file)")
        return {"backbone": c.backbone, "weights_sha256": file_sha256(path)}

    def require_network(self) -> nn.Module:
        """The fitted network.

        Raises:
            ModelError: the model is not fitted.
        """
        if self.network is None:
            raise ModelError(f"image model {self.kind} is not fitted: run `streamad fit` first")
        return self.network

    def example_input(self, batch: int = 1) -> torch.Tensor:
        """A ``(batch, h, w, 3) uint8`` zero tensor at the input size (for tracing / export)."""
        h, w = self.input_size
        return torch.zeros(batch, h, w, 3, dtype=torch.uint8)

    # -- inference -------------------------------------------------------------------------------------------
    def predict(self, images: np.ndarray) -> ImagePrediction:
        """Score a frame ``(H, W, 3)`` or a batch ``(N, H, W, 3)`` of uint8 RGB frames (any size) with torch.

        Raises:
            ModelError: not fitted. ValueError: not uint8 RGB.
        """
        net = self.require_network()
        batch = torch.from_numpy(as_batch(images))
        with torch.inference_mode():
            amap, score = net(batch)
        return ImagePrediction(amap.numpy(), score.numpy())

    def predict_set(self, images: ImageSet, batch_size: int | None = None) -> ImagePrediction:
        """Score every image of ``images`` (at its stored size); maps ``(N, 1, h, w)``, scores ``(N,)``."""
        maps, scores = [], []
        for b in images.batches(batch_size or self.config.batch_size):
            p = self.predict(b.images)
            maps.append(p.anomaly_map)
            scores.append(p.score)
        h, w = self.input_size
        if not maps:
            return ImagePrediction(np.zeros((0, 1, h, w), np.float32), np.zeros((0,), np.float32))
        return ImagePrediction(np.concatenate(maps), np.concatenate(scores))

    def validation_metric(self, validation: ImageSet) -> float:
        """Early-stopping metric of gradient-trained models on a labelled set, higher = better: image AUROC when
        the labels hold both classes, else pixel AUROC over the images that have masks.

        Raises:
            ValueError: the set has neither both image labels nor masks with both classes.
        """
        from streamad.metric_math import auroc, pixel_auroc

        pred = self.predict_set(validation)
        labels = np.asarray(validation.labels)
        known = labels >= 0
        if known.any() and 0 < labels[known].sum() < known.sum():
            return auroc(pred.score[known], labels[known])
        has = np.asarray(validation.has_mask, bool)
        masks = np.concatenate([b.masks for b in validation.batches(64)])[has]
        return pixel_auroc(pred.anomaly_map[has, 0], masks)

    # -- to implement ---------------------------------------------------------------------------------------
    @abc.abstractmethod
    def fit(self, train: ImageSet, validation: ImageSet | None = None, progress: bool = False) -> dict[str, Any]:
        """Fit on the normal images of ``train`` and build :attr:`network`.

        Args:
            train: training images at :attr:`input_size`.
            validation: labelled images for early stopping (gradient-trained models only; memory-bank models
                ignore it).
            progress: show tqdm progress bars (feature extraction, coreset search, epochs with the loss).

        Returns:
            JSON-serialisable fit statistics for ``model.json`` (e.g. memory-bank size, epochs, seconds).

        Raises:
            ValueError: too few training images for the model.
        """

    @abc.abstractmethod
    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted parameters: ``(JSON params, named arrays)`` without the backbone weights."""

    @abc.abstractmethod
    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        """The inference network from :meth:`_fitted_state`'s output.

        Raises:
            ModelError: arrays missing or of the wrong shape.
        """

    # -- persistence (streamad.models.store) ---------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(JSON params, named arrays)`` that :meth:`load_state` restores exactly; the backbone's weights are not
        included (they come from the package or the configured file, checked by SHA-256 on load).

        Raises:
            ModelError: not fitted.
        """
        self.require_network()
        params, arrays = self._fitted_state()
        return {**params, **self.backbone_identity()}, arrays

    def load_state(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Rebuild the fitted network.

        Raises:
            ModelError: the backbone weights differ from those the model was fitted with, or arrays are missing
                or of the wrong shape.
        """
        want = params.get("weights_sha256")
        have = self.backbone_identity()["weights_sha256"]
        if want is not None and want != have:
            raise ModelError(f"image model {self.kind}: the backbone weights ({self.config.weights or 'packaged'}) "
                             f"differ from those it was fitted with (sha256 {have[:12]} != {str(want)[:12]}); "
                             f"refit or point weights to the original file")
        try:
            self.network = self._build_network(params, arrays).eval()
        except KeyError as exc:
            raise ModelError(f"image model {self.kind}: weights.npz lacks array {exc.args[0]!r}; refit") from None
