"""Evaluation report of an image model on an image dataset: image- and pixel-level metrics with anomalib's
``image_`` / ``pixel_`` prefixes (``image_AUROC``, ``pixel_AUROC`` ... in lower case).

* Image level (one score per image, all streams together): AUROC, AUPR and F1 (precision, recall) of the
  normalised image score at the decision point 0.5 (anomalib evaluates after min-max normalisation).
* Pixel level (every pixel of every image with ground truth, at the model's input size; masks are resized with
  nearest neighbours, normal images without a mask count as all normal): AUROC, AUPR, AUPRO (``fpr_limit`` 0.3) of
  the raw anomaly maps (normalisation is monotonic, so the curves are the same) and F1 at the pixel threshold.

Metrics come from :mod:`streamad.metric_math` and, for the pixels, :func:`~streamad.metric_math.pixel_metrics`
(the same definitions from one sort). :class:`ImageRecorder` collects the scored frames of a run
(``ImageScores`` of the ``image_model`` operator), keeping each map, its mask and a thumbnail for the plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from streamad.frames import Scores
from streamad.metric_math import frame_metrics, pixel_metrics
from streamad.models.image.preprocess import resize_mask

__all__ = ["ImageRecord", "ImageRecorder", "ImageEvalReport", "build_image_report"]


@dataclass
class ImageRecord:
    """One scored, labelled image.

    Attributes:
        stream_id, index: where it came from. label: 0 normal / 1 anomalous.
        raw_score: the model's score. score: after smoothing. normalized: after min-max normalisation (0-1).
        anomaly_map: ``(h, w) float32`` raw map. mask: ``(h, w) bool`` ground truth at the map's size, or
            ``None`` (an anomalous image without mask: left out of the pixel metrics).
        thumbnail: ``(h, w, 3) uint8`` the frame at the map's size (for plots).
    """

    stream_id: str
    index: int
    label: int
    raw_score: float
    score: float
    normalized: float
    anomaly_map: np.ndarray
    mask: np.ndarray | None
    thumbnail: np.ndarray


class ImageRecorder:
    """Pipeline consumer keeping an :class:`ImageRecord` per labelled image-model :class:`Scores`."""

    def __init__(self) -> None:
        self.records: list[ImageRecord] = []
        self.unlabelled = 0

    def __call__(self, msg: Any) -> None:
        amap = getattr(msg, "anomaly_map", None)
        if not isinstance(msg, Scores) or amap is None:
            return
        if msg.label is None:
            self.unlabelled += 1
            return
        mask = getattr(msg, "mask", None)
        if mask is not None:
            mask = resize_mask(mask, amap.shape)
        elif msg.label == 0:
            mask = np.zeros(amap.shape, bool)
        image = getattr(msg, "image", None)
        h, w = amap.shape
        thumb = (cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA) if image is not None
                 else np.zeros((h, w, 3), np.uint8))
        norm = msg.normalized if msg.normalized is not None else msg.score
        self.records.append(ImageRecord(msg.stream_id, msg.index, int(msg.label), float(msg.raw_score),
                                        float(msg.score), float(norm), np.asarray(amap, np.float32), mask, thumb))


@dataclass
class ImageEvalReport:
    """Image- and pixel-level evaluation of a run (see the module doc).

    Attributes:
        image_auroc, image_aupr, image_f1, image_precision, image_recall: image level.
        pixel_auroc, pixel_aupr, pixel_aupro, pixel_f1: pixel level (``None`` without masks of both classes).
        frames: images evaluated. fps: measured throughput (frames per second). pixel_images: images with masks.
        image_threshold: 0.5 (normalised). pixel_threshold: raw pixel threshold.
        per_stream: per stream id (a class of an image dataset): ``frames``, ``anomalous_frames``,
            ``predicted_anomalous_frames``, ``mean_score`` (normalised), and, for a stream of anomalous images,
            ``image_auroc`` and ``pixel_auroc`` of its images together with every normal test image (the usual
            per-defect-type figures; ``None`` for normal streams).
    """

    image_auroc: float
    image_aupr: float
    image_f1: float
    frames: int
    fps: float
    image_precision: float
    image_recall: float
    pixel_auroc: float | None
    pixel_aupr: float | None
    pixel_aupro: float | None
    pixel_f1: float | None
    pixel_images: int
    image_threshold: float
    pixel_threshold: float
    per_stream: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable dict; the headline keys first (``image_auroc``, ``image_aupr``, ``image_f1``,
        ``frames``, ``fps``, ``pixel_auroc``, ``pixel_aupro``), as the frame report's (``frame_auroc`` ...)."""
        keys = ("image_auroc", "image_aupr", "image_f1", "frames", "fps", "pixel_auroc", "pixel_aupro", "pixel_aupr",
                "pixel_f1", "image_precision", "image_recall", "pixel_images", "image_threshold", "pixel_threshold")
        out: dict[str, Any] = {k: getattr(self, k) for k in keys}
        out["per_stream"] = {k: dict(v) for k, v in self.per_stream.items()}
        return out

    def format_table(self) -> str:
        """A plain-text summary: image and pixel metrics, then one line per stream (class)."""

        def num(v: float | None, width: int = 10) -> str:
            return f"{'-' if v is None else f'{v:.4f}':>{width}}"

        metric_rows = [("AUROC", self.image_auroc, self.pixel_auroc), ("AUPR", self.image_aupr, self.pixel_aupr),
                       ("F1", self.image_f1, self.pixel_f1), ("AUPRO (fpr <= 0.3)", None, self.pixel_aupro)]
        lines = [f"{'':24}{'image':>10}{'pixel':>10}"]
        lines += [f"{label:24}{num(a)}{num(b)}" for label, a, b in metric_rows]
        lines += [f"{'images':24}{self.frames:>10d}{self.pixel_images:>10d}", f"{'fps':24}{self.fps:>10.1f}"]
        if not self.per_stream:
            return "\n".join(lines)
        width = max(26, *(len(k) for k in self.per_stream)) + 2
        heads = ("images", "anomalous", "predicted", "mean score", "image AUROC", "pixel AUROC")
        lines += ["", f"{'stream (+ normal images)':{width}}" + "".join(f"{h:>13}" for h in heads)]
        for name, c in self.per_stream.items():
            counts = (c["frames"], c["anomalous_frames"], c["predicted_anomalous_frames"])
            lines.append(f"{name:{width}}" + "".join(f"{v:>13d}" for v in counts) + f"{c['mean_score']:>13.4f}"
                         + num(c["image_auroc"], 13) + num(c["pixel_auroc"], 13))
        return "\n".join(lines)


