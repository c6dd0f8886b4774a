"""Evaluation metrics: frame-level AUROC / AUPR / F1 and pixel-level AUROC / AUPRO.

Definitions follow anomalib's ``anomalib.metrics`` (``AUROC``, ``AUPR``, ``F1Score``, ``AUPRO``), computed with
scikit-learn. Frame metrics are "micro": every frame of every clip concatenated into one list, the standard
protocol for UCSD Ped2 / Avenue / ShanghaiTech.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from sklearn.metrics import auc, precision_recall_curve, precision_recall_fscore_support, roc_auc_score, roc_curve

from streamad.models.components.thresholds import require_both_classes, validate_scores_labels

__all__ = ["auroc", "aupr", "frame_metrics", "pixel_auroc", "aupro"]

_BOTH = "AUROC/AUPR need both normal and anomalous frames in the ground truth"


def auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve (anomalib ``AUROC``).

    Example (anomalib's): scores ``[0.13, 0.26, 0.08, 0.92, 0.03]``, labels ``[0, 0, 1, 1, 0]`` -> ``0.6667``.

    Args:
        scores: ``(N,)`` float, higher = more anomalous. labels: ``(N,)`` int 0/1.

    Raises:
        ValueError: bad input, or the labels hold one class only (AUROC is undefined).
    """
    s, y = validate_scores_labels(scores, labels, "auroc")
    require_both_classes(y, "auroc", _BOTH)
    return float(roc_auc_score(y, s))


def aupr(scores: Any, labels: Any) -> float:
    """Area under the precision-recall curve, as anomalib's ``AUPR`` computes it.

    anomalib takes the torchmetrics precision-recall curve (one point per distinct score plus the final
    ``(recall 0, precision 1)`` point) and integrates it with the trapezoid rule after a *stable* sort by
    recall (``auc(recall, precision, reorder=True)``). Points that share a recall keep their order, so the
    result differs from both ``sklearn.metrics.average_precision_score`` and ``auc(recall, precision)`` on the
    unsorted curve. Example (anomalib's): labels ``[0,1,1,1,0,0,0,0,1,1]``, scores
    ``[0.59,0.35,0.72,0.33,0.73,0.81,0.30,0.05,0.04,0.48]`` -> ``0.4899`` (average precision gives 0.4610,
    the unsorted trapezoid 0.3899). Checked equal to torchmetrics 1.9 ``BinaryPrecisionRecallCurve`` +
    ``auc(reorder=True)`` on random data.

    A consequence of that definition (kept for comparability with anomalib): the curve keeps every threshold
    below the one that first reaches full recall, and the stable sort puts the lowest of them (precision =
    the anomalous fraction) first, so even a perfect ranking scores below 1 (scores ``[0.1, 0.2, 0.8, 0.9]``,
    labels ``[0, 0, 1, 1]`` -> 0.875). Use :func:`auroc` or ``sklearn.metrics.average_precision_score`` where
    that matters.

    Args:
        scores: ``(N,)`` float, higher = more anomalous. labels: ``(N,)`` int 0/1.

    Raises:
        ValueError: bad input, or the labels hold one class only.
    """
    s, y = validate_scores_labels(scores, labels, "aupr")
    require_both_classes(y, "aupr", _BOTH)
    precision, recall, _ = precision_recall_curve(y, s)
    order = np.argsort(recall, kind="stable")
    return float(auc(recall[order], precision[order]))


def frame_metrics(scores: Any, labels: Any, threshold: float) -> dict[str, float]:
    """Frame-level metrics over all frames concatenated (micro average).

    Args:
        scores: ``(N,)`` float frame scores (raw, smoothed or normalised: ``threshold`` must be in the same units).
        labels: ``(N,)`` int 0/1 frame ground truth.
        threshold: a frame is predicted anomalous when ``score >= threshold``.

    Returns:
        ``{"auroc", "aupr", "f1", "precision", "recall"}`` as floats; F1/precision/recall are 0.0 where
        undefined (no predicted positives), as scikit-learn's ``zero_division=0``.

    Raises:
        ValueError: bad input, or the labels hold one class only.
    """
    s, y = validate_scores_labels(scores, labels, "frame_metrics")
    require_both_classes(y, "frame_metrics", _BOTH)
    pred = (s >= float(threshold)).astype(np.int64)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, pred, average="binary", pos_label=1, zero_division=0
    )
    return {
        "auroc": auroc(s, y),
        "aupr": aupr(s, y),
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
    }


