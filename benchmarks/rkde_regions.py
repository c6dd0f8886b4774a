"""What R-KDE's region step finds on the Magnetic Tile split: per class, the share of images on which a CenterNet box
survives anomalib's filters (the others get the fallback), boxes per image, and the share of each defect's mask
pixels that some region covers (a defect no region covers cannot raise its image's score by its own features).

    STREAMAD_DATA=../shared/data python benchmarks/rkde_regions.py [--config examples/magnetic_tile_rkde.yaml]
        [--splits train validation test] [--set min_box_size=25] [--json out.json]

The regions are those of :meth:`streamad.models.image.rkde.Rkde.propose` with the config's model section
(``--set key=value`` changes it; the value is YAML), on each image resized to the model's ``input_size`` as the
pipeline does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import yaml

from streamad.config import load_config_text
from streamad.models.image import IMAGE_MODELS
from streamad.models.image.preprocess import resize_image, resize_mask
from streamad.models.image.rkde.paint import paint_boxes
from streamad.sources.datasets.folder import magnetic_tile_samples
from streamad.sources.image_folder import read_rgb

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "examples" / "magnetic_tile_rkde.yaml")
    ap.add_argument("--splits", nargs="+", default=["train", "validation", "test"],
                    choices=["train", "validation", "test"])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    data = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    overrides = (item.partition("=") for item in args.overrides)
    data["operators"][0]["model"].update({key: yaml.safe_load(value) for key, _, value in overrides})
    model = IMAGE_MODELS.get("rkde")(load_config_text(yaml.safe_dump(data), name=str(args.config),
                                                      path=args.config).operators[0].model)
    root = Path(os.environ.get("STREAMAD_DATA", REPO.parent / "shared" / "data")) / "magnetic_tile"
    rows = []
    for split in args.splits:
        acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for sample in magnetic_tile_samples(root, split):
            image = resize_image(read_rgb(sample.path), model.input_size)
            _, boxes, detected = model.propose(image)
            a = acc[sample.group]
            a["detected"].append(detected)
            a["boxes"].append(len(boxes[0]))
            if sample.mask is not None and sample.label == 1:
                mask = resize_mask(cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE), model.input_size)
                if mask.any():
                    covered = paint_boxes(boxes[0], np.ones(len(boxes[0])), model.input_size) > 0
                    a["covered"].append(float(covered[mask].mean()))
        for group, a in sorted(acc.items()):
            row = {"split": split, "class": group, "images": len(a["detected"]),
                   "with_detections": float(np.mean(a["detected"])), "boxes_per_image": float(np.mean(a["boxes"])),
                   "defect_pixels_covered": float(np.mean(a["covered"])) if a["covered"] else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
    cells = [(r["split"], r["class"], r["images"], f"{r['with_detections']:.2f}", f"{r['boxes_per_image']:.1f}",
              "-" if r["defect_pixels_covered"] is None else f"{r['defect_pixels_covered']:.2f}") for r in rows]
    print("\n| split | class | images | with a detection | boxes / image | defect pixels covered |\n"
          "|---|---|---:|---:|---:|---:|\n" + "\n".join("| " + " | ".join(map(str, c)) + " |" for c in cells))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
