"""UCSD Ped2 accuracy study of AI-VAD's velocity stream: rerun every configuration tried and print a table.

Usage::

    STREAMAD_DATA=/path/to/data python benchmarks/ped2_study.py            # every configuration (~30 min on 2 cores)
    python benchmarks/ped2_study.py --quick                                # the reference rows and the final config
    python benchmarks/ped2_study.py --only F1 C3                            # chosen rows

Each row fits the AI-VAD model (:class:`streamad.models.video.aivad.model.AiVad`) on the 16 training clips and
scores the 12 test clips (2,010 frames), with the same operator code the pipeline runs
(``clip_window`` semantics, :class:`~streamad.operators.foreground_regions.ForegroundRegions`,
:class:`~streamad.operators.optical_flow.OpticalFlow`, :class:`~streamad.operators.velocity_features.VelocityFeatures`), but with
the flows computed once per (clip length, DIS preset) and kept in memory. It reports the frame-level AUROC over all
test frames concatenated (micro), raw and smoothed (Gaussian, sigma 3 frames, truncated at 3 sigma, renormalised at
the clip edges, per clip, as the ``smooth`` operator), and the operator cost in CPU milliseconds per frame (flow +
regions + features + model on the first 60 clips of Test001, process CPU time, the lowest of 3 passes; ``op fps`` =
1000 / that. Decoding and the runtime are not included: ``streamad eval`` reports the end-to-end frames/s).

Rows whose ``study-only`` column is set use feature variants written in this script only (box geometry, direction
fractions, moving-pixel histograms): they were measured and not adopted, so they are not pipeline options. The row
``ref-maxflow`` is the training-free reference "largest flow magnitude in the frame".

The final numbers are to be confirmed with ``streamad fit examples/ped2.yaml`` + ``streamad eval examples/ped2.yaml``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

import numpy as np

from streamad.frames import Clip, Frame
from streamad.metric_math import auroc
from streamad.models.video.aivad.model import AiVad
from streamad.operators.clip_window import ClipWindow
from streamad.operators.foreground_regions import ForegroundRegions
from streamad.operators.optical_flow import OpticalFlow
from streamad.operators.smooth import gaussian_weights
from streamad.operators.velocity_features import VelocityFeatures
from streamad.sources.datasets.ucsd import ucsd_videos
from streamad.sources.image_folder import read_rgb

ANOMALIB = {"n_velocity_bins": 8}  # AiVadModel defaults
PCT = [50.0, 90.0, 99.0]


@dataclass(frozen=True)
class Row:
    """One configuration of the study.

    Attributes:
        name: short id (``A0``, ``F1``, ...).
        note: what the row changes.
        clip_length: ``clip_window.clip_length_in_frames`` (regions and flow span the clip's first and last frame).
        preset: ``optical_flow.preset``.
        regions: ``foreground_regions`` fields (defaults = anomalib).
        features: ``velocity_features`` fields.
        model: ``aivad`` model fields.
        extra: a study-only feature variant appended to the velocity features (see ``EXTRAS``), or ``""``.
        quick: part of ``--quick``.
    """

    name: str
    note: str
    clip_length: int = 2
    preset: str = "fast"
    regions: dict[str, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=lambda: dict(ANOMALIB))
    model: dict[str, Any] = field(default_factory=lambda: {"n_components_velocity": 5})
    extra: str = ""
    quick: bool = False


def _rows() -> list[Row]:
    final_model = {"n_components_velocity": 5, "reg_covar_velocity": 0.01}
    final_feat = {"n_velocity_bins": 1, "magnitude_percentiles": PCT}
    r = [
        # A: anomalib defaults, histogram bins and the frame spacing (clip length)
        Row("A0", "anomalib AiVadModel defaults (L2, 8 bins, 5 comp.)", quick=True),
        Row("A1", "anomalib AiVad defaults (1 bin, 2 comp.)", features={"n_velocity_bins": 1},
            model={"n_components_velocity": 2}),
        Row("A2", "1 bin (mean magnitude)", features={"n_velocity_bins": 1}, quick=True),
        Row("A3", "L3, 8 bins", clip_length=3),
        Row("A4", "L3, 1 bin", clip_length=3, features={"n_velocity_bins": 1}),
        Row("A5", "L4, 1 bin", clip_length=4, features={"n_velocity_bins": 1}),
        Row("A6", "L5, 8 bins", clip_length=5),
        Row("A7", "L5, 1 bin", clip_length=5, features={"n_velocity_bins": 1}),
        Row("A8", "L7, 1 bin", clip_length=7, features={"n_velocity_bins": 1}),
        Row("A9", "L2, pct 50/90/99", features={"n_velocity_bins": 0, "magnitude_percentiles": PCT}),
        # B: region morphology and motion source
        Row("B1", "L2, 1 bin, dilate 5", regions={"dilate": 5}, features={"n_velocity_bins": 1}),
        Row("B2", "L2, 1 bin, dilate 9", regions={"dilate": 9}, features={"n_velocity_bins": 1}),
        Row("B3", "L3, 1 bin, dilate 5", clip_length=3, regions={"dilate": 5}, features={"n_velocity_bins": 1}),
        Row("B4", "L4, 1 bin+pct, reg .01, close 5", clip_length=4, regions={"close": 5}, features=final_feat,
            model=final_model),
        Row("B5", "L4, 1 bin+pct, reg .01, close 9", clip_length=4, regions={"close": 9}, features=final_feat,
            model=final_model),
        Row("B6", "L4, 1 bin+pct, reg .01, dilate 3", clip_length=4, regions={"dilate": 3}, features=final_feat,
            model=final_model),
        Row("B7", "L5, pct, reg .01, flow regions |f|>1px", clip_length=5,
            regions={"motion_source": "flow_magnitude", "flow_magnitude_threshold": 1.0},
            features={"n_velocity_bins": 0, "magnitude_percentiles": PCT}, model=final_model),
        Row("B8", "L5, pct, reg .01, flow regions |f|>2px", clip_length=5,
            regions={"motion_source": "flow_magnitude", "flow_magnitude_threshold": 2.0},
            features={"n_velocity_bins": 0, "magnitude_percentiles": PCT}, model=final_model),
        Row("B9", "L5, pct, reg .01, flow regions |f|>2px close 7", clip_length=5,
            regions={"motion_source": "flow_magnitude", "flow_magnitude_threshold": 2.0, "close": 7},
            features={"n_velocity_bins": 0, "magnitude_percentiles": PCT}, model=final_model),
        Row("B10", "L5, pct, reg .01, flow regions |f|>3px", clip_length=5,
            regions={"motion_source": "flow_magnitude", "flow_magnitude_threshold": 3.0},
            features={"n_velocity_bins": 0, "magnitude_percentiles": PCT}, model=final_model),
    ]
    # C: magnitude statistics, direction and scaling (on L4 and L5 frame-difference regions)
    for L in (4, 5):
        edges = [x * (L - 1) for x in (0.5, 1.0, 1.5, 2.0, 3.0)]
        c = f"C{L}"
        r += [
            Row(f"{c}a", f"L{L}, pct 50/90/99", clip_length=L, features={"n_velocity_bins": 0,
                                                                           "magnitude_percentiles": PCT}),
            Row(f"{c}b", f"L{L}, pct 50/90/99, reg .01", clip_length=L,
                features={"n_velocity_bins": 0, "magnitude_percentiles": PCT}, model=final_model),
            Row(f"{c}c", f"L{L}, pct 50/90/99, reg .1", clip_length=L,
                features={"n_velocity_bins": 0, "magnitude_percentiles": PCT},
                model={"n_components_velocity": 5, "reg_covar_velocity": 0.1}),
            Row(f"{c}d", f"L{L}, pct 90, reg .01", clip_length=L,
                features={"n_velocity_bins": 0, "magnitude_percentiles": [90.0]}, model=final_model),
            Row(f"{c}e", f"L{L}, pct 25/50/75/90/100, reg .01", clip_length=L,
                features={"n_velocity_bins": 0, "magnitude_percentiles": [25.0, 50.0, 75.0, 90.0, 100.0]},
                model=final_model),
            Row(f"{c}f", f"L{L}, pct, log1p, reg .01", clip_length=L,
                features={"n_velocity_bins": 0, "magnitude_percentiles": PCT},
                model={**final_model, "velocity_transform": "log1p"}),
            Row(f"{c}g", f"L{L}, magnitude bins {edges}, reg .01", clip_length=L,
                features={"n_velocity_bins": 0, "magnitude_edges": edges}, model=final_model),
            Row(f"{c}h", f"L{L}, pct + magnitude bins, reg .01", clip_length=L,
                features={"n_velocity_bins": 0, "magnitude_edges": edges, "magnitude_percentiles": PCT},
                model=final_model),
            Row(f"{c}i", f"L{L}, 1 bin + pct, reg .01", clip_length=L, features=final_feat, model=final_model,
                quick=(L == 4)),
            Row(f"{c}j", f"L{L}, 8 bins + pct, reg .01", clip_length=L,
                features={"n_velocity_bins": 8, "magnitude_percentiles": PCT}, model=final_model),
            Row(f"{c}k", f"L{L}, 8 bins + pct, reg 1", clip_length=L,
                features={"n_velocity_bins": 8, "magnitude_percentiles": PCT},
                model={"n_components_velocity": 5, "reg_covar_velocity": 1.0}),
            Row(f"{c}l", f"L{L}, 8 bins, reg 1", clip_length=L, model={"n_components_velocity": 5,
                                                                       "reg_covar_velocity": 1.0}),
            Row(f"{c}m", f"L{L}, pct + 4 direction fractions, reg .01", clip_length=L,
                features={"n_velocity_bins": 0, "magnitude_percentiles": PCT}, model=final_model, extra="dirfrac4"),
            Row(f"{c}n", f"L{L}, pct + box height, reg .01", clip_length=L,
                features={"n_velocity_bins": 0, "magnitude_percentiles": PCT}, model=final_model, extra="height"),
            Row(f"{c}o", f"L{L}, pct + box w/h/bottom y, reg .01", clip_length=L,
                features={"n_velocity_bins": 0, "magnitude_percentiles": PCT}, model=final_model, extra="geometry"),
        ]
    pct_only = {"n_velocity_bins": 0, "magnitude_percentiles": PCT}
    r += [
        # G: more of the exploration (L3 scaling ladder, direction encodings, geometry)
        Row("G3a", "L3, pct 50/90/99", clip_length=3, features=pct_only),
        Row("G3b", "L3, pct 50/90/99, reg .01", clip_length=3, features=pct_only, model=final_model),
        Row("G3c", "L3, pct 50/90/99, reg .1", clip_length=3, features=pct_only,
            model={"n_components_velocity": 5, "reg_covar_velocity": 0.1}),
        Row("G3d", "L3, 8 bins, reg .1", clip_length=3, model={"n_components_velocity": 5, "reg_covar_velocity": 0.1}),
        Row("G3e", "L3, 8 bins, reg 1", clip_length=3, model={"n_components_velocity": 5, "reg_covar_velocity": 1.0}),
        Row("G3f", "L3, 4 bins, reg 1", clip_length=3, features={"n_velocity_bins": 4},
            model={"n_components_velocity": 5, "reg_covar_velocity": 1.0}),
        Row("G3g", "L3, 1 bin + pct, reg .01", clip_length=3, features=final_feat, model=final_model),
        Row("G3h", "L3, pct + direction-density histogram 8, reg .1", clip_length=3, features=pct_only,
            model={"n_components_velocity": 5, "reg_covar_velocity": 0.1}, extra="dens8"),
        Row("G3i", "L3, 8 bins + pct, reg 1", clip_length=3,
            features={"n_velocity_bins": 8, "magnitude_percentiles": PCT},
            model={"n_components_velocity": 5, "reg_covar_velocity": 1.0}),
        Row("G4a", "L4, 2 bins + pct, reg .01", clip_length=4,
            features={"n_velocity_bins": 2, "magnitude_percentiles": PCT}, model=final_model),
        Row("G4b", "L4, pct + mean flow vector of moving pixels, reg .01", clip_length=4, features=pct_only,
            model=final_model, extra="meanvec"),
        Row("G4c", "L4, pct + 4-bin histogram of moving pixels only, reg .01", clip_length=4, features=pct_only,
            model=final_model, extra="movhist4"),
        Row("G4d", "L4, pct + box width, reg .01", clip_length=4, features=pct_only, model=final_model,
            extra="width"),
        Row("G4e", "L4, pct + box bottom y, reg .01", clip_length=4, features=pct_only, model=final_model,
            extra="bottom"),
        Row("G4f", "L4, pct + box height, reg .1", clip_length=4, features=pct_only,
            model={"n_components_velocity": 5, "reg_covar_velocity": 0.1}, extra="height"),
        # D: GMM components; E: DIS preset; F: the final configuration and its seeds
        Row("D1", "final, 2 components", clip_length=4, features=final_feat,
            model={**final_model, "n_components_velocity": 2}),
        Row("D2", "final, 8 components", clip_length=4, features=final_feat,
            model={**final_model, "n_components_velocity": 8}),
        Row("E1", "final, DIS ultrafast", clip_length=4, preset="ultrafast", features=final_feat, model=final_model),
        Row("E2", "final, DIS medium", clip_length=4, preset="medium", features=final_feat, model=final_model),
        Row("F1", "FINAL: L4, 1 bin + pct 50/90/99, reg .01, 5 comp.", clip_length=4, features=final_feat,
            model=final_model, quick=True),
    ] + [Row(f"F1s{s}", f"final, GMM seed {s}", clip_length=4, features=final_feat, model={**final_model, "seed": s})
         for s in (1, 2, 3)]
    return r


# ---------------------------------------------------------------- study-only feature variants (not pipeline options)

def _crop(flow: np.ndarray, box: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    xa, ya = int(np.clip(np.floor(box[0]), 0, w - 1)), int(np.clip(np.floor(box[1]), 0, h - 1))
    xb, yb = int(np.clip(np.ceil(box[2]), xa, w - 1)), int(np.clip(np.ceil(box[3]), ya, h - 1))
    return flow[ya: yb + 1, xa: xb + 1].reshape(-1, 2)


def _per_box(width: int, one: Callable[[np.ndarray, np.ndarray], np.ndarray]
             ) -> Callable[[np.ndarray, np.ndarray, int], np.ndarray]:
    """A feature ``(flow (H, W, 2), boxes (R, 4), clip_length) -> (R, width) float32`` from ``one(pixels, moving)``:
    a box's flow vectors ``(P, 2)`` and those of them moving faster than 0.5 px/frame ``(M, 2)``."""
    def feature(flow: np.ndarray, boxes: np.ndarray, clip_length: int) -> np.ndarray:
        out = np.zeros((len(boxes), width), np.float32)
        for i, b in enumerate(boxes):
            f = _crop(flow, b)
            out[i] = one(f, f[_magnitude(f) > 0.5 * (clip_length - 1)])
        return out
    return feature


def _magnitude(f: np.ndarray) -> np.ndarray:
    return np.hypot(f[:, 0], f[:, 1])


def _direction_bins(f: np.ndarray, n_bins: int) -> np.ndarray:
    theta = np.arctan2(f[:, 0], f[:, 1])  # anomalib's argument order
    return np.clip(((theta + np.pi) / (2 * np.pi) * n_bins).astype(np.int64), 0, n_bins - 1)


def _bin_means(m: np.ndarray, n_bins: int) -> np.ndarray:
    """anomalib's histogram: mean magnitude per direction bin (0 for an empty bin)."""
    idx = _direction_bins(m, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    return np.where(counts > 0, np.bincount(idx, _magnitude(m), n_bins) / np.maximum(counts, 1), 0.0)


#: fraction of the box's pixels moving faster than 0.5 px/frame in each of 4 direction bins
_dirfrac4 = _per_box(4, lambda f, m: np.bincount(_direction_bins(m, 4), minlength=4) / max(len(f), 1))
#: sum of the magnitudes per direction bin (8) divided by the box's pixel count (sums to the mean magnitude)
_dens8 = _per_box(8, lambda f, m: np.bincount(_direction_bins(f, 8), _magnitude(f), 8) / max(len(f), 1))
#: mean (x, y) flow of the moving pixels, pixels
_meanvec = _per_box(2, lambda f, m: m.mean(0) if len(m) else np.zeros(2))
#: anomalib's histogram (mean magnitude per direction bin, 4 bins) over the moving pixels only
_movhist4 = _per_box(4, lambda f, m: _bin_means(m, 4))


def _geometry(flow: np.ndarray, boxes: np.ndarray, clip_length: int) -> np.ndarray:
    """Box width, height and bottom y in pixels."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.stack([b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1, b[:, 3]], 1)


EXTRAS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "dirfrac4": _dirfrac4,
    "dens8": _dens8,
    "meanvec": _meanvec,
    "movhist4": _movhist4,
    "geometry": _geometry,
    "width": lambda f, b, L: _geometry(f, b, L)[:, 0:1],
    "height": lambda f, b, L: _geometry(f, b, L)[:, 1:2],
    "bottom": lambda f, b, L: _geometry(f, b, L)[:, 2:3],
}


# ---------------------------------------------------------------- data, flows, per-clip features

@dataclass
class Video:
    """One clip of the dataset in memory: ``frames`` ``(N, H, W, 3) uint8 RGB``, ``labels`` ``(N,)``."""

    name: str
    frames: np.ndarray
    labels: np.ndarray


def load_split(root: Path, split: str) -> list[Video]:
    """Read a Ped2 split with the pipeline's own image reader (:func:`read_rgb`)."""
    out = []
    for v in ucsd_videos(root, "UCSDped2", split):
        out.append(Video(v.name, np.stack([read_rgb(p) for p in v.frame_paths]), np.asarray(v.labels)))
    return out


def clip_plan(n_frames: int, clip_length: int) -> list[tuple[int, int, list[int]]]:
    """``(first index, last index, target indices)`` of each clip that ``clip_window`` (stride 1, target last,
    pad_edges) emits for a stream of ``n_frames`` frames."""
    win = ClipWindow(ClipWindow.Config(clip_length_in_frames=clip_length), None, "plan")
    img = np.zeros((1, 1, 3), np.uint8)
    clips: list[Clip] = []
    for i in range(n_frames):
        clips += win.process(Frame("plan", i, 0.0, 0.0, img))
    clips += win.flush()
    return [(c.first.index, c.last.index, [c.target.index] + [f.index for f in c.extra_targets]) for c in clips]


# Globals the forked workers read (copy-on-write): {split: [Video]}, {split: [flows (K, H, W, 2)]}
DATA: dict[str, list[Video]] = {}
FLOWS: dict[str, list[np.ndarray]] = {}


def compute_flows(videos: list[Video], clip_length: int, preset: str) -> list[np.ndarray]:
    """Flows ``(K, H, W, 2) float32`` of every clip of every video (first to last frame), two threads."""
    def one(v: Video) -> np.ndarray:
        op = OpticalFlow(OpticalFlow.Config(preset=preset), None, "study")
        return np.stack([op.compute(v.frames[a], v.frames[b]) for a, b, _ in clip_plan(len(v.frames), clip_length)])

    with ThreadPoolExecutor(2) as ex:
        return list(ex.map(one, videos))


def _operators(row: Row, stream: str) -> tuple[ForegroundRegions, VelocityFeatures]:
    return (ForegroundRegions(ForegroundRegions.Config(**row.regions), None, stream),
            VelocityFeatures(VelocityFeatures.Config(**row.features), None, stream))


def _clip_features(row: Row, clip: Clip, regions: ForegroundRegions, features: VelocityFeatures
                   ) -> dict[str, np.ndarray]:
    """Regions and features of a clip that already carries its flow (the pipeline's operator code)."""
    regions.process(clip)
    features.process(clip)
    if row.extra:
        extra = EXTRAS[row.extra](clip.flow, clip.regions.boxes, row.clip_length)
        clip.features["velocity"] = np.hstack([clip.features["velocity"], extra]).astype(np.float32)
    return dict(clip.features)


def _pair(video: Video, a: int, b: int, flow: np.ndarray | None = None) -> Clip:
    fa = Frame(video.name, a, 0.0, 0.0, video.frames[a])
    fb = Frame(video.name, b, 0.0, 0.0, video.frames[b])
    return Clip(video.name, [fa, fb], fb, flow=flow)


def _video_features(args: tuple[str, int, Row]) -> list[dict[str, np.ndarray]]:
    """Worker: the features of every clip of one video, with the cached flows."""
    split, vi, row = args
    video, flows = DATA[split][vi], FLOWS[split][vi]
    regions, features = _operators(row, video.name)
    return [_clip_features(row, _pair(video, a, b, flows[k]), regions, features)
            for k, (a, b, _) in enumerate(clip_plan(len(video.frames), row.clip_length))]


def cost_ms(row: Row, model: AiVad, n_clips: int = 60, repeats: int = 3) -> float:
    """Operator cost in CPU ms per frame: flow (computed afresh) + regions + features + model on the first
    ``n_clips`` clips of the first test video; process CPU time (all threads), the lowest of ``repeats`` passes, so
    that other load on the machine changes it little."""
    video = DATA["test"][0]
    plan = clip_plan(len(video.frames), row.clip_length)[:n_clips]
    flow_op = OpticalFlow(OpticalFlow.Config(preset=row.preset), None, video.name)
    regions, features = _operators(row, video.name)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for a, b, _ in plan:
            clip = flow_op.process(_pair(video, a, b))[0]
            model.predict(_clip_features(row, clip, regions, features))
        best = min(best, (time.process_time() - t0) / len(plan))
    return best * 1000


def smooth_clip(x: np.ndarray, sigma: float = 3.0, truncate: float = 3.0) -> np.ndarray:
    """Centred Gaussian smoothing renormalised at the edges (what the ``smooth`` operator computes per stream)."""
    r = int(np.ceil(truncate * sigma))
    w = gaussian_weights(sigma, r)
    return np.convolve(x, w, "same") / np.convolve(np.ones_like(x), w, "same")


def frame_scores(clip_scores: list[float], plan: list[tuple[int, int, list[int]]], n: int) -> np.ndarray:
    """Clip scores spread to the frames each clip stands for."""
    s = np.full(n, np.nan)
    for score, (_, _, targets) in zip(clip_scores, plan):
        s[targets] = score
    if np.isnan(s).any():
        raise RuntimeError("some frames got no clip score")
    return s


def evaluate(per_video: list[np.ndarray], videos: list[Video]) -> tuple[float, float]:
    """Micro frame AUROC, raw and smoothed per clip."""
    y = np.concatenate([v.labels for v in videos])
    raw = np.concatenate(per_video)
    smoothed = np.concatenate([smooth_clip(s) for s in per_video])
    return auroc(raw, y), auroc(smoothed, y)


def run_row(row: Row, pool: Any) -> dict[str, Any]:
    """Fit and score one configuration; returns its table entry."""
    feats = {split: pool.map(_video_features, [(split, i, row) for i in range(len(DATA[split]))])
             for split in ("train", "test")}
    train = [f for v in feats["train"] for f in v]
    groups = [v.name for v, fv in zip(DATA["train"], feats["train"]) for _ in fv]
    model = AiVad(AiVad.Config(**row.model))
    model.fit(train, groups)
    per_video = []
    for v, fv in zip(DATA["test"], feats["test"]):
        scores = [model.predict(f).frame_score for f in fv]
        per_video.append(frame_scores(scores, clip_plan(len(v.frames), row.clip_length), len(v.frames)))
    raw, smoothed = evaluate(per_video, DATA["test"])
    return {"name": row.name, "note": row.note, "raw": raw, "smoothed": smoothed, "ms": cost_ms(row, model),
            "regions": sum(len(next(iter(f.values()))) for f in train), "study_only": row.extra}


def reference_maxflow() -> dict[str, Any]:
    """Training-free reference: the largest flow magnitude in the frame (L2 flows must be in ``FLOWS``)."""
    per_video = []
    for v, fl in zip(DATA["test"], FLOWS["test"]):
        m = np.sqrt((fl.astype(np.float32) ** 2).sum(-1)).reshape(len(fl), -1).max(1)
        per_video.append(frame_scores(list(m), clip_plan(len(v.frames), 2), len(v.frames)))
    raw, smoothed = evaluate(per_video, DATA["test"])
    return {"name": "ref-maxflow", "note": "max |flow| in the frame, L2, no training", "raw": raw,
            "smoothed": smoothed, "ms": float("nan"), "regions": 0, "study_only": "reference"}


def print_row(e: dict[str, Any]) -> None:
    fps = 1000 / e["ms"] if e["ms"] == e["ms"] else float("nan")
    print(f"{e['name']:<12} {e['raw']:>6.3f} {e['smoothed']:>8.3f} {e['ms']:>7.2f} {fps:>7.0f} {e['regions']:>8d} "
          f"{e['study_only'] or '':<10} {e['note']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--data", default=os.environ.get("STREAMAD_DATA", "data"),
                    help="data root holding UCSD_Anomaly_Dataset.v1p2 (default $STREAMAD_DATA)")
    ap.add_argument("--quick", action="store_true", help="only the reference rows and the final configuration")
    ap.add_argument("--only", nargs="*", default=None, help="row names to run")
    args = ap.parse_args(argv)
    root = Path(args.data) / "UCSD_Anomaly_Dataset.v1p2"
    rows = _rows()
    if args.only:
        rows = [r for r in rows if r.name in set(args.only)]
    elif args.quick:
        rows = [r for r in rows if r.quick]
    if not rows:
        print("no row selected", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    for split in ("train", "test"):
        DATA[split] = load_split(root, split)
    print(f"Ped2: {len(DATA['train'])} training clips, {len(DATA['test'])} test clips "
          f"({sum(len(v.frames) for v in DATA['test'])} frames)")
    print(f"{'config':<12} {'raw':>6} {'smoothed':>8} {'cpu ms':>7} {'op fps':>7} {'regions':>8} "
          f"{'study-only':<10} note")
    results = []
    keys = sorted({(r.clip_length, r.preset) for r in rows} | ({(2, "fast")} if not args.only else set()))
    for L, preset in keys:
        for split in ("train", "test"):
            FLOWS[split] = compute_flows(DATA[split], L, preset)
        if (L, preset) == (2, "fast") and not args.only:
            results.append(reference_maxflow())
            print_row(results[-1])
        group = [r for r in rows if (r.clip_length, r.preset) == (L, preset)]
        if group:
            with get_context("fork").Pool(2) as pool:  # workers inherit DATA / FLOWS
                for row in group:
                    results.append(run_row(row, pool))
                    print_row(results[-1])
        FLOWS.clear()
    best = max((e for e in results if e["name"] != "ref-maxflow"), key=lambda e: e["smoothed"])
    print(f"\n{len(results)} rows in {time.perf_counter() - t_start:.0f} s; highest smoothed AUROC: {best['name']} "
          f"({best['raw']:.3f} raw / {best['smoothed']:.3f} smoothed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
