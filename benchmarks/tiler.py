"""The image-model tiler on a large frame: OpenCV's vtest.avi (768x576 pedestrians) with a small synthetic defect
pasted into half of the held-out frames, scored by PaDiM untiled (the whole frame resized to
its input size) and tiled at each ``--tiles`` size.

    STREAMAD_DATA=../shared/data python benchmarks/tiler.py [--tiles 256 384] [--defect 12]
        [--work runs/bench_tiler] [--json out.json]

Frames (every 5th of 0-499 train; every 4th of 500-639 validation; every 4th of 640-794 test) are written once
under ``--work`` as folder datasets; in the validation and test frames, every other frame gets a
``defect x defect`` patch of seeded random grey-level noise at a seeded random place, and its mask. The model is
PaDiM with its defaults (EfficientNet-Lite0 layer1-3, 100 channels, 256x256 input, PaDiM's own 1x1 embedding),
fitted on the training frames (or their tiles) and calibrated on the validation frames. The tile size is chosen on
the ``validation`` rows (highest image AUROC); the ``test`` rows are reported. Tiles smaller than the model's input
would be upsampled (more compute for no new pixels) and are not offered by default. frames/s is the evaluation
pipeline's through torch on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import yaml

from streamad.config import load_config_text
from streamad.runtime.jobs import evaluate, fit

REPO = Path(__file__).resolve().parents[1]
SPLITS = {"train": (0, 500, 5), "validation": (500, 640, 4), "test": (640, 795, 4)}


def write_frames(video: Path, root: Path, defect: int, seed: int = 0) -> None:
    """Decode ``video`` and write ``root/<split>/{good,bad,masks}`` PNG folders (see the module doc)."""
    if (root / "done").exists():
        return
    rng = np.random.default_rng(seed)
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    for split, (start, stop, step) in SPLITS.items():
        for name in ("good", "bad", "masks"):
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for k, idx in enumerate(range(start, min(stop, len(frames)), step)):
            img = frames[idx].copy()
            if split == "train" or k % 2 == 0:
                cv2.imwrite(str(root / split / "good" / f"{idx:04d}.png"), img)
                continue
            h, w = img.shape[:2]
            y, x = int(rng.integers(0, h - defect)), int(rng.integers(0, w - defect))
            img[y:y + defect, x:x + defect] = rng.integers(0, 256, (defect, defect, 1), dtype=np.uint8)
            mask = np.zeros((h, w), np.uint8)
            mask[y:y + defect, x:x + defect] = 255
            cv2.imwrite(str(root / split / "bad" / f"{idx:04d}.png"), img)
            cv2.imwrite(str(root / split / "masks" / f"{idx:04d}.png"), mask)
    (root / "done").write_text("ok", encoding="utf-8")


def pipeline(root: Path, model_dir: Path, split: str, tile: int | None) -> Any:
    """PaDiM (defaults) on the vtest folders, streams on ``split``, tiled at ``tile`` pixels or not."""
    op = {"kind": "image_model", "model": {"kind": "padim"}, "min_region_area": 4}
    if tile is not None:
        op["tiler"] = {"tile_size": [tile, tile]}

    def folder(s: str) -> dict[str, Any]:
        if s == "train":
            return {"kind": "folder", "id": "vtest", "root": str(root), "normal_dir": "train/good",
                    "split": "train", "normal_split_ratio": 0.0}
        return {"kind": "folder", "id": f"vtest_{s}", "root": str(root), "normal_dir": "train/good",
                "normal_test_dir": f"{s}/good", "abnormal_dir": f"{s}/bad", "mask_dir": f"{s}/masks", "split": "test"}

    data = {"name": "vtest_tiler", "model_dir": str(model_dir), "streams": [folder(split)],
            "fit": {"train": [folder("train")], "validation": [folder("validation")],
                    "threshold": {"method": "f1_adaptive"}},
            "operators": [op, {"kind": "threshold"}], "sinks": []}
    return load_config_text(yaml.safe_dump(data), name="benchmarks/tiler.py")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", nargs="+", type=int, default=[256, 384], help="tile sizes to compare (pixels)")
    ap.add_argument("--defect", type=int, default=12, help="side of the pasted defect in pixels")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_tiler")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    data_root = Path(os.environ.get("STREAMAD_DATA", REPO.parent / "shared" / "data"))
    video = data_root / "opencv" / "vtest.avi"
    if not video.is_file():
        ap.error(f"{video} not found: set STREAMAD_DATA to the folder holding opencv/vtest.avi")
    work = args.work.resolve()
    root = work / f"frames_{args.defect}px"
    write_frames(video, root, args.defect)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f}; defect {args.defect}x{args.defect} px in 768x576 frames",
          flush=True)
    rows = []
    for tile in [None, *args.tiles]:
        model_dir = work / f"model_{tile or 'untiled'}"
        t0 = time.perf_counter()
        fit(pipeline(root, model_dir, "validation", tile), quiet=True)
        fit_s = time.perf_counter() - t0
        for split in ("validation", "test"):
            report, stats = evaluate(pipeline(root, model_dir, split, tile), quiet=True)
            row = {"tile": tile, "split": split, "frames": report.frames, "image_auroc": report.image_auroc,
                   "pixel_auroc": report.pixel_auroc, "pixel_aupro": report.pixel_aupro, "fit_s": fit_s,
                   "fps": stats.fps}
            rows.append(row)
            print(json.dumps(row), flush=True)
    tiled = [r for r in rows if r["split"] == "validation" and r["tile"] is not None]
    chosen = max(tiled, key=lambda r: r["image_auroc"])["tile"] if tiled else None
    print(f"\ntile size chosen on validation: {chosen}")
    print("\n| tiling | split | image AUROC | pixel AUROC | AUPRO (0.3) | fit (s) | frames/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        name = "untiled" if r["tile"] is None else f"{r['tile']}x{r['tile']}" + (" (chosen)" if r["tile"] == chosen
                                                                                 else "")
        print(f"| {name} | {r['split']} | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} | {r['pixel_aupro']:.3f} | "
              f"{r['fit_s']:.0f} | {r['fps']:.1f} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"chosen_tile": chosen, "rows": rows}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