def _maps_masks(maps: Any, masks: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(maps, dtype=np.float64)
    g = np.asarray(masks)
    if m.ndim == 2 and g.ndim == 2:
        m, g = m[None], g[None]
    if m.ndim != 3 or m.shape != g.shape:
        raise ValueError(f"{what}: expected anomaly maps (N, H, W) float and masks (N, H, W) bool of the same "
                         f"shape, got {m.shape} and {g.shape}")
    s, y = validate_scores_labels(m, g, f"{what} (pixels)")
    return s.reshape(m.shape), y.reshape(m.shape).astype(bool)


def pixel_auroc(maps: Any, masks: Any) -> float:
    """Pixel-level AUROC over every pixel of every image (anomalib ``pixel_AUROC``).

    Args:
        maps: ``(N, H, W)`` (or ``(H, W)``) float anomaly maps, higher = more anomalous.
        masks: same shape, bool / 0-1 ground-truth pixel masks.

    Raises:
        ValueError: shapes differ, values are not finite / not 0-1, or the masks hold one class only.
    """
    s, y = _maps_masks(maps, masks, "pixel_auroc")
    return auroc(s.reshape(-1), y.reshape(-1))


def _label_regions(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of each mask, 8-connectivity within an image, never across images.

    Same as anomalib's ``connected_components_cpu`` (``cv2.connectedComponents``, labels unique over the batch).
    """
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    labelled, n = ndimage.label(masks, structure=structure)
    return labelled, int(n)


def aupro(maps: Any, masks: Any, fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit`` (anomalib ``AUPRO``).

    For each threshold t, PRO(t) is the mean over ground-truth regions (connected components of the masks,
    8-connected, per image) of the fraction of the region's pixels with ``map >= t``, and FPR(t) is the fraction
    of normal pixels with ``map >= t``. The PRO-vs-FPR curve is cut at ``fpr_limit`` (the last point linearly
    interpolated), integrated with the trapezoid rule and divided by ``fpr_limit``, so 1.0 is perfect and a
    constant or random map gives about ``fpr_limit / 2``.

    This is the exact curve (Bergmann et al., "The MVTec Anomaly Detection Dataset", IJCV 2021), obtained as a
    weighted ROC curve: each region pixel weighs ``1 / (regions * region size)``, so the weighted TPR is the mean
    per-region overlap. anomalib resamples each region's curve on a common index grid before averaging, an
    approximation: on random smooth maps its values were within 1e-3 of these.

    Args:
        maps: ``(N, H, W)`` (or ``(H, W)``) float anomaly maps, higher = more anomalous.
        masks: same shape, bool / 0-1 ground-truth pixel masks.
        fpr_limit: largest false positive rate integrated, in ``(0, 1]``.

    Returns:
        AUPRO in ``[0, 1]``.

    Raises:
        ValueError: bad shapes or values, ``fpr_limit`` out of range, no anomalous pixel or no normal pixel.
    """
    if not 0.0 < float(fpr_limit) <= 1.0:
        raise ValueError(f"aupro: fpr_limit must be in (0, 1], got {fpr_limit}")
    s, y = _maps_masks(maps, masks, "aupro")
    require_both_classes(y.reshape(-1), "aupro", "AUPRO needs anomalous regions and normal pixels in the masks")
    regions, n_regions = _label_regions(y)
    flat_regions = regions.reshape(-1)
    sizes = np.bincount(flat_regions, minlength=n_regions + 1).astype(np.float64)
    weights = np.ones(flat_regions.size, dtype=np.float64)
    inside = flat_regions > 0
    weights[inside] = 1.0 / (n_regions * sizes[flat_regions[inside]])
    fpr, pro, _ = roc_curve(y.reshape(-1), s.reshape(-1), sample_weight=weights, drop_intermediate=False)
    cut = int(np.searchsorted(fpr, fpr_limit, side="right"))  # fpr[:cut] <= fpr_limit; fpr[0] == 0
    x, p = fpr[:cut], pro[:cut]
    if x[-1] < fpr_limit and cut < fpr.size:
        w = (fpr_limit - fpr[cut - 1]) / (fpr[cut] - fpr[cut - 1])
        x = np.append(x, fpr_limit)
        p = np.append(p, pro[cut - 1] + w * (pro[cut] - pro[cut - 1]))
    return float(auc(x, p) / fpr_limit)
