"""Recall of persons by box height for CenterNet on the whole frame and in tiles (``object_regions``'
``detector_min_scale``): how small a far person may be and still become a region.

    STREAMAD_DATA=../shared/data python benchmarks/person_recall.py [--frames 24] [--json out.json]

No dataset here labels every person, so the ground truth is made from ``vtest.avi`` (768x576, a walkway filmed from
above, people 60-140 px tall): the persons CenterNet finds on a frame at score >= ``--ref-score`` (0.45; clear,
whole people, checked by eye on this video) are the reference. To make them far and small, the frame is shrunk by a
factor ``f`` and repeated ``ceil(1/f)`` times across and down a canvas of the original 768x576 (a camera seeing a
larger scene from further away); the reference boxes are shrunk and repeated with it, and a box counts as found when a
person detection (score >= 0.3, the examples' ``box_score_thresh``) overlaps it with IoU >= 0.5. Recall is
reported by the reference box's height in canvas pixels, for each detector mode, with the detector's time per frame
and the detections per frame that match no reference (the reference misses some people, so this is an upper bound
on false detections, not a count of them).

The scene making and matching are :mod:`streamad.eval.detection_recall`'s. The canvas is 768x576 and CenterNet's input 512x512, so the whole-frame mode runs at 0.67 (across) x 0.89 (down)
network pixels per frame pixel; ``detector_min_scale`` s runs tiles of ``512 / s`` frame pixels as well.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import av
import numpy as np

from streamad.eval.detection_recall import far_scene, match_boxes
from streamad.models.components.centernet import PERSON_LABEL, CenterNetDetector
from streamad.models.components.tiled_detection import TiledDetector

FACTORS = (1.0, 0.7, 0.5, 0.35, 0.25, 0.18)
HEIGHT_BINS = (0, 16, 24, 32, 48, 64, 96, 10_000)
MODES = {"whole frame": None, "min_scale 1.0": 1.0, "min_scale 1.4": 1.4}
SCORE = 0.3


def read_frames(path: Path, count: int, every: int) -> list[np.ndarray]:
    """``count`` RGB frames of the video, one every ``every``."""
    out = []
    with av.open(str(path)) as box:
        for i, frame in enumerate(box.decode(video=0)):
            if i % every == 0:
                out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == count:
                break
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=24, help="vtest.avi frames (one every 30)")
    ap.add_argument("--ref-score", type=float, default=0.45, help="score of the reference persons")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    data = Path(os.environ.get("STREAMAD_DATA", "../shared/data"))
    models = Path(os.environ.get("STREAMAD_MODELS", data.parent / "models"))
    base = CenterNetDetector(models / "centernet.onnx", precision="bf16")  # as the AI-VAD examples
    detectors = {name: base if s is None else TiledDetector(base, base.input_size, s) for name, s in MODES.items()}
    frames = read_frames(data / "opencv" / "vtest.avi", args.frames, 30)
    refs = []
    for fr in frames:
        b, s, lab = base(fr, args.ref_score)
        refs.append(b[lab == PERSON_LABEL])
    print(f"{len(frames)} frames of vtest.avi, {sum(len(r) for r in refs)} reference persons "
          f"(heights {min(float((r[:, 3] - r[:, 1]).min()) for r in refs if len(r)):.0f}-"
          f"{max(float((r[:, 3] - r[:, 1]).max()) for r in refs if len(r)):.0f} px)")
    heights: list[float] = []
    found: dict[str, list[bool]] = {m: [] for m in MODES}
    extra = {m: 0 for m in MODES}
    seconds = {m: 0.0 for m in MODES}
    calls = 0
    for f in FACTORS:
        for fr, ref in zip(frames, refs):
            canvas, gt = far_scene(fr, ref, f)
            heights.extend((gt[:, 3] - gt[:, 1]).tolist())
            calls += 1
            for name, det in detectors.items():
                t0 = time.perf_counter()
                b, s, lab = det(canvas, SCORE)
                seconds[name] += time.perf_counter() - t0
                hit, left = match_boxes(gt, b[lab == PERSON_LABEL])
                found[name].extend(hit.tolist())
                extra[name] += left
        print(f"  shrink {f}: done", flush=True)
    h = np.array(heights)
    bins = list(zip(HEIGHT_BINS[:-1], HEIGHT_BINS[1:]))
    print(f"\nrecall of persons by box height on the 768x576 canvas (score >= {SCORE}, IoU >= 0.5)")
    head = "".join(f"{f'{lo}-{hi}' if hi < 10_000 else f'>={lo}':>9}" for lo, hi in bins)
    print(f"{'mode':<16}{head}{'ms/frame':>10}{'unmatched/frame':>17}")
    table = {}
    for name in MODES:
        hit = np.array(found[name])
        rec = [float(hit[(h >= lo) & (h < hi)].mean()) if ((h >= lo) & (h < hi)).any() else float("nan")
               for lo, hi in bins]
        ms = 1000 * seconds[name] / calls
        table[name] = {"recall": rec, "ms_per_frame": ms, "unmatched_per_frame": extra[name] / calls}
        print(f"{name:<16}" + "".join(f"{r:9.2f}" for r in rec) + f"{ms:10.0f}{extra[name] / calls:17.1f}")
    counts = [int(((h >= lo) & (h < hi)).sum()) for lo, hi in bins]
    print(f"{'persons':<16}" + "".join(f"{c:9d}" for c in counts))
    if args.json:
        args.json.write_text(json.dumps({"bins": bins, "persons": counts, "modes": table,
                                         "load": os.getloadavg()[0]}, indent=1))
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
