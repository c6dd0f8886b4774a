"""Evaluation report of a scored, labelled run: frame metrics (raw and smoothed), per-clip figures and plots.

The input is one record per scored frame: ``(stream_id, index, raw_score, score, label)`` where ``raw_score`` is
the model's frame score and ``score`` the score after temporal smoothing (equal to ``raw_score`` without a
smoothing operator). Tuples, dicts with those keys, and objects with those attributes (e.g.
:class:`streamad.frames.Scores`) are accepted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamad.metric_math import frame_metrics

__all__ = ["FrameRecord", "as_records", "group_by_stream", "EvalReport", "build_report", "write_plots",
           "plot_file_name"]

_FIELDS = ("stream_id", "index", "raw_score", "score", "label")


@dataclass(frozen=True)
class FrameRecord:
    """One scored frame.

    Attributes:
        stream_id: the stream (clip), e.g. ``ped2/Test001``.
        index: 0-based frame index in the stream.
        raw_score: the model's raw frame score. score: the smoothed score (threshold units).
        label: ground truth 0 normal / 1 anomalous.
    """

    stream_id: str
    index: int
    raw_score: float
    score: float
    label: int


def _record(item: Any, pos: int) -> FrameRecord:
    if isinstance(item, Mapping):
        missing = [k for k in _FIELDS if k not in item]
        if missing:
            raise ValueError(f"record {pos}: missing keys {missing} (expected {list(_FIELDS)})")
        values = [item[k] for k in _FIELDS]
    elif isinstance(item, (tuple, list)):
        if len(item) != len(_FIELDS):
            raise ValueError(f"record {pos}: expected a tuple {_FIELDS}, got {len(item)} items")
        values = list(item)
    elif all(hasattr(item, k) for k in _FIELDS):
        values = [getattr(item, k) for k in _FIELDS]
    else:
        raise ValueError(f"record {pos}: expected a tuple, dict or object with {_FIELDS}, got {type(item).__name__}")
    stream_id, index, raw, score, label = values
    where = f"record {pos} (stream {stream_id!r}, frame {index})"
    if label is None:
        raise ValueError(f"{where}: no ground-truth label; evaluation needs labelled streams")
    if label not in (0, 1):
        raise ValueError(f"{where}: label must be 0 or 1, got {label!r}")
    try:
        rec = FrameRecord(str(stream_id), int(index), float(raw), float(score), int(label))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: index must be an int and scores numbers ({exc})") from exc
    if not (math.isfinite(rec.raw_score) and math.isfinite(rec.score)):
        raise ValueError(f"{where}: scores must be finite, got raw_score={rec.raw_score}, score={rec.score}")
    return rec


def as_records(records: Iterable[Any]) -> list[FrameRecord]:
    """Convert tuples / dicts / objects to :class:`FrameRecord` s, checking each.

    Raises:
        ValueError: a record lacks a field, has no label (``None``), a label other than 0/1, or a non-finite
            score; or a ``(stream_id, index)`` pair appears twice. Messages name the record, stream and frame.
    """
    out = [_record(r, i) for i, r in enumerate(records)]
    seen: set[tuple[str, int]] = set()
    for r in out:
        key = (r.stream_id, r.index)
        if key in seen:
            raise ValueError(f"stream {r.stream_id!r}: frame {r.index} was scored twice")
        seen.add(key)
    return out


def group_by_stream(records: Iterable[FrameRecord]) -> dict[str, list[FrameRecord]]:
    """Records per stream id (in order of first appearance), each list sorted by frame index."""
    groups: dict[str, list[FrameRecord]] = {}
    for r in records:
        groups.setdefault(r.stream_id, []).append(r)
    return {k: sorted(v, key=lambda r: r.index) for k, v in groups.items()}


def _columns(records: list[FrameRecord]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    idx = np.array([r.index for r in records], dtype=np.int64)
    raw = np.array([r.raw_score for r in records], dtype=np.float64)
    score = np.array([r.score for r in records], dtype=np.float64)
    label = np.array([r.label for r in records], dtype=np.int64)
    return idx, raw, score, label


def _clip_summary(records: list[FrameRecord], threshold: float) -> dict[str, Any]:
    _, _, score, label = _columns(records)
    both = 0 < int(label.sum()) < label.size
    metrics = frame_metrics(score, label, threshold) if both else None
    return {
        "frames": int(label.size),
        "anomalous_frames": int(label.sum()),
        "predicted_anomalous_frames": int((score >= threshold).sum()),
        "max_score": float(score.max()),
        "auroc": metrics["auroc"] if metrics else None,
        "aupr": metrics["aupr"] if metrics else None,
    }


@dataclass
class EvalReport:
    """Frame-level evaluation of a run (micro: all frames of all clips concatenated).

    Attributes:
        frame_auroc, frame_aupr: AUROC / AUPR (anomalib definitions) of the smoothed ``score``.
        f1, precision, recall: at ``score >= threshold``.
        frames: number of frames evaluated.
        fps: measured throughput of the run, frames per second (as given to :func:`build_report`).
        frame_auroc_raw, frame_aupr_raw: the same on the unsmoothed ``raw_score``.
        threshold: the decision threshold, in ``score`` units.
        per_clip: per stream id: ``frames``, ``anomalous_frames``, ``predicted_anomalous_frames``,
            ``max_score``, and ``auroc`` / ``aupr`` (``None`` when the clip holds one class only).
        operating_points: when the pipeline raises alerts: ``{"model": ..., "f1_optimal": ...}``, each
            ``{"threshold", "f1", "events", "false_alarms_per_hour"}`` at the model's threshold (with its
            ``method``) and at the F1-optimal one chosen on these labels (the oracle), so a label-free threshold is
            compared with the best a labelled one could do (:mod:`streamad.eval.false_alarms`).
    """

    frame_auroc: float
    frame_aupr: float
    f1: float
    frames: int
    fps: float
    frame_auroc_raw: float
    frame_aupr_raw: float
    precision: float
    recall: float
    threshold: float
    per_clip: dict[str, dict[str, Any]] = field(default_factory=dict)
    operating_points: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable dict: ``frame_auroc``, ``frame_aupr``, ``f1``, ``frames``, ``fps`` first, then
        ``frame_auroc_raw``, ``frame_aupr_raw``, ``precision``, ``recall``, ``threshold``, ``per_clip``."""
        return {
            "frame_auroc": self.frame_auroc,
            "frame_aupr": self.frame_aupr,
            "f1": self.f1,
            "frames": self.frames,
            "fps": self.fps,
            "frame_auroc_raw": self.frame_auroc_raw,
            "frame_aupr_raw": self.frame_aupr_raw,
            "precision": self.precision,
            "recall": self.recall,
            "threshold": self.threshold,
            "per_clip": {k: dict(v) for k, v in self.per_clip.items()},
            **({"operating_points": {k: dict(v) for k, v in self.operating_points.items()}}
               if self.operating_points else {}),
        }

    def format_table(self) -> str:
        """A plain-text summary for the console: headline metrics (smoothed vs raw), then one line per clip."""

        def num(v: float | None) -> str:
            return "   -  " if v is None else f"{v:.4f}"

        lines = [
            f"{'':24}{'smoothed':>10}{'raw':>10}",
            f"{'frame AUROC':24}{num(self.frame_auroc):>10}{num(self.frame_auroc_raw):>10}",
            f"{'frame AUPR':24}{num(self.frame_aupr):>10}{num(self.frame_aupr_raw):>10}",
            f"{f'F1 (score >= {self.threshold:.4g})':24}{num(self.f1):>10}",
            f"{'precision':24}{num(self.precision):>10}",
            f"{'recall':24}{num(self.recall):>10}",
            f"{'frames':24}{self.frames:>10d}",
            f"{'fps':24}{self.fps:>10.1f}",
        ]
        if self.operating_points:
            lines += ["", f"{'operating point':32}{'threshold':>12}{'F1':>8}{'events':>8}{'false alarms/h':>16}"]
            for name, op in self.operating_points.items():
                label = (f"model ({op['method']})" if name == "model" else "F1-optimal (oracle, test labels)")
                lines.append(f"{label:32}{op['threshold']:>12.4g}{op['f1']:>8.4f}{op['events']:>8d}"
                             f"{op['false_alarms_per_hour']:>16.2f}")
        if self.per_clip:
            width = max(12, *(len(k) for k in self.per_clip)) + 2
            lines += ["", f"{'clip':{width}}{'frames':>8}{'anomalous':>11}{'predicted':>11}{'AUROC':>9}{'AUPR':>9}"
                      f"{'max score':>11}"]
            for name, c in self.per_clip.items():
                lines.append(f"{name:{width}}{c['frames']:>8d}{c['anomalous_frames']:>11d}"
                             f"{c['predicted_anomalous_frames']:>11d}{num(c['auroc']):>9}{num(c['aupr']):>9}"
                             f"{c['max_score']:>11.4g}")
        return "\n".join(lines)


