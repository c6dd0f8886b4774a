"""PNG plots of evaluation results: ROC curve and per-clip score timelines.

Figures are drawn with matplotlib's Agg canvas directly (``matplotlib.figure.Figure`` + ``FigureCanvasAgg``),
never through ``pyplot``: no display, no GUI backend and no global figure state are needed, whatever
``MPLBACKEND`` says, and plotting is safe from worker threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from streamad.metric_math import auroc, validate_scores_labels

__all__ = ["plot_roc", "plot_clip_scores", "anomalous_runs"]


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, format="png", dpi=100)
    return out


def plot_roc(scores: Any, labels: Any, path: str | Path, title: str = "ROC") -> Path:
    """Write a PNG of the ROC curve with the AUROC in the legend.

    Args:
        scores: ``(N,)`` float scores, higher = more anomalous. labels: ``(N,)`` int 0/1.
        path: output ``.png`` file; parent folders are created.
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: bad input or one class only (see :func:`streamad.metric_math.auroc`).
    """
    s, y = validate_scores_labels(scores, labels, f"plot_roc {path}")
    area = auroc(s, y)
    fpr, tpr, _ = roc_curve(y, s)
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, lw=2, label=f"AUROC = {area:.4f}")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def anomalous_runs(frame_indices: Any, labels: Any) -> list[tuple[int, int]]:
    """Contiguous runs of anomalous frames as ``(first_index, last_index)`` pairs (inclusive, frame indices).

    A run is consecutive positions in ``frame_indices`` (sorted ascending) whose label is 1.

    Args:
        frame_indices: ``(N,)`` int frame indices, ascending. labels: ``(N,)`` int 0/1.
    """
    idx = np.asarray(frame_indices).reshape(-1)
    lab = np.asarray(labels).reshape(-1).astype(bool)
    padded = np.concatenate([[False], lab, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(idx[a]), int(idx[b - 1])) for a, b in zip(edges[::2], edges[1::2])]


def plot_clip_scores(
    frame_indices: Any,
    scores: Any,
    labels: Any,
    threshold: float,
    path: str | Path,
    title: str = "",
    raw_scores: Any | None = None,
) -> Path:
    """Write a PNG of one clip's frame score over time.

    Draws the score (and the raw, unsmoothed score when given, thinner), the threshold as a horizontal line and
    the ground-truth anomalous frames as shaded spans (one ``axvspan`` per contiguous run).

    Args:
        frame_indices: ``(N,)`` int frame indices (x axis, frames); need not start at 0.
        scores: ``(N,)`` float frame scores (same units as ``threshold``).
        labels: ``(N,)`` int 0/1 ground truth, or ``None`` when the clip has no labels (no shading).
        threshold: decision threshold, in the units of ``scores``.
        path: output ``.png`` file; parent folders are created.
        title: figure title (e.g. the stream id).
        raw_scores: optional ``(N,)`` float raw scores drawn behind ``scores``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: the arrays' lengths differ, or scores are not finite.
    """
    idx = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
    what = f"plot_clip_scores {title or path}"
    n_scores = np.asarray(scores).size
    if n_scores != idx.size:
        raise ValueError(f"{what}: {idx.size} frame indices but {n_scores} scores")
    s, y = validate_scores_labels(scores, np.zeros(idx.size, np.int64) if labels is None else labels, what)
    order = np.argsort(idx, kind="stable")
    idx, s, y = idx[order], s[order], y[order]
    fig = Figure(figsize=(10, 3.5))
    ax = fig.add_subplot()
    if labels is not None:
        for k, (a, b) in enumerate(anomalous_runs(idx, y)):
            ax.axvspan(a - 0.5, b + 0.5, color="tab:red", alpha=0.15, lw=0,
                       label="ground-truth anomaly" if k == 0 else None)
    if raw_scores is not None:
        r, _ = validate_scores_labels(raw_scores, np.zeros(idx.size, np.int64), f"{what} (raw scores)")
        ax.plot(idx, r[order], color="tab:grey", lw=0.8, alpha=0.8, label="raw score")
    ax.plot(idx, s, color="tab:blue", lw=1.5, label="score")
    ax.axhline(float(threshold), color="tab:orange", ls="--", lw=1.2, label=f"threshold {float(threshold):.4g}")
    ax.set(xlabel="frame", ylabel="anomaly score", title=title)
    if idx.size > 1:
        ax.set_xlim(idx[0] - 0.5, idx[-1] + 0.5)
    ax.legend(loc="upper right", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
