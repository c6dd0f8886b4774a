"""How ``streamad fit`` fits a model-holding operator: one protocol for video and image models.

A model operator class (``video_model``, ``image_model``) sets ``holds_model = True`` and offers
``fitter(config, ctx)`` returning a :class:`ModelFitter`. The fit job drives every fitter the same way:

1. :meth:`ModelFitter.collect` receives every message leaving the operators before the model operator on the
   training streams (and :meth:`ModelFitter.collect_validation` those of the validation streams when
   :attr:`ModelFitter.needs_validation`);
2. :meth:`ModelFitter.fit` fits the model;
3. :meth:`ModelFitter.handle` is what the model operator shares while the validation streams are scored, and
   :meth:`ModelFitter.observe` sees each scored validation frame;
4. :meth:`ModelFitter.postprocess` returns the :class:`~streamad.models.postprocess.PostProcess`, fitted by the
   one :class:`~streamad.models.postprocess.PostProcessFitter` for every kind of model.
"""

from __future__ import annotations

import abc
from typing import Any

from streamad.frames import Scores
from streamad.models.handle import ModelHandle
from streamad.models.postprocess import PostProcess, PostProcessFitter

__all__ = ["ModelFitter"]


class ModelFitter(abc.ABC):
    """Fit state of one model (module doc).

    Attributes:
        needs_validation: the fit itself needs the validation streams (gradient-trained image models stop early on
            them); they are then collected with :meth:`collect_validation` before :meth:`fit`.
        calibration: accumulates the scored validation frames for :meth:`postprocess`.
        min_samples: fewest training samples :meth:`fit` can work with (the fit job refuses fewer, saying how
            many frames it read); sample_unit: what a sample is, for that message (``clips``, ``frames``).
    """

    needs_validation: bool = False
    min_samples: int = 1
    sample_unit: str = "samples"

    def __init__(self) -> None:
        self.calibration = PostProcessFitter()

    @property
    @abc.abstractmethod
    def samples(self) -> int:
        """Training samples collected so far (clips or frames)."""

    @abc.abstractmethod
    def collect(self, msg: Any) -> int:
        """A message leaving the operators before the model operator (training streams); returns frames seen."""

    def collect_validation(self, msg: Any) -> int:
        """The same for the validation streams (only when :attr:`needs_validation`). Default: ignored."""
        return 0

    @abc.abstractmethod
    def fit(self, progress: bool) -> tuple[Any, dict[str, Any]]:
        """Fit; returns the model and JSON fit statistics for ``model.json``.

        Raises:
            ValueError: nothing (or too little) was collected to fit on.
        """

    @abc.abstractmethod
    def handle(self, model: Any) -> ModelHandle:
        """What the model operator shares while the validation streams are scored (no post-processing yet)."""

    def observe(self, msg: Any) -> None:
        """A scored validation message (leaving the operators before ``threshold``): its smoothed raw score,
        label and, for image models, anomaly map and mask go to :attr:`calibration`."""
        if isinstance(msg, Scores):
            self.calibration.add(msg.score, msg.label, getattr(msg, "anomaly_map", None), getattr(msg, "mask", None),
                                 stream=msg.stream_id, pts=msg.pts)

    def postprocess(self, method: str, value: float | None, where: str, **label_free: Any) -> PostProcess:
        """The post-processing of the observed validation frames
        (:meth:`~streamad.models.postprocess.PostProcessFitter.fit`, ``label_free`` = its ``q``,
        ``events_per_hour``, ``replay``; raises what it raises)."""
        return self.calibration.fit(method, value, where, **label_free)

    def close(self) -> None:
        """Release what was collected. Default: nothing."""
