"""Which share of UCSD Ped2's anomalous objects the region extractor finds at all, by object size.

    STREAMAD_DATA=../shared/data python benchmarks/region_coverage.py [--config examples/ped2_aivad.yaml]
        [--min-overlap 0.3] [--json out.json]

AI-VAD scores regions: an anomalous object that no extracted region covers cannot raise the frame score by its own
features, whatever the density estimators do. This runs the config's operators up to and including
``object_regions`` (clip windowing, CenterNet detections and foreground boxes, in eval mode, so ``detect_every``
applies) over the 12 test clips and, for every test frame with a ground-truth mask, takes each connected component
(8-connected) of the mask as one ground-truth anomalous object. The object counts as covered when the extracted boxes
of its frame cover at least ``--min-overlap`` of its mask pixels. Objects are grouped by the height of their mask
component in pixels (Ped2 frames are 360x240; far people are small). Printed: objects, covered share per height
band, and overall; ``--json`` writes the same.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from streamad.config import load_config_text
from streamad.frames import Clip
from streamad.runtime.run import RunBuilder

REPO = Path(__file__).resolve().parents[1]
BANDS = [(0, 20), (20, 30), (30, 45), (45, 70), (70, 10_000)]  # mask component height, pixels


def coverage_of_frame(mask: np.ndarray, boxes: np.ndarray, min_overlap: float) -> list[tuple[int, bool]]:
    """``[(height in pixels, covered)]`` for each 8-connected component of ``mask`` ``(H, W) bool``, covered when
    the union of ``boxes`` ``(M, 4)`` x1, y1, x2, y2 (pixels) holds at least ``min_overlap`` of its pixels."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    inside = np.zeros(mask.shape, bool)
    h, w = mask.shape
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4):
        r0, r1 = max(int(np.floor(y1)), 0), min(int(np.ceil(y2)), h)
        c0, c1 = max(int(np.floor(x1)), 0), min(int(np.ceil(x2)), w)
        inside[r0:r1, c0:c1] = True
    out = []
    for i in range(1, n):
        component = labels == i
        out.append((int(stats[i, cv2.CC_STAT_HEIGHT]), bool(inside[component].mean() >= min_overlap)))
    return out


def region_pipeline(config: Path) -> Any:
    """``config`` cut after its ``object_regions`` operator, streams on Ped2's test split, no sinks."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    ops = data["operators"]
    cut = next(i for i, op in enumerate(ops) if op["kind"] == "object_regions")
    data["operators"] = ops[:cut + 1]
    data["sinks"] = []
    data["data_root"] = os.environ.get("STREAMAD_DATA", str(REPO.parent / "shared" / "data"))
    return load_config_text(yaml.safe_dump(data), name=str(config), path=config)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "examples" / "ped2_aivad.yaml")
    ap.add_argument("--min-overlap", type=float, default=0.3, help="share of an object's mask pixels to cover")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    cfg = region_pipeline(args.config)
    builder = RunBuilder(cfg, "eval")
    objects: list[tuple[int, bool]] = []
    frames = {"with_mask": 0, "regions": 0}

    def consume(msg: Any) -> None:
        if not isinstance(msg, Clip) or msg.target.mask is None or not msg.target.mask.any():
            return
        boxes = msg.regions.boxes if msg.regions is not None else np.zeros((0, 4), np.float32)
        frames["with_mask"] += 1
        frames["regions"] += len(boxes)
        objects.extend(coverage_of_frame(msg.target.mask, boxes, args.min_overlap))

    run = builder.build(builder.sources(cfg.streams, "streams"), consumers=[consume])
    stats = run.run()
    if stats.errors:
        print(f"streams failed: {stats.errors}", file=sys.stderr)
        return 1
    rows = []
    for lo, hi in BANDS:
        band = [c for h, c in objects if lo <= h < hi]
        rows.append({"height_px": f"{lo}-{hi if hi < 10_000 else ''}", "objects": len(band),
                     "covered": float(np.mean(band)) if band else None})
    total = {"objects": len(objects), "covered": float(np.mean([c for _, c in objects])) if objects else None,
             "anomalous_frames": frames["with_mask"],
             "regions_per_frame": frames["regions"] / max(frames["with_mask"], 1)}
    print(f"{args.config.name}: region coverage of Ped2's anomalous objects (mask components in anomalous test "
          f"frames; covered = boxes hold >= {args.min_overlap:.0%} of the object's pixels)")
    print("| object height (px) | objects | covered |\n|---|---:|---:|")
    for r in rows:
        covered = "-" if r["covered"] is None else f"{r['covered']:.3f}"
        print(f"| {r['height_px']} | {r['objects']} | {covered} |")
    print(f"| all | {total['objects']} | {total['covered']:.3f} |")
    print(f"{total['anomalous_frames']} anomalous frames, {total['regions_per_frame']:.1f} regions per frame")
    if args.json is not None:
        args.json.write_text(json.dumps({"config": str(args.config), "min_overlap": args.min_overlap, "bands": rows,
                                         "total": total}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
