"""What ``streamad fit`` fits: the model of the pipeline's model-holding operator, through one protocol.

An operator class that holds a fitted model sets ``holds_model = True`` and offers ``fitter(config, ctx)``
returning a :class:`ModelFitter`: what to collect from the messages that reach it while the training streams run,
how to fit, what to share while the validation streams are scored, and how to turn those scores into the
post-processing statistics. The ``score`` operator (video models) predates the hook; :class:`ClipFitter` is its
fitter. :func:`streamad.runtime.jobs.fit` drives either the same way.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from streamad.errors import ConfigError
from streamad.frames import Clip, Scores
from streamad.models.components.thresholds import f1_adaptive_threshold
from streamad.operators.video_model import ModelHandle
from streamad.parts import BuildContext, PartConfig
from streamad.registry import VIDEO_MODELS, OPERATORS

__all__ = ["ModelFitter", "ClipFitter", "model_operator", "fitter_for"]


class ModelFitter(Protocol):
    """How one model-holding operator is fitted.

    Attributes:
        needs_validation: the fit itself needs the validation streams (gradient-trained image models stop early on
            them); they are then collected with :meth:`collect_validation` before :meth:`fit`.
        samples: training samples collected so far (clips or frames).
    """

    needs_validation: bool

    @property
    def samples(self) -> int: ...

    def collect(self, msg: Any) -> int:
        """A message leaving the operators before the model operator (training streams); returns frames seen."""

    def collect_validation(self, msg: Any) -> int:
        """The same for the validation streams (only when :attr:`needs_validation`)."""

    def fit(self, progress: bool) -> tuple[Any, dict[str, Any]]:
        """Fit; returns the model and JSON fit statistics for ``model.json``. Raises ValueError on no data."""

    def handle(self, model: Any) -> Any:
        """What the model operator shares (``ctx.shared["model"]``) while the validation streams are scored."""

    def observe(self, msg: Any) -> None:
        """A scored validation message (up to the ``threshold`` operator)."""

    def postprocess(self, method: str, value: float | None, where: str) -> dict[str, Any]:
        """``{"min", "max", "image_threshold", ..., "frames"}`` from what :meth:`observe` saw.

        Raises:
            ConfigError: unlabelled frames for ``f1_adaptive``. ValueError: nothing observed, one class only.
        """

    def close(self) -> None:
        """Release what was collected."""


class ClipFitter:
    """Fitter of the ``score`` operator: a video model fitted on the training clips' region features, grouped by
    video (as AI-VAD groups by video path); frame scores give min / max and the image threshold."""

    needs_validation = False

    def __init__(self, config: PartConfig) -> None:
        model_cfg = config.model  # type: ignore[attr-defined]
        self.model = VIDEO_MODELS.get(model_cfg.kind)(model_cfg)
        self.features: list[dict[str, np.ndarray]] = []
        self.groups: list[str] = []
        self.keys: list[tuple[str, int]] = []  # (stream id, target frame index) of each collected clip
        self.scores: list[float] = []
        self.labels: list[int] = []

    @property
    def samples(self) -> int:
        return len(self.features)

    def collect(self, msg: Any) -> int:
        if not isinstance(msg, Clip):
            return 0
        self.features.append(dict(msg.features))
        self.groups.append(msg.target.video or msg.stream_id)
        self.keys.append((msg.stream_id, msg.target.index))
        return 1 + len(msg.extra_targets)

    def collect_validation(self, msg: Any) -> int:
        return 0

    def fit(self, progress: bool) -> tuple[Any, dict[str, Any]]:
        # The training streams run concurrently, so clips arrive in an order that varies from run to run; the
        # estimators (GMM initialisation, k-center start) depend on row order, so fit in (stream, frame) order.
        order = sorted(range(len(self.keys)), key=self.keys.__getitem__)
        self.model.fit([self.features[i] for i in order], [self.groups[i] for i in order])
        regions = int(sum(len(next(iter(f.values()))) if f else 0 for f in self.features))
        return self.model, {"train_clips": len(self.features), "train_regions": regions}

    def handle(self, model: Any) -> ModelHandle:
        return ModelHandle(model, model.kind, model.version, {})

    def observe(self, msg: Any) -> None:
        if isinstance(msg, Scores):
            self.scores.append(float(msg.score))
            self.labels.append(-1 if msg.label is None else int(msg.label))

    def postprocess(self, method: str, value: float | None, where: str) -> dict[str, Any]:
        if not self.scores:
            raise ValueError(f"{where}: no frame was scored, so no min-max statistics can be fitted")
        scores = np.array(self.scores, np.float64)
        if method == "manual":
            threshold = float(value)  # type: ignore[arg-type]  (checked by the fit job)
        else:
            labels = np.array(self.labels)
            if (labels < 0).any():
                raise ConfigError(f"{where}: some validation frames have no ground-truth label; f1_adaptive needs "
                                  f"a labelled split")
            threshold = f1_adaptive_threshold(scores, labels)
        return {"min": float(scores.min()), "max": float(scores.max()), "image_threshold": threshold,
                "threshold_method": method, "statistics_from": where, "frames": int(len(scores))}

    def close(self) -> None:
        self.features.clear()
        self.keys.clear()


def model_operator(operators: Sequence[PartConfig]) -> int | None:
    """Index of the first operator that holds the pipeline's model (``score``, ``image_model``), or ``None``."""
    for i, op in enumerate(operators):
        if getattr(OPERATORS.get(op.kind), "holds_model", False):
            return i
    return None


def fitter_for(config: PartConfig, ctx: BuildContext) -> ModelFitter:
    """The fitter of a model-holding operator config."""
    cls = OPERATORS.get(config.kind)
    hook = getattr(cls, "fitter", None)
    if hook is not None:
        return hook(config, ctx)
    return ClipFitter(config)