def build_report(records: Iterable[Any], threshold: float, fps: float) -> EvalReport:
    """Evaluate scored frames.

    Args:
        records: one per frame: ``(stream_id, index, raw_score, score, label)`` tuples, dicts or objects
            (see module doc). All frames are concatenated for the headline metrics; per-clip figures group by
            ``stream_id``.
        threshold: decision threshold in ``score`` units (0.5 for normalised scores).
        fps: measured throughput, frames per second (reported as is).

    Raises:
        ValueError: bad records (see :func:`as_records`), no records, ``fps`` negative or not finite, or the
            ground truth over all streams holds one class only.
    """
    recs = as_records(records)
    if not recs:
        raise ValueError("build_report: no scored frames to evaluate")
    if not (math.isfinite(float(fps)) and fps >= 0):
        raise ValueError(f"build_report: fps must be a finite number >= 0, got {fps!r}")
    _, raw, score, label = _columns(recs)
    smoothed = frame_metrics(score, label, threshold)
    raw_m = frame_metrics(raw, label, threshold)
    return EvalReport(
        frame_auroc=smoothed["auroc"],
        frame_aupr=smoothed["aupr"],
        f1=smoothed["f1"],
        frames=len(recs),
        fps=float(fps),
        frame_auroc_raw=raw_m["auroc"],
        frame_aupr_raw=raw_m["aupr"],
        precision=smoothed["precision"],
        recall=smoothed["recall"],
        threshold=float(threshold),
        per_clip={k: _clip_summary(v, threshold) for k, v in group_by_stream(recs).items()},
    )


