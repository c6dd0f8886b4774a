"""One report path for every labelled run (``streamad eval``, and ``streamad serve`` on labelled streams).

:class:`Evaluation` is the pipeline consumer that records every labelled scored frame; :meth:`Evaluation.report`
builds the report the data calls for:

* video streams (clips of a video, frames in order): frame-level AUROC, AUPR and F1 of the smoothed and raw frame
  scores at the image threshold, per-clip figures and timelines (:mod:`streamad.eval.report`);
* image datasets (``image_dataset`` sources: unordered images with masks): image- and pixel-level AUROC, AUPR,
  F1 and pixel AUPRO (:mod:`streamad.eval.image_report`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streamad.eval.false_alarms import count_false_alarms
from streamad.eval.image_report import ImageEvalReport, ImageRecorder, build_image_report
from streamad.eval.report import EvalReport, build_report, write_plots
from streamad.frames import Scores
from streamad.metric_math import f1_adaptive_threshold, frame_metrics
from streamad.models.label_free import AlertReplay
from streamad.models.postprocess import PostProcess

__all__ = ["Evaluation"]


class Evaluation:
    """Records the labelled :class:`~streamad.frames.Scores` of a run, then reports them.

    Args:
        images: the streams are image datasets: keep anomaly maps and masks for image- and pixel-level metrics.
        replay: the pipeline's alert operator settings (video streams): the report adds false alarms per hour at
            the model's threshold and at the F1-optimal one; ``None`` = the pipeline raises no alerts.

    Attributes:
        records: video streams: one ``{"stream_id", "index", "raw_score", "score", "label"}`` per labelled frame.
        images: image datasets: the :class:`~streamad.eval.image_report.ImageRecorder`, else ``None``.
        unlabelled: scored frames without ground truth (left out).
    """

    def __init__(self, images: bool = False, replay: AlertReplay | None = None) -> None:
        self.images = ImageRecorder() if images else None
        self.replay = replay
        self.records: list[dict[str, Any]] = []
        self.unlabelled = 0

    def __call__(self, msg: Any) -> None:
        if not isinstance(msg, Scores):
            return
        if self.images is not None:
            self.images(msg)
            return
        if msg.label is None:
            self.unlabelled += 1
            return
        self.records.append({"stream_id": msg.stream_id, "index": msg.index, "raw_score": msg.raw_score,
                             "score": msg.score, "label": msg.label, "pts": msg.pts})

    def __len__(self) -> int:
        return len(self.images.records) if self.images is not None else len(self.records)

    @property
    def both_classes(self) -> bool:
        """The labels recorded hold normal and anomalous frames (a report can be built)."""
        labels = ({r.label for r in self.images.records} if self.images is not None
                  else {r["label"] for r in self.records})
        return labels == {0, 1}

    def report(self, post: PostProcess | None, fps: float, plots_dir: Path | None = None
               ) -> EvalReport | ImageEvalReport:
        """The run's report (module doc), its plots written to ``plots_dir`` when given.

        Args:
            post: the post-processing the run applied (its thresholds, with the pipeline's overrides); ``None``
                when the pipeline normalises nothing (the frame report then has no threshold: NaN).
            fps: measured throughput, frames per second.

        Raises:
            ValueError: no labelled frame was recorded, or the labels hold one class only.
        """
        if len(self) == 0:
            raise ValueError("no labelled frame was scored: eval needs streams with ground truth (a dataset test "
                             "split)")
        if self.images is not None:
            if post is None:
                raise ValueError("image metrics need the model's post-processing (min, max, pixel threshold)")
            recs = sorted(self.images.records, key=lambda r: (r.stream_id, r.index))
            if plots_dir is not None:
                from streamad.eval.image_plots import write_image_plots  # matplotlib only when plotting

                write_image_plots(recs, post.region_threshold, post.min, post.max, plots_dir)
            return build_image_report(recs, post.region_threshold, fps)
        threshold = post.image_threshold if post is not None else float("nan")
        recs = sorted(self.records, key=lambda r: (r["stream_id"], r["index"]))
        report = build_report(recs, threshold, fps)
        if post is not None and self.replay is not None:
            report.operating_points = self._operating_points(recs, post, self.replay)
        if plots_dir is not None:
            write_plots(recs, threshold, plots_dir)
        return report

    @staticmethod
    def _operating_points(recs: list[dict[str, Any]], post: PostProcess, replay: AlertReplay
                          ) -> dict[str, dict[str, Any]]:
        """F1 and replayed false alarms per hour at the model's threshold and at the F1-optimal one."""
        score = np.array([r["score"] for r in recs], np.float64)
        label = np.array([r["label"] for r in recs], np.int64)
        shift = (replay.threshold - 0.5) * (post.max - post.min)  # the alert's decision point above the threshold
        points = {}
        for name, t in (("model", post.image_threshold), ("f1_optimal", f1_adaptive_threshold(score, label))):
            alarms = count_false_alarms(recs, t + shift, replay)
            points[name] = {"threshold": float(t), "f1": frame_metrics(score, label, t)["f1"],
                            "events": alarms.events, "false_alarms_per_hour": round(alarms.per_hour, 3)}
        points["model"]["method"] = post.threshold_method
        return points
