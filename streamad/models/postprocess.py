"""Post-processing of every model's raw scores, one value type and one fitting function for video and image
models alike (anomalib's post-processing: ``MinMax`` statistics, ``F1AdaptiveThreshold``, min-max normalisation).

* :class:`PostProcess` is what ``streamad fit`` fitted: ``min`` / ``max`` (raw units), the image threshold and,
  for image models, the pixel threshold. It is stored as ``model.json["postprocess"]``
  (:meth:`PostProcess.to_json` / :meth:`PostProcess.from_json`, used by :mod:`streamad.models.store`).
* :class:`PostProcessFitter` accumulates the scored validation frames (their smoothed raw score, label and, for
  image models, anomaly map and mask) and :meth:`PostProcessFitter.fit` returns the :class:`PostProcess`:

  - ``min`` / ``max`` over the frame scores and, when there are maps, the anomaly-map pixels too;
  - ``image_threshold``: F1-adaptive on the frame scores and labels, manual, or label-free on normal footage
    (``quantile``, ``false_alarm_rate``: :mod:`streamad.models.label_free`; then ``min`` / ``max`` come from the
    frames not labelled anomalous only);
  - ``pixel_threshold``: F1-adaptive on the anomaly-map pixels and ground-truth masks when masks with both classes
    were seen, else the image threshold (anomalib: "if pixel was never updated, pixel = image"); manual when the
    image threshold is manual.

Normalised score ``clip((x - t) / (max - min) + 0.5, 0, 1)``: 0.5 is the decision point; frame scores use the
image threshold, maps and region scores the pixel threshold (:meth:`PostProcess.region_threshold`).

Two departures, both for robustness and stated here: the F1-adaptive image threshold is moved to the midpoint
between the chosen score and the next lower validation score (the same F1 on the validation frames; anomalib's
threshold *is* a validation score, so float rounding between runtimes could flip that frame's label); and the pixel
threshold is chosen on every 4th row and column of each map (1/16 of the pixels; maps are blurred with sigma 4,
so neighbouring pixels are nearly equal), which keeps the precision-recall curve small.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamad.errors import ConfigError, ModelError
from streamad.metric_math import f1_adaptive_threshold
from streamad.models.label_free import AlertReplay, false_alarm_threshold, quantile_threshold
from streamad.models.components.normalization import MinMaxStats, min_max_normalize
from streamad.models.image.preprocess import resize_mask

__all__ = ["PostProcess", "PostProcessFitter", "separated_threshold", "PIXEL_STRIDE"]

PIXEL_STRIDE = 4


@dataclass(frozen=True)
class PostProcess:
    """Raw-score statistics fitted by ``streamad fit`` on the validation streams.

    Attributes:
        min, max: min-max normalisation statistics (raw model units).
        image_threshold: decision threshold of the frame score (raw units), manual or F1-adaptive.
        pixel_threshold: threshold of anomaly-map pixels and region scores (raw units, image models); ``None``:
            the image threshold.
        threshold_method: ``f1_adaptive``, ``manual``, ``quantile`` or ``false_alarm_rate``.
        statistics_from: which streams the statistics came from (``fit.validation`` or ``fit.train``).
        frames: validation frames the statistics were fitted on.
        pixel_threshold_from: how the pixel threshold was chosen (``image``, ``masks ...``), or ``None``.
        calibration: what a label-free method measured (``quantile``: ``q``; ``false_alarm_rate``:
            ``events_per_hour``, ``held_out_hours``, ``events_budget``, ``events_at_threshold``), else ``None``.
    """

    min: float
    max: float
    image_threshold: float
    pixel_threshold: float | None = None
    threshold_method: str = "manual"
    statistics_from: str = ""
    frames: int = 0
    pixel_threshold_from: str | None = None
    calibration: dict[str, float] | None = None

    @property
    def region_threshold(self) -> float:
        """The threshold of anomaly maps and region scores: the pixel threshold, else the image threshold."""
        return self.image_threshold if self.pixel_threshold is None else self.pixel_threshold

    def normalize(self, score: Any) -> Any:
        """Frame score(s) (raw) -> normalised 0-1 (0.5 = the image threshold); float in, float out."""
        return min_max_normalize(score, self.image_threshold, self.min, self.max)

    def normalize_regions(self, values: Any) -> Any:
        """Region scores or anomaly-map values (raw) -> normalised 0-1 with :attr:`region_threshold`."""
        return min_max_normalize(values, self.region_threshold, self.min, self.max)

    def with_overrides(self, image_threshold: float | None = None,
                       pixel_threshold: float | None = None) -> "PostProcess":
        """A copy with the thresholds a pipeline's operators override (``None`` keeps the fitted value)."""
        changes: dict[str, Any] = {}
        if image_threshold is not None:
            changes["image_threshold"] = float(image_threshold)
        if pixel_threshold is not None:
            changes["pixel_threshold"] = float(pixel_threshold)
        return dataclasses.replace(self, **changes) if changes else self

    def to_json(self) -> dict[str, Any]:
        """The ``model.json`` ``postprocess`` object (``None`` fields left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "PostProcess":
        """Read :meth:`to_json`'s output back.

        Args:
            data: the parsed ``postprocess`` object. where: the file it came from, for messages.

        Raises:
            ModelError: not an object, a required key (``min``, ``max``, ``image_threshold``) missing, or a
                number that is not finite.
        """
        if not isinstance(data, dict) or not data:
            raise ModelError(f"{where}: no 'postprocess' statistics; refit the model")
        missing = [k for k in ("min", "max", "image_threshold") if k not in data]
        if missing:
            raise ModelError(f"{where}: postprocess lacks {', '.join(map(repr, missing))}; refit the model")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for k in ("min", "max", "image_threshold", "pixel_threshold"):
            v = values.get(k)
            if v is None:
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ModelError(f"{where}: postprocess.{k} must be a finite number, got {v!r}")
            values[k] = float(v)
        if values.get("calibration") is not None and not isinstance(values["calibration"], dict):
            raise ModelError(f"{where}: postprocess.calibration must be an object, got {values['calibration']!r}")
        return cls(**values)


def separated_threshold(scores: np.ndarray, threshold: float) -> float:
    """The midpoint between ``threshold`` and the largest score below it (``threshold`` if none is below)."""
    below = scores[scores < threshold]
    return float((threshold + below.max()) / 2) if below.size else float(threshold)


class PostProcessFitter:
    """Accumulates the scored validation frames, then :meth:`fit` s the :class:`PostProcess` (module doc)."""

    def __init__(self) -> None:
        self.minmax = MinMaxStats()
        self.minmax_normal = MinMaxStats()  # frames not labelled anomalous (label-free methods)
        self.scores: list[float] = []
        self.labels: list[int] = []
        self.streams: list[str] = []
        self.pts: list[float] = []
        self._pix: list[np.ndarray] = []
        self._pix_labels: list[np.ndarray] = []

    def add(self, score: float, label: int | None, anomaly_map: np.ndarray | None = None,
            mask: np.ndarray | None = None, stream: str = "", pts: float | None = None) -> None:
        """One validation frame, in its stream's frame order.

        Args:
            score: its (smoothed) raw frame score. label: 0 / 1, or ``None`` when unknown.
            anomaly_map: ``(h, w) float32`` raw map (image models). mask: ``(H, W) bool`` ground truth.
            stream: its stream id. pts: its presentation time (seconds); with ``stream``, gives the footage's
                duration to ``false_alarm_rate``.
        """
        self.scores.append(float(score))
        self.labels.append(-1 if label is None else int(label))
        self.streams.append(stream)
        self.pts.append(float("nan") if pts is None else float(pts))
        self.minmax.update([score])
        normal = label != 1
        if normal:
            self.minmax_normal.update([score])
        if anomaly_map is not None:
            self.minmax.update(anomaly_map)
            if normal:
                self.minmax_normal.update(anomaly_map)
            m = mask if mask is not None else (np.zeros(anomaly_map.shape, bool) if label == 0 else None)
            if m is not None:
                m = resize_mask(m, anomaly_map.shape)
                s = PIXEL_STRIDE
                self._pix.append(np.asarray(anomaly_map[::s, ::s], np.float32).ravel())
                self._pix_labels.append(m[::s, ::s].ravel())

    def __len__(self) -> int:
        return len(self.scores)

    def fit(self, method: str, value: float | None, where: str, q: float | None = None,
            events_per_hour: float | None = None, replay: AlertReplay | None = None) -> PostProcess:
        """The post-processing of what :meth:`add` saw.

        Args:
            method: ``f1_adaptive``, ``manual``, ``quantile`` or ``false_alarm_rate``.
            value: the manual threshold (raw units; image and pixel).
            where: which streams these were (for messages and ``statistics_from``).
            q: the quantile (``quantile``). events_per_hour: the false-alarm budget (``false_alarm_rate``).
            replay: the alert operator's ``min_frames`` / ``cooldown_frames`` (``false_alarm_rate``).

        Raises:
            ValueError: no frames, a method without its setting, one class only for ``f1_adaptive``, held-out
                footage too short for ``false_alarm_rate`` (says how much is needed).
            ConfigError: ``f1_adaptive`` with unlabelled frames.
        """
        if not self.scores:
            raise ValueError(f"{where}: no frame was scored, so no min-max statistics can be fitted")
        scores = np.asarray(self.scores, np.float64)
        labels = np.asarray(self.labels)
        if method in ("quantile", "false_alarm_rate"):
            return self._fit_label_free(method, where, scores, labels, q, events_per_hour, replay)
        lo, hi = self.minmax.compute()
        common = {"min": lo, "max": hi, "threshold_method": method, "statistics_from": where,
                  "frames": int(scores.size)}
        if method == "manual":
            if value is None:
                raise ValueError(f"{where}: a manual threshold needs a value (raw units)")
            return PostProcess(image_threshold=float(value), pixel_threshold=float(value), **common)
        if (labels < 0).any():
            raise ConfigError(f"{where}: some validation frames have no ground-truth label; f1_adaptive needs a "
                              f"labelled split")
        image = separated_threshold(scores, f1_adaptive_threshold(scores, labels))
        pixel, source = image, "image"
        if self._pix:
            pix = np.concatenate(self._pix)
            pix_labels = np.concatenate(self._pix_labels)
            if 0 < int(pix_labels.sum()) < pix_labels.size:
                pixel = f1_adaptive_threshold(pix, pix_labels)
                source = f"masks (every {PIXEL_STRIDE}th row and column)"
        return PostProcess(image_threshold=image, pixel_threshold=pixel, pixel_threshold_from=source, **common)

    def _fit_label_free(self, method: str, where: str, scores: np.ndarray, labels: np.ndarray, q: float | None,
                        events_per_hour: float | None, replay: AlertReplay | None) -> PostProcess:
        normal = labels != 1
        if not normal.any():
            raise ValueError(f"{where}: every frame is labelled anomalous; {method} needs normal footage")
        lo, hi = self.minmax_normal.compute()
        common = {"min": lo, "max": hi, "threshold_method": method, "statistics_from": f"{where} (normal frames)",
                  "frames": int(normal.sum()), "pixel_threshold_from": "image"}
        if method == "quantile":
            if q is None:
                raise ValueError(f"{where}: the quantile method needs q")
            t = quantile_threshold(scores[normal], q)
            return PostProcess(image_threshold=t, calibration={"q": float(q)}, **common)
        if events_per_hour is None:
            raise ValueError(f"{where}: the false_alarm_rate method needs events_per_hour")
        by_stream: dict[str, list[int]] = {}
        for i, sid in enumerate(self.streams):
            if normal[i]:
                by_stream.setdefault(sid, []).append(i)
        pts = np.asarray(self.pts, np.float64)
        seconds = sum(_duration_s(pts[idx]) for idx in by_stream.values())
        replay = replay or AlertReplay()
        cal = false_alarm_threshold([scores[idx] for idx in by_stream.values()], seconds, float(events_per_hour),
                                    replay, where)
        # the replay found the alert's decision point in raw units; the image threshold sits where that point
        # normalises to the alert's threshold (normalised = (x - t) / (max - min) + 0.5)
        image = cal.threshold - (replay.threshold - 0.5) * (hi - lo)
        return PostProcess(image_threshold=image, calibration={
            "events_per_hour": float(events_per_hour), "held_out_hours": round(cal.hours, 6),
            "events_budget": cal.budget, "events_at_threshold": cal.events}, **common)


def _duration_s(pts: np.ndarray) -> float:
    """Seconds one stream's frames span: first to last presentation time plus one frame interval (0 when
    unknown)."""
    p = pts[np.isfinite(pts)]
    if p.size < 2:
        return 0.0
    step = float(np.median(np.diff(p)))
    return float(p.max() - p.min()) + max(step, 0.0)
