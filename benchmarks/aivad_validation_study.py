"""Choose AI-VAD's settings without test labels: validate on held-out *training* clips with pseudo-anomalies, then
report the UCSD Ped2 test figure once, for the chosen configuration only.

Usage::

    STREAMAD_DATA=../shared/data python benchmarks/aivad_validation_study.py --work /tmp/aivad_val   # ~40 min, 2 cores
    STREAMAD_DATA=../shared/data python benchmarks/aivad_validation_study.py --work /tmp/aivad_val --regions foreground

Protocol (issue 22):

1. Ped2 has no validation split, so one is made, seeded (``--seed``): ``--held-out`` of the 16 training clips are
   held out; the density estimators are fitted on the others.
2. Each held-out clip gives three validation clips (:mod:`streamad.eval.pseudo_anomalies`): the clip as recorded
   (every frame normal), a skip-frame version (a 30-frame segment played 3x too fast) and a pasted-object version
   (a region cut from another held-out clip, rotated a quarter turn, moved across 50 frames at 3 px/frame in a
   random direction). Nothing about Ped2's real anomalies (cyclists, carts, skaters) goes into them.
3. Every configuration of the grid below is scored on the validation clips: frame-level AUROC of skip-frame frames
   against the normal frames and of pasted-object frames against the normal frames; the configuration with the
   best mean of the two wins (ties: the earlier, simpler row of the grid).
4. The winner is refitted on all 16 training clips and scored on the 12 test clips: the one test figure.

Grid (what issue 22 asks to choose, in units that carry across cameras):

* ``clip_length_in_frames`` 2, 4, 8 (regions from the clip's first and last frame, flow between them);
* minimum region area as a fraction of the frame's area: 0.0005, 0.00116 (= the example's 100 px at 360x240),
  0.002;
* velocity in pixels (anomalib), in percent of the region's height per clip (perspective: a far person is small and
  slow in pixels), or both;
* velocity GMM components 2 (anomalib ``AiVad``) or 5 (``AiVadModel``);
* streams velocity; velocity + deep; velocity + pose + deep;
* temporal smoothing sigma 0 (raw), 3, 6 frames.

``--regions foreground`` runs the same protocol for the velocity model of ``examples/ped2.yaml`` (foreground boxes
only, no detector; the velocity stream alone; its settings were chosen on the test split by
``benchmarks/ped2_study.py``): the grid above without the stream choice, 162 configurations, a few minutes.

Features come from the pipeline's own components (CenterNet at score 0.3, the AI-VAD foreground boxes and filters,
DIS fast flow, MoveNet on person boxes, EfficientNet-Lite0 layer3 48 px crops with 1.5x context) and are cached
under ``--work``; the density estimators are :mod:`streamad.models.video.aivad`'s, kNN banks k-center 2,000 rows.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from streamad.eval.pseudo_anomalies import PseudoClip, paste_moving_patch, skip_frames
from streamad.frames import Regions
from streamad.metric_math import auroc
from streamad.models.components.centernet import PERSON_LABEL, CenterNetDetector
from streamad.models.components.movenet import MoveNetPose
from streamad.models.components.region_appearance import RegionAppearance
from streamad.models.video.aivad.density import GMMEstimator
from streamad.models.video.aivad.knn import GroupedKNNEstimator
from streamad.operators.foreground_regions import box_area, filter_boxes, foreground_boxes
from streamad.operators.pose_features import pose_vectors
from streamad.operators.velocity_features import in_box_heights, velocity_histogram
from streamad.sources.datasets.ucsd import ucsd_videos
from streamad.sources.image_folder import read_rgb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ped2_study import smooth_clip  # noqa: E402  (the smooth operator's per-clip Gaussian)

LENGTHS = (2, 4, 8)
AREA_FRACTIONS = (0.0005, 0.00116, 0.002)
VELOCITY = ("pixels", "height", "both")
COMPONENTS = (2, 5)
STREAMS = (("velocity",), ("velocity", "deep"), ("velocity", "pose", "deep"))
SIGMAS = (0.0, 3.0, 6.0)
EXAMPLE = dict(length=4, area=0.00116, velocity="pixels", components=5, streams=("velocity", "pose", "deep"),
               sigma=3.0)  # examples/ped2_aivad.yaml before this study
VELOCITY_EXAMPLE = dict(length=4, area=0.00116, velocity="pixels", components=5, streams=("velocity",),
                        sigma=3.0)  # examples/ped2.yaml (foreground regions, the velocity model), chosen on the test
                                    # split by benchmarks/ped2_study.py
MIN_AREA_PX = 40  # extraction keeps boxes above this; larger minima are applied afterwards (module notes)


class Extractor:
    """The pipeline's region and feature components, run on a list of frames for several clip lengths."""

    def __init__(self, models: Path, detector_regions: bool = True) -> None:
        torch.set_num_threads(1)
        self.detector_regions = detector_regions  # False: foreground boxes only, velocity only (examples/ped2.yaml)
        self.det = CenterNetDetector(models / "centernet.onnx", precision="bf16")  # as the examples
        self.pose = MoveNetPose(models / "movenet-multipose.onnx", 96, precision="bf16")
        self.deep = RegionAppearance(layers=["layer3"], crop_size=48, context=1.5)
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.det(frame, 0.3)

    def __call__(self, frames: list[np.ndarray], lengths: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Per clip length ``L``: the regions of the clip ending at every frame (target frame = last) and their
        features; region rows of all frames concatenated, ``n{L}`` regions per frame."""
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        dets = [self.detect(f) if self.detector_regions else empty for f in frames]
        cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # (frame, box) -> (deep, pose)
        out: dict[str, np.ndarray] = {}
        for L in lengths:
            rec: dict[str, list[np.ndarray]] = {k: [] for k in ("boxes", "labels", "vel", "deep", "pose")}
            n = []
            for t, last in enumerate(frames):
                first = frames[max(0, t - L + 1)]
                b, s, lab = dets[t]
                fg = foreground_boxes(first, last, 3, 18, exclude=b)
                r = filter_boxes(Regions(np.concatenate([b, fg]).astype(np.float32),
                                         np.concatenate([s, np.full(len(fg), 0.5, np.float32)]),
                                         np.concatenate([lab, np.zeros(len(fg), np.int64)])), MIN_AREA_PX, 0.65)
                flow = self.dis.calc(cv2.cvtColor(first, cv2.COLOR_RGB2GRAY), cv2.cvtColor(last, cv2.COLOR_RGB2GRAY),
                                     None)
                keys = [(t, *np.round(bx, 2).tolist()) for bx in r.boxes]
                new = [i for i, k in enumerate(keys) if k not in cache]
                if new and not self.detector_regions:  # velocity only: no appearance, no pose
                    cache.update({keys[i]: (np.zeros(112, np.float32), np.full(34, np.nan, np.float32)) for i in new})
                elif new:
                    deep = self.deep(last, r.boxes[new])
                    person = [i for i in new if r.labels[i] == PERSON_LABEL]
                    pose = np.full((len(r), 34), np.nan, np.float32)
                    if person:
                        pose[person] = pose_vectors(self.pose(last, r.boxes[person]), r.boxes[person])
                    for j, i in enumerate(new):
                        cache[keys[i]] = (deep[j], pose[i])
                rec["boxes"].append(r.boxes)
                rec["labels"].append(r.labels)
                rec["vel"].append(velocity_histogram(flow, r.boxes, 1, (), (50, 90, 99)))
                rec["deep"].append(np.stack([cache[k][0] for k in keys]) if keys else np.zeros((0, 112), np.float32))
                rec["pose"].append(np.stack([cache[k][1] for k in keys]) if keys else np.zeros((0, 34), np.float32))
                n.append(len(r))
            out[f"n{L}"] = np.array(n)
            out.update({f"{k}{L}": np.concatenate(v) for k, v in rec.items()})
        out["frame_shape"] = np.array(frames[0].shape[:2])
        return out


def validation_clips(held: list[Any], ext: Extractor, rng: np.random.Generator) -> list[PseudoClip]:
    """The normal, skip-frame and pasted-object versions of each held-out clip (module doc, step 2)."""
    clips: list[PseudoClip] = []
    frames = [[read_rgb(p) for p in v.frame_paths] for v in held]
    for i, f in enumerate(frames):
        clips.append(PseudoClip(f, np.zeros(len(f), np.int64), "normal"))
        start = int(rng.integers(5, len(f) - 30 * 3 - 5))
        clips.append(skip_frames(f, start, 30, 3))
        donor = frames[(i + 1) % len(frames)]
        t = int(rng.integers(0, len(donor)))
        b, s, _ = ext.detect(donor[t])
        fallback = np.array([150, 100, 170, 140])  # a 20x40 px cut mid-frame where the detector finds nothing
        x0, y0, x1, y1 = (b[int(np.argmax(s))] if len(b) else fallback).astype(int)
        patch = donor[t][y0:y1, x0:x1]
        h, w = f[0].shape[:2]
        angle = rng.uniform(0, 2 * np.pi)
        v = (3 * np.cos(angle), 3 * np.sin(angle))
        centre = (rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h)
        start = int(rng.integers(10, len(f) - 60))
        origin = (centre[0] - 25 * v[0], centre[1] - 25 * v[1])
        clips.append(paste_moving_patch(f, patch, start, 50, origin, v))
    return clips


def cached(work: Path, name: str, make: Any) -> dict[str, np.ndarray]:
    path = work / f"{name}.npz"
    if not path.exists():
        t0 = time.time()
        np.savez(path, **make())
        print(f"  {name}: {time.time() - t0:.0f} s", flush=True)
    return dict(np.load(path))


def velocity(z: dict[str, np.ndarray], L: int, mode: str) -> np.ndarray:
    """``(M, 4)`` mean, p50, p90, p99 flow magnitude over the clip (pixels), or in percent of the box height."""
    v = z[f"vel{L}"]
    if mode == "pixels":
        return v
    rel = in_box_heights(v, z[f"boxes{L}"], 1, 0)  # what velocity_features' velocity_units computes
    return rel if mode == "height" else np.concatenate([v, rel], axis=1)


def stream_maxima(fit: list[dict], score: list[dict], L: int, area: float, stream: str, vel_mode: str = "pixels",
                  components: int = 5) -> list[np.ndarray]:
    """Per scored clip, ``(T,)`` the stream's largest normalised region score per frame (0 without regions)."""
    def rows(z: dict) -> tuple[np.ndarray, np.ndarray]:
        keep = box_area(z[f"boxes{L}"]) > area * float(np.prod(z["frame_shape"]))
        x = velocity(z, L, vel_mode) if stream == "velocity" else z[f"{stream}{L}"]
        if stream == "pose":
            keep &= np.isfinite(x).all(axis=1)
        return x, keep
    est: Any
    if stream == "velocity":
        est = GMMEstimator(components, reg_covar=0.01)
        est.fit(np.concatenate([x[k] for x, k in map(rows, fit)]))
    else:
        parts = [rows(z) for z in fit]
        est = GroupedKNNEstimator(1, 2000, "kcenter")
        est.fit(np.concatenate([x[k] for x, k in parts]),
                np.concatenate([np.full(int(k.sum()), i) for i, (_, k) in enumerate(parts)]))
    out = []
    for z in score:
        x, keep = rows(z)
        n = z[f"n{L}"]
        frame_of = np.repeat(np.arange(len(n)), n)
        peak = np.full(len(n), -np.inf)
        if keep.any():
            np.maximum.at(peak, frame_of[keep], est.predict(x[keep]))
        out.append(np.where(np.isfinite(peak), peak, 0.0))
    return out


def combine(maxima: dict[str, list[np.ndarray]], streams: tuple[str, ...], sigma: float) -> list[np.ndarray]:
    per_clip = [sum(maxima[s][i] for s in streams) for i in range(len(maxima[streams[0]]))]
    return [smooth_clip(x, sigma) if sigma > 0 else x for x in per_clip]


def validation_score(scores: list[np.ndarray], clips: list[tuple[str, np.ndarray]]) -> tuple[float, float, float]:
    """(skip AUROC, paste AUROC, their mean): each kind's anomalous frames against every normal frame."""
    normal = np.concatenate([s[lab == 0] for s, (_, lab) in zip(scores, clips)])
    res = []
    for kind in ("skip", "paste"):
        pos = np.concatenate([s[lab == 1] for s, (k, lab) in zip(scores, clips) if k == kind])
        res.append(auroc(np.concatenate([normal, pos]), np.r_[np.zeros(len(normal)), np.ones(len(pos))]))
    return res[0], res[1], float(np.mean(res))


def held_out_split(doc: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
                   ) -> tuple[argparse.Namespace, Path, Path, np.random.Generator, list[Any], list[Any]]:
    """Command line (``--work``, ``--seed``, ``--held-out``, and what ``extra`` adds to the parser) and the seeded
    held-out split of Ped2's training clips (module doc, step 1): ``(args, data root, models folder, rng, held-out
    clips, clips to fit on)``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="feature cache folder")
    ap.add_argument("--seed", type=int, default=0, help="seed of the held-out clips and the pseudo-anomalies")
    ap.add_argument("--held-out", type=int, default=4, help="training clips held out for validation")
    if extra is not None:
        extra(ap)
    args = ap.parse_args()
    data = Path(os.environ.get("STREAMAD_DATA", "../shared/data"))
    models = Path(os.environ.get("STREAMAD_MODELS", data.parent / "models"))
    args.work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    train = ucsd_videos(data / "UCSD_Anomaly_Dataset.v1p2", "UCSDped2", "train")
    held_idx = sorted(rng.choice(len(train), args.held_out, replace=False).tolist())
    held = [train[i] for i in held_idx]
    fit_videos = [v for i, v in enumerate(train) if i not in held_idx]
    print(f"held out (seed {args.seed}): {[v.name for v in held]}; fit on {len(fit_videos)} clips")
    return args, data, models, rng, held, fit_videos


def _regions_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--regions", choices=["detector", "foreground"], default="detector",
                    help="detector: CenterNet + foreground boxes, all streams (examples/*_aivad.yaml); foreground: "
                         "foreground boxes only, velocity only (the velocity model of examples/ped2.yaml)")


def main() -> int:
    args, data, models, rng, held, fit_videos = held_out_split(__doc__ or "", _regions_argument)
    detector_regions = args.regions == "detector"
    grid_streams, example_cfg = (STREAMS, EXAMPLE) if detector_regions else (STREAMS[:1], VELOCITY_EXAMPLE)
    tag_of = "" if detector_regions else "fg_"  # feature cache names of the foreground-only extraction
    root = data / "UCSD_Anomaly_Dataset.v1p2"
    ext = Extractor(models, detector_regions)
    print("features (cached):")
    fit = [cached(args.work, f"{tag_of}train_{v.name}", lambda v=v: ext([read_rgb(p) for p in v.frame_paths], LENGTHS))
           for v in fit_videos]
    clips = validation_clips(held, ext, rng)
    val = [cached(args.work, f"{tag_of}train_{held[i // 3].name}" if c.kind == "normal"
                  else f"{tag_of}val{args.seed}_{c.kind}_{i // 3}",
                  lambda c=c: ext(c.frames, LENGTHS)) for i, c in enumerate(clips)]
    val_labels = [(c.kind, c.labels) for c in clips]

    results = []
    for L, area in itertools.product(LENGTHS, AREA_FRACTIONS):
        maxima_of = {s: stream_maxima(fit, val, L, area, s) for s in ("pose", "deep") if detector_regions}
        for vel_mode, k in itertools.product(VELOCITY, COMPONENTS):
            maxima = {**maxima_of, "velocity": stream_maxima(fit, val, L, area, "velocity", vel_mode, k)}
            for streams, sigma in itertools.product(grid_streams, SIGMAS):
                cfg = dict(length=L, area=area, velocity=vel_mode, components=k, streams=streams, sigma=sigma)
                results.append((validation_score(combine(maxima, streams, sigma), val_labels), cfg))
        print(f"  L={L} area={area}: best so far {max(r[0][2] for r in results):.3f}", flush=True)
    results.sort(key=lambda r: -r[0][2])  # stable: ties keep grid order
    print(f"\nvalidation: frame AUROC on {sum(len(lab) for _, lab in val_labels)} frames of held-out clips "
          "(skip-frame vs normal, pasted object vs normal, mean)")
    print(f"{'configuration':<95}{'skip':>7}{'paste':>7}{'mean':>7}")
    example = next(r for r in results if r[1] == example_cfg)
    for (s, p, m), cfg in results[:10] + [example]:
        tag = f"  <- examples/{'ped2_aivad' if detector_regions else 'ped2'}.yaml before" if cfg == example_cfg else ""
        print(f"{str(cfg):<95}{s:7.3f}{p:7.3f}{m:7.3f}{tag}")
    best = results[0][1]
    print(f"\nchosen: {best}")

    L, area = int(best["length"]), float(best["area"])  # type: ignore[arg-type]
    full = fit + [cached(args.work, f"{tag_of}train_{v.name}", lambda v=v: ext([read_rgb(p) for p in v.frame_paths],
                                                                          LENGTHS)) for v in held]
    tests = ucsd_videos(root, "UCSDped2", "test")
    test = [cached(args.work, f"{tag_of}test_{v.name}_L{L}", lambda v=v: ext([read_rgb(p) for p in v.frame_paths], (L,)))
            for v in tests]
    maxima = {s: stream_maxima(full, test, L, area, s, str(best["velocity"]), int(best["components"]))  # type: ignore
              for s in best["streams"]}  # type: ignore[union-attr]
    labels = np.concatenate([v.labels for v in tests])
    streams, sigma = best["streams"], float(best["sigma"])  # type: ignore[arg-type]
    raw = auroc(np.concatenate(combine(maxima, streams, 0.0)), labels)  # type: ignore[arg-type]
    chosen = auroc(np.concatenate(combine(maxima, streams, sigma)), labels)  # type: ignore[arg-type]
    print(f"test (fit on all 16 training clips, {len(labels)} test frames): frame AUROC raw {raw:.3f}, "
          f"with the chosen smoothing (sigma {sigma:g} frames) {chosen:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
