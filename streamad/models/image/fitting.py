"""How ``streamad fit`` fits an image model: the ``image_model`` operator's
:class:`~streamad.models.fitting.ModelFitter`.

1. :meth:`ImageFitter.collect` receives every training frame leaving the operators before ``image_model`` and
   stores it at the model's input size in an :class:`~streamad.models.image.image_set.ImageSet` (on disk), or,
   with a :class:`~streamad.models.image.tiler.Tiler`, each of its tiles; gradient-trained models also get the
   validation frames (:meth:`ImageFitter.collect_validation`).
2. :meth:`ImageFitter.fit` fits the model (feature extraction, memory bank / Gaussians / PCA, or training).
3. :meth:`ImageFitter.handle` runs the fitted torch network while the validation streams are scored; the shared
   :meth:`~streamad.models.fitting.ModelFitter.observe` / ``postprocess`` give min / max and the image and pixel
   thresholds (:mod:`streamad.models.postprocess`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamad.frames import Clip, Frame
from streamad.models.fitting import ModelFitter
from streamad.models.handle import ModelHandle
from streamad.models.image.base import ImageModel
from streamad.models.image.image_set import ImageSet
from streamad.models.image.runner import TorchRunner
from streamad.models.image.tiler import Tiler

__all__ = ["ImageFitter"]


def _frames(msg: Any) -> list[Frame]:
    if isinstance(msg, Frame):
        return [msg]
    if isinstance(msg, Clip):
        return [msg.target]
    return []


class ImageFitter(ModelFitter):
    """Fit state of one image model.

    Args:
        model: the unfitted model. tiler: store each frame's tiles instead of the frame (a tile is labelled
            anomalous when its part of the frame's mask holds a defect pixel; without a mask, as its frame).

    Attributes:
        needs_validation: the model is gradient-trained and uses the validation frames in :meth:`fit`.
    """

    sample_unit = "frames"

    def __init__(self, model: ImageModel, tiler: Tiler | None = None) -> None:
        super().__init__()
        self.model = model
        self.tiler = tiler
        self.needs_validation = bool(model.trainable)
        self.train = ImageSet(model.input_size)
        self.validation = ImageSet(model.input_size) if self.needs_validation else None

    def _store(self, target: ImageSet, msg: Any) -> int:
        n = 0
        for f in _frames(msg):
            name = f"{f.stream_id}#{f.index}"
            if self.tiler is None:
                target.append(f.image, f.label, f.mask, name=name)
            else:
                masks = None if f.mask is None else self.tiler.tiles(np.asarray(f.mask))
                for k, tile in enumerate(self.tiler.tiles(f.image)):
                    label = f.label if masks is None else int(masks[k].any())
                    target.append(tile, label, None if masks is None else masks[k], name=f"{name}/tile{k}")
            n += 1
        return n

    def collect(self, msg: Any) -> int:
        """Store a training frame (a Frame, or a Clip's target); returns how many frames it held."""
        return self._store(self.train, msg)

    def collect_validation(self, msg: Any) -> int:
        """Store a validation frame for a gradient-trained model."""
        return self._store(self.validation, msg) if self.validation is not None else 0

    def fit(self, progress: bool) -> tuple[ImageModel, dict[str, Any]]:
        """Fit the model; returns it and its fit statistics (``train_images`` + the model's own).

        Raises:
            ValueError: no training frame arrived, or too few for the model.
        """
        if len(self.train) == 0:
            raise ValueError("no training frame reached the image_model operator: check fit.train")
        stats = self.model.fit(self.train, self.validation, progress=progress)
        tiling = {"tiler": None if self.tiler is None else self.tiler.config.identity()}
        return self.model, {"train_images": len(self.train), **tiling, **stats}

    def handle(self, model: ImageModel) -> ModelHandle:
        """The fitted model through its torch network, as the ``image_model`` operator shares it."""
        return ModelHandle(model, model.kind, model.version, runner=TorchRunner(model))

    @property
    def samples(self) -> int:
        """Training frames collected."""
        return len(self.train)

    def close(self) -> None:
        """Delete the stored images."""
        self.train.close()
        if self.validation is not None:
            self.validation.close()
