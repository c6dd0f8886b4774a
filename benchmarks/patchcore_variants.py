"""What moves PatchCore's pixel AUROC on Magnetic Tile: a table of variants of a baseline model, a study for choosing
settings, so it scores the validation half of the held-out images by default.

    STREAMAD_DATA=../shared/data python benchmarks/patchcore_variants.py [--rows baseline bank_10k ...]
        [--split validation|test] [--json out.json]

Each row is streamad's ``Patchcore`` (the model the ``image_model`` operator runs, torch): ``BASELINE`` (anomalib's
settings on EfficientNet-Lite0, the Magnetic Tile example's model until the band-shaped neighbourhood was measured)
changed as the row says; the row ``EXAMPLE_ROW`` is the model of ``examples/magnetic_tile_patchcore.yaml`` (checked
at start). Each is fitted on the split's 762 training images and
scored on the ``--split`` half of its held-out images (validation: 289 images, test: 293). The images are read and resized as ``streamad fit`` / ``streamad eval`` read them
(``read_rgb``, ``ImageSet``); the metrics are streamad's (image AUROC; pixel AUROC and AUPRO at fpr 0.3 over every
pixel of the scored half, anomalib's definitions). Rows that only change the Gaussian blur of the anomaly map
(anomalib: sigma 4 at the input size) rescore the memory bank of the row they name.

Besides the whole-split figures, each row prints:

* the pixel AUROC of each defect class with the scored half's normal images (``streamad eval``'s per-stream figure);
* ``Uneven within``: the pixel AUROC over the MT_Uneven images only, i.e. how well the map ranks the pixels of the
  annotated band above the rest of the same images. MT_Uneven holds 72 % of the split's anomalous pixels.

The scoring time is the torch forward pass per image (batch 16; 2 above 20,000 bank patches; this machine's
threads), an indication of the bank's cost; serving speed is measured by ``benchmarks/image_serve_fps.py``.
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

import numpy as np
import torch
import yaml

from streamad.metric_math import auroc, pixel_metrics
from streamad.models.components.upsample_blur import UpsampleBlur
from streamad.models.image import IMAGE_MODELS
from streamad.models.image.image_set import ImageSet
from streamad.sources.datasets.folder import magnetic_tile_samples
from streamad.sources.image_folder import read_mask, read_rgb

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "magnetic_tile_patchcore.yaml"
EXAMPLE_ROW = "lite2_input_384_layer3_patch_13x23_bank_10k"
#: anomalib's PatchCore settings on EfficientNet-Lite0 (layer2 + layer3, 256 px, patch 3), with a 1 % coreset of a
#: 100,000-patch sample
BASELINE: dict[str, Any] = {"kind": "patchcore", "backbone": "efficientnet_lite0", "layers": ["layer2", "layer3"],
                            "input_size": [256, 256], "coreset_sampling_ratio": 0.01, "max_coreset_input": 100000,
                            "num_neighbors": 9}

#: row name -> (changes to BASELINE, blur sigma in pixels, row whose fitted bank it reuses)
ROWS: dict[str, tuple[dict[str, Any], float, str | None]] = {
    "baseline": ({}, 4.0, None),
    "bank_10k": ({"coreset_sampling_ratio": 0.1}, 4.0, None),
    "layer3_bank_5k": ({"layers": ["layer3"], "coreset_sampling_ratio": 0.1, "max_coreset_input": 50000}, 4.0, None),
    "layer3_every_patch": ({"layers": ["layer3"], "coreset_sampling_ratio": 1.0, "max_coreset_input": None},
                           4.0, None),
    "layer3_4_bank_2k": ({"layers": ["layer3", "layer4"], "coreset_sampling_ratio": 0.1,
                          "max_coreset_input": 20000}, 4.0, None),
    "input_128_every_patch": ({"input_size": [128, 128], "coreset_sampling_ratio": 1.0, "max_coreset_input": None},
                              2.0, None),
    "baseline_sigma_8": ({}, 8.0, "baseline"),
    "baseline_sigma_16": ({}, 16.0, "baseline"),
    "baseline_sigma_32": ({}, 32.0, "baseline"),
    "layer3_every_patch_sigma_16": ({"layers": ["layer3"], "coreset_sampling_ratio": 1.0,
                                     "max_coreset_input": None}, 16.0, "layer3_every_patch"),
    "baseline_patch_9": ({"patch_size": 9}, 4.0, None),
    "layer3_patch_9_bank_5k": ({"layers": ["layer3"], "patch_size": 9, "coreset_sampling_ratio": 0.1,
                                "max_coreset_input": 50000}, 4.0, None),
    "layer3_patch_13_bank_5k": ({"layers": ["layer3"], "patch_size": 13, "coreset_sampling_ratio": 0.1,
                                 "max_coreset_input": 50000}, 4.0, None),
    "input_384_layer3_patch_13_bank_5k": ({"input_size": [384, 384], "layers": ["layer3"], "patch_size": 13,
                                           "coreset_sampling_ratio": 0.1, "max_coreset_input": 50000}, 4.0, None),
    "lite2_baseline": ({"backbone": "efficientnet_lite2"}, 4.0, None),
    "lite2_input_384_layer3_patch_13_bank_5k": ({"backbone": "efficientnet_lite2", "input_size": [384, 384],
                                                 "layers": ["layer3"], "patch_size": 13,
                                                 "coreset_sampling_ratio": 0.1, "max_coreset_input": 50000},
                                                4.0, None),
    "lite2_input_384_layer3_patch_17_bank_5k": ({"backbone": "efficientnet_lite2", "input_size": [384, 384],
                                                 "layers": ["layer3"], "patch_size": 17,
                                                 "coreset_sampling_ratio": 0.1, "max_coreset_input": 50000},
                                                4.0, None),
    "lite2_input_384_layer3_patch_13x23_bank_5k": ({"backbone": "efficientnet_lite2", "input_size": [384, 384],
                                                    "layers": ["layer3"], "patch_size": [13, 23],
                                                    "coreset_sampling_ratio": 0.1, "max_coreset_input": 50000},
                                                   4.0, None),
    "lite2_input_384_layer3_patch_13x23_bank_10k": ({"backbone": "efficientnet_lite2", "input_size": [384, 384],
                                                     "layers": ["layer3"], "patch_size": [13, 23],
                                                     "coreset_sampling_ratio": 0.2, "max_coreset_input": 50000},
                                                    4.0, None),
}
DEFECTS = ("MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven")


def image_sets(root: Path, size: tuple[int, int], split: str) -> tuple[ImageSet, ImageSet, np.ndarray]:
    """Train and scored (``split``) :class:`ImageSet` at ``size`` and the scored images' classes ``(N,) str``."""
    train, test = ImageSet(size), ImageSet(size)
    for s in magnetic_tile_samples(root, "train"):
        train.append(read_rgb(s.path), 0, name=s.path.name)
    groups = []
    for s in magnetic_tile_samples(root, split):
        test.append(read_rgb(s.path), s.label, read_mask(s.mask) if s.mask else None, name=s.path.name)
        groups.append(s.group)
    return train, test, np.asarray(groups)