def _pixel_f1(maps: np.ndarray, masks: np.ndarray, threshold: float) -> float:
    pred = maps >= threshold
    tp = float(np.count_nonzero(pred & masks))
    denom = float(np.count_nonzero(pred)) + float(np.count_nonzero(masks))
    return 2 * tp / denom if denom else 0.0


def _both(masks: np.ndarray) -> bool:
    n = int(masks.sum())
    return 0 < n < masks.size


def build_image_report(records: list[ImageRecord], pixel_threshold: float, fps: float) -> ImageEvalReport:
    """Evaluate scored images.

    Args:
        records: one per image (:class:`ImageRecorder`). pixel_threshold: raw pixel threshold.
        fps: measured throughput, frames per second.

    Raises:
        ValueError: no records, non-finite scores, or the image labels hold one class only.
    """
    if not records:
        raise ValueError("build_image_report: no scored image to evaluate")
    if not (math.isfinite(float(fps)) and fps >= 0):
        raise ValueError(f"build_image_report: fps must be a finite number >= 0, got {fps!r}")
    seen: set[tuple[str, int]] = set()
    for r in records:
        if (r.stream_id, r.index) in seen:
            raise ValueError(f"stream {r.stream_id!r}: image {r.index} was scored twice")
        seen.add((r.stream_id, r.index))
    scores = np.array([r.normalized for r in records], np.float64)
    labels = np.array([r.label for r in records], np.int64)
    img = frame_metrics(scores, labels, 0.5)
    with_mask = [r for r in records if r.mask is not None]
    pix: dict[str, float | None] = {"auroc": None, "aupr": None, "aupro": None, "f1": None}
    if with_mask:
        maps = np.stack([r.anomaly_map for r in with_mask])
        masks = np.stack([r.mask for r in with_mask])  # type: ignore[misc]
        if _both(masks):
            pix = {**pixel_metrics(maps, masks, fpr_limit=0.3), "f1": _pixel_f1(maps, masks, pixel_threshold)}
    per: dict[str, dict[str, Any]] = {}
    normals = [r for r in records if r.label == 0]
    for sid in dict.fromkeys(r.stream_id for r in records):
        rs = [r for r in records if r.stream_id == sid]
        entry: dict[str, Any] = {
            "frames": len(rs), "anomalous_frames": int(sum(r.label for r in rs)),
            "predicted_anomalous_frames": int(sum(r.normalized >= 0.5 for r in rs)),
            "mean_score": float(np.mean([r.normalized for r in rs])), "image_auroc": None, "pixel_auroc": None,
        }
        if entry["anomalous_frames"] and normals:  # this class against the normal test images
            both = [r for r in rs if r.label == 1] + normals
            entry["image_auroc"] = frame_metrics(np.array([r.normalized for r in both]),
                                                 np.array([r.label for r in both]), 0.5)["auroc"]
            ms = [r for r in both if r.mask is not None]
            m = np.stack([r.mask for r in ms]) if ms else np.zeros((0,), bool)  # type: ignore[misc]
            if ms and _both(m):
                entry["pixel_auroc"] = pixel_metrics(np.stack([r.anomaly_map for r in ms]), m,
                                                     with_aupro=False)["auroc"]
        per[sid] = entry
    return ImageEvalReport(
        image_auroc=img["auroc"], image_aupr=img["aupr"], image_f1=img["f1"], frames=len(records), fps=float(fps),
        image_precision=img["precision"], image_recall=img["recall"], pixel_auroc=pix["auroc"],
        pixel_aupr=pix["aupr"], pixel_aupro=pix["aupro"], pixel_f1=pix["f1"], pixel_images=len(with_mask),
        image_threshold=0.5, pixel_threshold=float(pixel_threshold), per_stream=per)
