"""Which part of a fitted EfficientAD model separates the Magnetic Tile validation half's defective images.

    STREAMAD_DATA=../shared/data python benchmarks/efficient_ad_parts.py MODEL_DIR [--train-every 8]

MODEL_DIR is a model ``streamad fit`` wrote for examples/magnetic_tile_efficient_ad.yaml (or ``benchmarks/
image_models.py --models efficient_ad``). Each image of the validation half is resized to the model's input as the
pipeline does (``INTER_AREA``) and scored by one part at a time; the image score is the part's largest value over
the image, and the script prints its image AUROC:

* the student-teacher map and the autoencoder-student map (unnormalised, ``EfficientAdNetwork.raw_maps``), and the
  student-teacher map's mean;
* the teacher's own features: the largest mean square of its standardised channels at a position (energy);
* the distillation source, EfficientNet-Lite0 ``layer2`` + ``layer3`` (``layer3`` resized to ``layer2``), each
  channel standardised over every ``--train-every``-th training image: the same energy.

The energy is a weak test of a feature set (density or distance models such as PaDiM and PatchCore do not score it);
it shows whether the parts respond to defects at all. Only the validation half is read.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamad.metric_math import auroc  # noqa: E402
from streamad.models.components.backbone import build_feature_extractor  # noqa: E402
from streamad.models.store import load_model  # noqa: E402
from streamad.sources.datasets.folder import magnetic_tile_samples  # noqa: E402


def image(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """``(1, 3, H, W) float32`` 0-255 RGB at ``size`` ``(H, W)``."""
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--train-every", type=int, default=8)
    args = ap.parse_args()
    root = Path(os.environ.get("STREAMAD_DATA", "data")) / "magnetic_tile"
    model, _ = load_model(args.model_dir)
    net = model.require_network().eval()  # type: ignore[union-attr]
    size = tuple(model.input_size)  # type: ignore[union-attr]
    backbone = build_feature_extractor("efficientnet_lite0", ["layer2", "layer3"])

    def source(x: torch.Tensor) -> torch.Tensor:
        out = backbone(x)
        l3 = torch.nn.functional.interpolate(out["layer3"], size=out["layer2"].shape[-2:], mode="bilinear")
        return torch.cat([out["layer2"], l3], 1)[0]

    with torch.no_grad():
        train = torch.stack([source(image(s.path, size)) for s in magnetic_tile_samples(root, "train")
                             [::args.train_every]])
        mean, std = train.mean((0, 2, 3))[:, None, None], train.std((0, 2, 3))[:, None, None] + 1e-6
        rows = []
        samples = magnetic_tile_samples(root, "validation")
        for s in samples:
            x = image(s.path, size)
            st, ae = net.raw_maps(x / 255.0)
            t = net.teacher_features(x / 255.0)
            rows.append([st.max().item(), ae.max().item(), st.mean().item(), (t ** 2).mean(1).max().item(),
                         (((source(x) - mean) / std) ** 2).mean(0).max().item()])
    labels = np.array([s.label for s in samples], int)
    scores = np.array(rows)
    print(f"{args.model_dir}: validation half, {len(samples)} images ({labels.sum()} defective), input {size}")
    names = ["student-teacher map, max", "autoencoder map, max", "student-teacher map, mean",
             "teacher feature energy, max", "Lite0 layer2+3 energy, max"]
    for k, name in enumerate(names):
        print(f"  {name:30s} image AUROC {auroc(scores[:, k], labels):.3f}")


if __name__ == "__main__":
    main()