def run_row(name: str, model: Any, sigma: float, test: ImageSet, groups: np.ndarray) -> dict[str, Any]:
    """Score ``test`` with ``model``'s network, its map blurred with ``sigma``; the row's metrics."""
    net = model.network
    net.upsample_blur = UpsampleBlur(net.size, sigma, "nearest")
    maps, scores = [], []
    batch = 16 if net.memory_bank.shape[0] <= 20000 else 2  # the (batch, patches, bank) distance matrix
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in test.batches(batch):
            amap, score = net(torch.from_numpy(b.images))
            maps.append(amap[:, 0].numpy())
            scores.append(score.numpy())
    ms = (time.perf_counter() - t0) / len(test) * 1000
    amaps = np.concatenate(maps)
    masks = np.concatenate([b.masks for b in test.batches(64)])
    labels = np.asarray(test.labels)
    whole = pixel_metrics(amaps, masks)
    normal = groups == "MT_Free"
    per_class = {g[3:]: round(pixel_metrics(amaps[normal | (groups == g)], masks[normal | (groups == g)],
                                            with_aupro=False)["auroc"], 3) for g in DEFECTS}
    uneven = groups == "MT_Uneven"
    return {"row": name, "bank": int(net.memory_bank.shape[0]), "sigma": sigma,
            "image_auroc": auroc(np.concatenate(scores), labels), "pixel_auroc": whole["auroc"],
            "pixel_aupro": whole["aupro"], "per_class_pixel_auroc": per_class,
            "uneven_within": pixel_metrics(amaps[uneven], masks[uneven], with_aupro=False)["auroc"],
            "ms_per_image": ms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--split", choices=["validation", "test"], default="validation",
                    help="the held-out half scored (choose settings on validation; report on test once)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args()
    root = Path(os.environ.get("STREAMAD_DATA", str(REPO.parent / "shared" / "data"))) / "magnetic_tile"
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["operators"][0]["model"]
    if {**BASELINE, **ROWS[EXAMPLE_ROW][0]} != example:
        raise SystemExit(f"{EXAMPLE}: its model section is no longer row {EXAMPLE_ROW}; update EXAMPLE_ROW")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch threads "
          f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}", flush=True)
    fitted: dict[str, tuple[Any, float]] = {}
    sets: dict[tuple[int, int], tuple[ImageSet, ImageSet, np.ndarray]] = {}
    rows = []
    wanted = list(dict.fromkeys([r for name in args.rows for r in (ROWS[name][2], name) if r is not None]))
    for name in wanted:
        changes, sigma, reuse = ROWS[name]
        if reuse is None:
            cfg = {**BASELINE, **changes}
            size = (int(cfg["input_size"][0]), int(cfg["input_size"][1]))
            if size not in sets:
                sets[size] = image_sets(root, size, args.split)
            cls = IMAGE_MODELS.get("patchcore")
            model = cls(cls.Config.model_validate(cfg))
            t0 = time.perf_counter()
            model.fit(sets[size][0])
            fitted[name] = (model, time.perf_counter() - t0)
        model, fit_s = fitted[reuse or name]
        _, test, groups = sets[tuple(int(v) for v in model.config.input_size)]
        if name in args.rows:
            row = {**run_row(name, model, sigma, test, groups), "fit_s": fit_s,
                   "layers": model.config.layers, "input_size": list(model.config.input_size)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| row | layers | input | bank | blur sigma | image AUROC | pixel AUROC | AUPRO (0.3) | "
          "Uneven within | fit (s) | ms / image |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['row']} | {'+'.join(x.removeprefix('layer') for x in r['layers'])} | {r['input_size'][0]} | "
              f"{r['bank']:,} | {r['sigma']:g} | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} | "
              f"{r['pixel_aupro']:.3f} | {r['uneven_within']:.3f} | {r['fit_s']:.0f} | {r['ms_per_image']:.0f} |")
    print("\nper-class pixel AUROC (with the scored half's normal images):")
    for r in rows:
        print(f"  {r['row']}: " + ", ".join(f"{k} {v:.3f}" for k, v in r["per_class_pixel_auroc"].items()))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    for s in sets.values():
        s[0].close()
        s[1].close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
