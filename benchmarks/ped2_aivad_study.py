"""UCSD Ped2 accuracy study of AI-VAD in full: each feature stream alone and combined, raw and smoothed, and the
choices behind examples/ped2_aivad.yaml (deep-feature layer / crop, pose on persons only, anomalib's two default
sets, memory-bank subsampling).

Usage::

    STREAMAD_DATA=../shared/data python benchmarks/ped2_aivad_study.py --work /tmp/aivad_study   # ~25 min on 2 cores
    python benchmarks/ped2_aivad_study.py --work /tmp/aivad_study --videos 2                     # a quick smoke run

Pass 1 runs the pipeline's own components on every frame of the 16 training and 12 test clips (clip of 4 frames,
target = last: CenterNet detections at score >= 0.3 plus AI-VAD foreground boxes, anomalib's area / overlap filters,
DIS flow, the velocity features, MoveNet keypoints on every region, EfficientNet-Lite0 appearance vectors in several
variants) and caches them under ``--work``. Pass 2 fits the density estimators of
:class:`~streamad.models.video.aivad.model.AiVad` (GMM for velocity, grouped kNN for pose and deep) on the training
regions and prints the frame-level AUROC over the 2,010 test frames, raw and smoothed (Gaussian, sigma 3 frames, per
clip, as the ``smooth`` operator). The final row's streams and settings are those of examples/ped2_aivad.yaml, with
the detector on every frame; the example's ``detect_every`` (the detector on every 4th clip in eval and serve since
2026-12-07, every other clip before) is measured end to end by ``streamad fit`` + ``streamad eval`` on it
(streamad/models/video/aivad/README.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from streamad.frames import Regions
from streamad.metric_math import auroc
from streamad.models.components.centernet import PERSON_LABEL, CenterNetDetector
from streamad.models.components.movenet import MoveNetPose
from streamad.models.components.region_appearance import RegionAppearance
from streamad.models.video.aivad.density import GMMEstimator
from streamad.models.video.aivad.knn import GroupedKNNEstimator
from streamad.operators.foreground_regions import filter_boxes, foreground_boxes
from streamad.operators.pose_features import pose_vectors
from streamad.operators.velocity_features import velocity_histogram
from streamad.sources.datasets.ucsd import ucsd_videos
from streamad.sources.image_folder import read_rgb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ped2_study import smooth_clip  # noqa: E402  (the smooth operator's per-clip Gaussian)

L = 4  # clip_length_in_frames
DEEP = {  # name -> RegionAppearance arguments
    "l34_64": dict(layers=["layer3", "layer4"], crop_size=64),
    "roi_l34": dict(layers=["layer3", "layer4"], method="roi_align", roi_output=2),
    "l2_64": dict(layers=["layer2"], crop_size=64),
    "l3_96": dict(layers=["layer3"], crop_size=96),
    "l3_48_ctx": dict(layers=["layer3"], crop_size=48, context=1.5),  # examples/ped2_aivad.yaml
}


def extract(root: Path, models: Path, work: Path, max_videos: int | None) -> None:
    """Pass 1: cache the regions and every feature variant of each clip in ``work/<split>_<clip>.npz``."""
    torch.set_num_threads(1)
    det = CenterNetDetector(models / "centernet.onnx", precision="bf16")  # as the examples
    pose = MoveNetPose(models / "movenet-multipose.onnx", 96, precision="bf16")
    deep = {k: RegionAppearance(**v) for k, v in DEEP.items()}  # type: ignore[arg-type]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    for split in ("train", "test"):
        for v in ucsd_videos(root, "UCSDped2", split)[:max_videos]:
            out = work / f"{split}_{v.name}.npz"
            if out.exists():
                continue
            t0 = time.time()
            imgs = [read_rgb(p) for p in v.frame_paths]
            rec: dict[str, list[np.ndarray]] = {k: [] for k in ["boxes", "labels", "vel1", "vel8", "kp", *DEEP]}
            for t in range(len(imgs)):
                first, last = imgs[max(0, t - L + 1)], imgs[t]
                b, s, lab = det(last, 0.3)
                fg = foreground_boxes(first, last, 3, 18, exclude=b)
                r = filter_boxes(Regions(np.concatenate([b, fg]).astype(np.float32),
                                         np.concatenate([s, np.full(len(fg), 0.5, np.float32)]),
                                         np.concatenate([lab, np.zeros(len(fg), np.int64)])), 100, 0.65)
                flow = dis.calc(cv2.cvtColor(first, cv2.COLOR_RGB2GRAY), cv2.cvtColor(last, cv2.COLOR_RGB2GRAY), None)
                rec["boxes"].append(r.boxes)
                rec["labels"].append(r.labels)
                rec["vel1"].append(velocity_histogram(flow, r.boxes, 1, (), (50, 90, 99)))
                rec["vel8"].append(velocity_histogram(flow, r.boxes, 8))
                rec["kp"].append(pose(last, r.boxes))
                for k, enc in deep.items():
                    rec[k].append(enc(last, r.boxes))
            n = np.array([len(x) for x in rec["boxes"]])
            labels = v.labels if v.labels is not None else np.zeros(len(imgs))
            np.savez(out, n=n, frame_labels=labels, **{k: np.concatenate(x) for k, x in rec.items()})
            print(f"  {split} {v.name}: {len(imgs)} frames, {n.mean():.1f} regions/frame, {time.time() - t0:.0f} s",
                  flush=True)


Feature = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]  # clip -> (rows, selected)


def col(name: str, persons: bool = False) -> Feature:
    def get(z: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        x = pose_vectors(z["kp"], z["boxes"]) if name == "pose" else z[name]
        return x, (z["labels"] == PERSON_LABEL) if persons else np.ones(len(x), bool)
    return get


def evaluate(train: list[dict], test: list[dict], streams: dict[str, tuple[str, Feature, dict[str, Any]]]
             ) -> tuple[float, float]:
    """Frame AUROC (raw, smoothed) of AI-VAD's combined density over ``streams``."""
    fitted = {}
    for name, (kind, get, kw) in streams.items():
        rows = [get(z) for z in train]
        x = np.concatenate([r[0][r[1]] for r in rows])
        if kind == "gmm":
            est: Any = GMMEstimator(kw.get("n_components", 5), reg_covar=0.01)
            est.fit(x)
        else:
            groups = np.concatenate([[i] * int(r[1].sum()) for i, r in enumerate(rows)])
            est = GroupedKNNEstimator(1, kw.get("bank_size", 0), kw.get("bank_sampling", "none"))
            est.fit(x, groups)
        fitted[name] = (est, get)
    raw, smooth, labels = [], [], []
    for z in test:
        n = z["n"]
        frame_of = np.repeat(np.arange(len(n)), n)
        score = np.zeros(len(n))
        for est, get in fitted.values():
            x, sel = get(z)
            peak = np.full(len(n), -np.inf)
            np.maximum.at(peak, frame_of[sel], est.predict(x[sel]))
            score += np.where(np.isfinite(peak), peak, 0.0)  # frame = sum over streams of the stream's maximum
        raw.append(score)
        smooth.append(smooth_clip(score, 3.0))
        labels.append(z["frame_labels"])
    lab = np.concatenate(labels)
    return auroc(np.concatenate(raw), lab), auroc(np.concatenate(smooth), lab)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="feature cache folder")
    ap.add_argument("--videos", type=int, default=None, help="first N clips of each split only (smoke run)")
    args = ap.parse_args()
    data = Path(os.environ.get("STREAMAD_DATA", "../shared/data"))
    models = Path(os.environ.get("STREAMAD_MODELS", data.parent / "models"))
    args.work.mkdir(parents=True, exist_ok=True)
    print("pass 1: features")
    extract(data / "UCSD_Anomaly_Dataset.v1p2", models, args.work, args.videos)
    load = lambda split: [dict(np.load(f)) for f in sorted(args.work.glob(f"{split}_*.npz"))]  # noqa: E731
    train, test = load("train"), load("test")
    vel = ("gmm", col("vel1"), {})
    pose_p = ("knn", col("pose", persons=True), {})
    deep = ("knn", col("l3_48_ctx"), {})
    rows: dict[str, dict[str, Any]] = {
        "velocity (1 bin + percentiles, GMM 5)": {"v": vel},
        "velocity, anomalib AiVadModel (8 bins, GMM 5)": {"v": ("gmm", col("vel8"), {})},
        "velocity, anomalib AiVad (1 bin + pct., GMM 2)": {"v": ("gmm", col("vel1"), {"n_components": 2})},
        "final, but velocity 8 bins (AiVadModel)": {"v": ("gmm", col("vel8"), {}), "p": pose_p, "d": deep},
        "final, but GMM 2 components (AiVad)": {"v": ("gmm", col("vel1"), {"n_components": 2}), "p": pose_p,
                                                "d": deep},
        "pose, every region (anomalib)": {"p": ("knn", col("pose"), {})},
        "pose, persons only": {"p": pose_p},
        **{f"deep {k}": {"d": ("knn", col(k), {})} for k in DEEP},
        "velocity + deep": {"v": vel, "d": deep},
        "velocity + pose (every region) + deep l34_64": {"v": vel, "p": ("knn", col("pose"), {}),
                                                          "d": ("knn", col("l34_64"), {})},
        "velocity + pose + deep (examples/ped2_aivad.yaml, all rows)": {"v": vel, "p": pose_p, "d": deep},
        "  same, banks k-center 2000 (the example's setting)": {
            "v": vel, "p": ("knn", col("pose", True), {"bank_size": 2000, "bank_sampling": "kcenter"}),
            "d": ("knn", col("l3_48_ctx"), {"bank_size": 2000, "bank_sampling": "kcenter"})},
        "  same, banks random 2000": {
            "v": vel, "p": ("knn", col("pose", True), {"bank_size": 2000, "bank_sampling": "random"}),
            "d": ("knn", col("l3_48_ctx"), {"bank_size": 2000, "bank_sampling": "random"})},
    }
    print(f"\npass 2: frame AUROC over {sum(len(z['n']) for z in test)} test frames "
          f"({sum(int(z['n'].sum()) for z in train)} training regions)")
    print(f"{'row':<62}{'raw':>8}{'smoothed':>10}")
    for name, streams in rows.items():
        a, b = evaluate(train, test, streams)
        print(f"{name:<62}{a:8.3f}{b:10.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
