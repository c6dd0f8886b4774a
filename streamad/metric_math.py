"""Metric maths shared by the models and the evaluation (a leaf module: NumPy, SciPy and scikit-learn only).

Definitions follow anomalib's ``anomalib.metrics`` (``AUROC``, ``AUPR``, ``F1Score``, ``AUPRO``,
``F1AdaptiveThreshold``), computed with scikit-learn / NumPy in place of torchmetrics.

* Input checks: :func:`validate_scores_labels`, :func:`require_both_classes`.
* Thresholds: :func:`f1_adaptive_threshold` (the raw score that maximises F1; fitting, calibration).
* Frame (or image) level: :func:`auroc`, :func:`aupr`, :func:`frame_metrics`. Frame metrics are "micro": every
  frame of every clip concatenated into one list, the standard protocol for UCSD Ped2 / Avenue / ShanghaiTech.
* Pixel level: :func:`pixel_auroc`, :func:`aupro`, and :func:`pixel_metrics`, which gives the same AUROC, AUPR and
  AUPRO from one sort of the pixels (the evaluation of image models; their early stopping uses :func:`auroc` and
  :func:`pixel_auroc`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["validate_scores_labels", "require_both_classes", "f1_adaptive_threshold", "auroc", "aupr",
           "frame_metrics", "pixel_auroc", "aupro", "pixel_metrics"]


def _sk() -> Any:
    """``sklearn.metrics``, imported on first use: scikit-learn takes about a second to import, and every
    ``serve`` start imports this module (the post-processing's F1-adaptive threshold) without needing it."""
    import sklearn.metrics

    return sklearn.metrics


def validate_scores_labels(scores: Any, labels: Any, what: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Check and convert a pair of per-sample scores and ground-truth labels.

    Args:
        scores: ``(N,)`` float scores (any array-like; higher = more anomalous). Multi-dimensional input is
            flattened.
        labels: ``(N,)`` ground-truth labels, 0 normal / 1 anomalous (int, bool or float holding 0 and 1).
        what: name used in error messages (e.g. ``"frame scores"``).

    Returns:
        ``(scores (N,) float64, labels (N,) int64)``.

    Raises:
        ValueError: empty input, lengths differ, a score is NaN or infinite, or a label is not 0 or 1.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y_raw = np.asarray(labels).reshape(-1)
    if s.size == 0:
        raise ValueError(f"{what}: no samples (expected at least one score and label)")
    if s.shape != y_raw.shape:
        raise ValueError(f"{what}: {s.size} scores but {y_raw.size} labels (expected one label per score)")
    bad = ~np.isfinite(s)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what}: {int(bad.sum())} scores are NaN or infinite (first at position {i}: {s[i]})")
    if not np.isin(y_raw, (0, 1)).all():
        odd = np.unique(y_raw[~np.isin(y_raw, (0, 1))])[:5]
        raise ValueError(f"{what}: labels must be 0 (normal) or 1 (anomalous), found {odd.tolist()}")
    return s, y_raw.astype(np.int64)


def require_both_classes(labels: np.ndarray, what: str, advice: str) -> None:
    """Raise ``ValueError`` naming ``what`` and giving ``advice`` unless ``labels`` (0/1) hold both classes."""
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.size:
        only = "anomalous" if n_pos else "normal"
        raise ValueError(f"{what}: all {labels.size} labels are {only}; {advice}")


def f1_adaptive_threshold(scores: Any, labels: Any) -> float:
    """The raw score threshold that maximises F1 (anomalib ``F1AdaptiveThreshold``).

    Builds the precision-recall curve over the raw scores (every distinct score is a candidate threshold, a
    sample is anomalous when ``score >= threshold``) and returns the candidate with the highest
    ``F1 = 2 P R / (P + R)``; ties go to the lowest such threshold, as ``torch.argmax`` does in anomalib.

    Example (anomalib's): labels ``[0, 0, 0, 1, 1]``, scores ``[2.3, 1.6, 2.6, 7.9, 3.3]`` -> ``3.3``.

    Args:
        scores: ``(N,)`` float raw scores, higher = more anomalous (model units, not normalised).
        labels: ``(N,)`` int 0/1 ground truth.

    Returns:
        The threshold, in the units of ``scores``.

    Raises:
        ValueError: bad input (see :func:`validate_scores_labels`), or the labels hold only one class, where
            F1 cannot pick a threshold. (Newer anomalib versions log a warning and fall back to the highest /
            lowest score instead; an explicit error is preferred here.)
    """
    s, y = validate_scores_labels(scores, labels, "f1_adaptive_threshold")
    require_both_classes(
        y, "f1_adaptive_threshold",
        "an adaptive threshold needs both normal and anomalous samples: set a manual threshold "
        "(threshold.method: manual, value: <raw score>) or validate on a labelled split that contains both classes",
    )
    precision, recall, thresholds = _sk().precision_recall_curve(y, s)
    # precision/recall have one more entry than thresholds (the final P=1, R=0 point): drop it.
    p, r = precision[:-1], recall[:-1]
    f1 = 2 * p * r / (p + r + 1e-10)
    return float(thresholds[int(np.argmax(f1))])


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
    return float(_sk().roc_auc_score(y, s))


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
    precision, recall, _ = _sk().precision_recall_curve(y, s)
    order = np.argsort(recall, kind="stable")
    return float(_sk().auc(recall[order], precision[order]))


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
    precision, recall, f1, _ = _sk().precision_recall_fscore_support(
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
    fpr, pro, _ = _sk().roc_curve(y.reshape(-1), s.reshape(-1), sample_weight=weights, drop_intermediate=False)
    x, p = _cut_pro_curve(fpr, pro, fpr_limit)
    return float(_sk().auc(x, p) / fpr_limit)


def _cut_pro_curve(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> tuple[np.ndarray, np.ndarray]:
    """The PRO-vs-FPR curve (``fpr`` ascending from 0, float64) up to ``fpr_limit``, its last point linearly
    interpolated at ``fpr_limit`` when the curve passes it between two points: ``(fpr, pro)`` to integrate."""
    cut = int(np.searchsorted(fpr, fpr_limit, side="right"))  # fpr[:cut] <= fpr_limit; fpr[0] == 0
    x, p = fpr[:cut], pro[:cut]
    if x[-1] < fpr_limit and cut < fpr.size:
        w = (fpr_limit - fpr[cut - 1]) / (fpr[cut] - fpr[cut - 1])
        x = np.append(x, fpr_limit)
        p = np.append(p, pro[cut - 1] + w * (pro[cut] - pro[cut - 1]))
    return x, p


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def _descending_order(s: np.ndarray) -> np.ndarray:
    """Indices ``(N,) intp`` that sort the float32 values ``s`` (``(N,)``, finite) in decreasing order (equal values
    adjacent: -0.0 right after 0.0, other ties in decreasing index order).

    ``np.argsort`` of tens of millions of float32 values takes about 10 s here; sorting 64-bit keys (the value's
    order-preserving unsigned bits above the index) is about 3x faster, with the index read back from the low bits.
    """
    if s.size >= 2**32:
        return np.argsort(s)[::-1]
    bits = s.view(np.uint32)
    ordered = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))  # negatives reversed
    key = (ordered.astype(np.uint64) << np.uint64(32)) | np.arange(s.size, dtype=np.uint64)
    key.sort()
    return (key[::-1] & np.uint64(0xFFFFFFFF)).astype(np.intp)


def pixel_metrics(maps: Any, masks: Any, fpr_limit: float = 0.3, with_aupro: bool = True) -> dict[str, float]:
    """``{"auroc", "aupr", "aupro"}`` of anomaly maps against ground-truth masks, from one sort of the pixels.

    The same numbers as :func:`pixel_auroc`, :func:`aupr` and :func:`aupro` (anomalib's definitions; tested equal),
    computed together: a test split of a few hundred 256x256 maps has tens of millions of pixels, and each of those
    functions sorts them again in float64 (about 15 s each for 38 M pixels on 2 cores); here one sort of the
    float32 values (:func:`_descending_order`, about 3 s for 43 M pixels) serves the three curves. The curves are
    built at every distinct map value (thresholds ``map >= t``): true and false positive counts are cumulative sums
    over the pixels sorted by decreasing value, read at the end of each run of equal values, so ties are handled as
    scikit-learn's ``roc_curve`` / ``precision_recall_curve`` handle them.

    Args:
        maps: ``(N, H, W)`` float anomaly maps (higher = more anomalous). masks: ``(N, H, W)`` bool / 0-1.
        fpr_limit: AUPRO's largest false positive rate, in ``(0, 1]``.
        with_aupro: also compute AUPRO (its connected components cost extra); without, ``aupro`` is absent.

    Raises:
        ValueError: shapes differ or are not 3-D, a value is not finite, ``fpr_limit`` out of range, or the masks
            hold one class only.
    """
    if not 0.0 < float(fpr_limit) <= 1.0:
        raise ValueError(f"pixel_metrics: fpr_limit must be in (0, 1], got {fpr_limit}")
    m = np.asarray(maps, np.float32)
    g = np.asarray(masks).astype(bool)
    if m.ndim != 3 or m.shape != g.shape:
        raise ValueError(f"pixel_metrics: expected anomaly maps (N, H, W) and masks (N, H, W) of the same shape, got "
                         f"{m.shape} and {g.shape}")
    s = m.reshape(-1)
    if not np.isfinite(s).all():
        raise ValueError(f"pixel_metrics: {int((~np.isfinite(s)).sum())} map values are NaN or infinite")
    y = g.reshape(-1)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError("pixel_metrics: the masks hold one class only; pixel metrics need anomalous and normal "
                         "pixels")
    order = _descending_order(s)
    s_sorted = s[order]
    ends = np.append(np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s.size - 1)
    y_sorted = y[order]
    tps = np.cumsum(y_sorted, dtype=np.int64)[ends].astype(np.float64)
    fps = (ends + 1).astype(np.float64) - tps

    # ROC (roc_curve prepends the (0, 0) point)
    fpr = np.concatenate([[0.0], fps / fps[-1]])
    tpr = np.concatenate([[0.0], tps / tps[-1]])
    auroc = _trapezoid(tpr, fpr)

    # precision-recall (precision_recall_curve, reversed, with the final (recall 0, precision 1) point), integrated
    # after a stable sort by recall as anomalib's auc(reorder=True)
    precision = np.concatenate([(tps / (tps + fps))[::-1], [1.0]])
    recall = np.concatenate([(tps / tps[-1])[::-1], [0.0]])
    by_recall = np.argsort(recall, kind="stable")
    aupr = _trapezoid(precision[by_recall], recall[by_recall])
    if not with_aupro:
        return {"auroc": auroc, "aupr": aupr}

    # PRO: each region pixel weighs 1 / (regions * region size), so the weighted TPR is the mean region overlap
    regions, n_regions = _label_regions(g)
    flat = regions.reshape(-1)
    sizes = np.bincount(flat, minlength=n_regions + 1).astype(np.float64)
    weight = np.zeros(n_regions + 1, np.float64)
    weight[1:] = 1.0 / (n_regions * sizes[1:])
    pro = np.concatenate([[0.0], np.cumsum(weight[flat[order]])[ends]])
    pro /= pro[-1]
    x, p = _cut_pro_curve(fpr, pro, fpr_limit)
    return {"auroc": auroc, "aupr": aupr, "aupro": _trapezoid(p, x) / fpr_limit}
