"""How ``streamad fit`` fits an image model from a pipeline (the ``image_model`` operator's fit hook).

The fit job (:func:`streamad.runtime.jobs.fit`) drives any model-holding operator through the same four steps;
for an image model:

1. :meth:`ImageFitter.collect` receives every training frame leaving the operators before ``image_model`` and
   stores it at the model's input size in an :class:`~streamad.models.image.image_set.ImageSet` (on disk);
   gradient-trained models also get the validation frames (:meth:`ImageFitter.collect_validation`).
2. :meth:`ImageFitter.fit` fits the model (feature extraction, memory bank / Gaussians / PCA, or training).
3. :meth:`ImageFitter.handle` is what the ``image_model`` operator shares while the validation streams are scored,
   and :meth:`ImageFitter.observe` sees each validation :class:`~streamad.frames.Scores`.
4. :meth:`ImageFitter.postprocess` returns min / max and the image and pixel thresholds
   (:class:`~streamad.models.image.calibration.Calibration`).
"""

from __future__ import annotations

from typing import Any, Callable

from streamad.frames import Clip, Frame, Scores
from streamad.models.image.base import ImageModel
from streamad.models.image.calibration import Calibration
from streamad.models.image.image_set import ImageSet

__all__ = ["ImageFitter"]


def _frames(msg: Any) -> list[Frame]:
    if isinstance(msg, Frame):
        return [msg]
    if isinstance(msg, Clip):
        return [msg.target]
    return []


class ImageFitter:
    """Fit state of one image model.

    Args:
        model: the unfitted model. make_handle: builds the operator's shared handle from the fitted model.

    Attributes:
        needs_validation: the model is gradient-trained and uses the validation frames in :meth:`fit`.
    """

    def __init__(self, model: ImageModel, make_handle: Callable[[ImageModel], Any]) -> None:
        self.model = model
        self.make_handle = make_handle
        self.needs_validation = bool(model.trainable)
        self.train = ImageSet(model.input_size)
        self.validation = ImageSet(model.input_size) if self.needs_validation else None
        self.calibration = Calibration()

    @staticmethod
    def _store(target: ImageSet, msg: Any) -> int:
        n = 0
        for f in _frames(msg):
            target.append(f.image, f.label, f.mask, name=f"{f.stream_id}#{f.index}")
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
        return self.model, {"train_images": len(self.train), **stats}

    def handle(self, model: ImageModel) -> Any:
        """The shared handle the ``image_model`` operator uses while the validation streams are scored."""
        return self.make_handle(model)

    @property
    def samples(self) -> int:
        """Training frames collected."""
        return len(self.train)

    def observe(self, msg: Any) -> None:
        """A scored validation frame (image scores and maps go to the calibration)."""
        if isinstance(msg, Scores):
            self.calibration.add(msg.score, msg.label, getattr(msg, "anomaly_map", None), getattr(msg, "mask", None))

    def postprocess(self, method: str, value: float | None, where: str) -> dict[str, Any]:
        """The post-processing statistics (see :class:`~streamad.models.image.calibration.Calibration`)."""
        return self.calibration.compute(method, value, where)

    def close(self) -> None:
        """Delete the stored images."""
        self.train.close()
        if self.validation is not None:
            self.validation.close()