def plot_file_name(stream_id: str) -> str:
    """File name of a clip's plot: the stream id with ``/`` (and ``\\``) replaced by ``_``, plus ``.png``."""
    return stream_id.replace("/", "_").replace("\\", "_") + ".png"


def write_plots(records: Iterable[Any], threshold: float, out_dir: str | Path) -> list[Path]:
    """Write ``roc.png`` (smoothed score, all frames) and one ``<stream id>.png`` timeline per clip.

    Args:
        records: as for :func:`build_report`.
        threshold: decision threshold in ``score`` units, drawn on every timeline.
        out_dir: folder for the PNGs (created if missing).

    Returns:
        The written paths, ``roc.png`` first.

    Raises:
        ValueError: bad records, or the ground truth holds one class only (no ROC curve).
    """
    from streamad.eval.plots import plot_clip_scores, plot_roc  # matplotlib only when plotting

    recs = as_records(records)
    if not recs:
        raise ValueError("write_plots: no scored frames to plot")
    out = Path(out_dir)
    _, _, score, label = _columns(recs)
    paths = [plot_roc(score, label, out / "roc.png", title=f"ROC ({len(recs)} frames)")]
    for name, clip in group_by_stream(recs).items():
        idx, raw, s, y = _columns(clip)
        paths.append(plot_clip_scores(idx, s, y, threshold, out / plot_file_name(name), title=name,
                                      raw_scores=raw))
    return paths
