"""PNG plots of an image-model evaluation: the image-level ROC curve and the worst cases with heat maps.

Worst cases: the anomalous images with the lowest normalised score (missed defects) and the normal images with the
highest (false alarms). Each PNG shows, left to right: the image, the ground-truth mask, the anomaly map as a heat
map over the image (normalised with the pixel threshold: 0.5 = threshold) and the predicted mask's outline
(``map >= pixel_threshold``) with the ground truth's, as anomalib's visualiser does (image | ground truth | heat map
| segmentation). Drawn with matplotlib's Agg canvas (no pyplot, no display), as :mod:`streamad.eval.plots`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from streamad.eval.image_report import ImageRecord
from streamad.eval.plots import _save, plot_roc
from streamad.eval.report import plot_file_name
from streamad.models.components.normalization import min_max_normalize

__all__ = ["plot_case", "write_image_plots"]


def plot_case(record: ImageRecord, pixel_threshold: float, min_val: float, max_val: float, path: str | Path,
              title: str = "") -> Path:
    """Write one image's PNG (image, ground truth, heat map, outlines).

    Args:
        record: the scored image. pixel_threshold, min_val, max_val: the model's post-processing (raw units).
        path: output ``.png`` (parents created). title: figure title.
    """
    heat = min_max_normalize(record.anomaly_map, pixel_threshold, min_val, max_val)
    pred = record.anomaly_map >= pixel_threshold
    gt = record.mask if record.mask is not None else np.zeros(pred.shape, bool)
    fig = Figure(figsize=(12, 3.4))
    axes = fig.subplots(1, 4)
    axes[0].imshow(record.thumbnail)
    axes[0].set_title("image")
    axes[1].imshow(gt, cmap="gray", vmin=0, vmax=1)
    axes[1].set_title("ground truth")
    axes[2].imshow(record.thumbnail)
    im = axes[2].imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    axes[2].set_title("anomaly map (0.5 = threshold)")
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.02)
    axes[3].imshow(record.thumbnail)
    if gt.any():
        axes[3].contour(gt, levels=[0.5], colors="lime", linewidths=1.0)
    if pred.any():
        axes[3].contour(pred, levels=[0.5], colors="red", linewidths=1.0)
    axes[3].set_title("predicted (red) / truth (green)")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title or f"{record.stream_id} #{record.index}: label {record.label}, score {record.normalized:.3f}")
    fig.tight_layout()
    return _save(fig, path)


def write_image_plots(records: list[ImageRecord], pixel_threshold: float, min_val: float, max_val: float,
                      out_dir: str | Path, worst: int = 8) -> list[Path]:
    """Write ``roc.png`` (image level, normalised scores) and the ``worst`` missed anomalies
    (``worst_missed_NN_<stream>_<index>.png``) and false alarms (``worst_false_alarm_NN_...``).

    Returns:
        The written paths, ``roc.png`` first.

    Raises:
        ValueError: no records, or the labels hold one class only (no ROC curve).
    """
    if not records:
        raise ValueError("write_image_plots: no scored image to plot")
    out = Path(out_dir)
    scores = np.array([r.normalized for r in records])
    labels = np.array([r.label for r in records])
    paths = [plot_roc(scores, labels, out / "roc.png", title=f"image ROC ({len(records)} images)")]
    missed = sorted((r for r in records if r.label == 1), key=lambda r: r.normalized)[:worst]
    false_alarms = sorted((r for r in records if r.label == 0), key=lambda r: -r.normalized)[:worst]
    for name, cases in (("worst_missed", missed), ("worst_false_alarm", false_alarms)):
        for k, r in enumerate(cases, 1):
            stem = plot_file_name(f"{r.stream_id}_{r.index}")
            paths.append(plot_case(r, pixel_threshold, min_val, max_val, out / f"{name}_{k:02d}_{stem}"))
    return paths
