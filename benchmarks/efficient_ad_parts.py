"""Which part of a fitted EfficientAD model separates the Magnetic Tile validation half's defective images.

    STREAMAD_DATA=../shared/data python benchmarks/efficient_ad_parts.py MODEL_DIR [--train-every 8] [--knn]

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
it shows whether the parts respond to defects at all. ``--knn`` adds the stronger test: each feature set (the teacher's
standardised features, the student's first half, the distillation source) scored as a plain nearest-neighbour model,
an image's score being its largest distance from a patch to the nearest of ``--bank`` random training patches (every
``--train-every``-th training image, each channel standardised over them; Euclidean, scikit-learn's exact search).
It tells how much of what the source can tell apart survives the distillation into the teacher and the training
of the student. Only the validation half is read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

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
    ap.add_argument("--knn", action="store_true", help="also score each feature set as a nearest-neighbour model")
    ap.add_argument("--bank", type=int, default=30000, help="training patches in each --knn bank")
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
        train_images = [image(s.path, size) for s in magnetic_tile_samples(root, "train")[::args.train_every]]
        train = torch.stack([source(x) for x in train_images])
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
        print(f"  {name:40s} image AUROC {auroc(scores[:, k], labels):.3f}")
    if args.knn:
        parts = {"teacher": lambda x: net.teacher_features(x / 255.0)[0],
                 "student (first half)": lambda x: net.student(x / 255.0)[0, :net.channels],
                 "Lite0 layer2+3": source}
        with torch.no_grad():
            valid = [image(s.path, size) for s in samples]
            for name, features in parts.items():
                score = knn_scores(features, train_images, valid, args.bank)
                print(f"  {name + ', nearest neighbour':40s} image AUROC {auroc(score, labels):.3f}")


def knn_scores(features: Callable[[torch.Tensor], torch.Tensor], train: list[torch.Tensor],
               valid: list[torch.Tensor], bank_size: int, seed: int = 0) -> np.ndarray:
    """Nearest-neighbour image scores, PatchCore's image score (Roth et al., CVPR 2022) without its coreset,
    neighbourhood pooling or re-weighting.

    Args:
        features: maps an image ``(1, 3, H, W) float32`` 0-255 RGB to ``(C, h, w) float32`` patch features.
        train, valid: such images. bank_size: most training patches kept, a random sample seeded by ``seed``.

    Returns:
        ``(len(valid),) float32``: each image's largest Euclidean distance from a patch to its nearest bank patch,
        with every channel standardised by the training patches' mean and standard deviation (unitless).

    Raises:
        ValueError: ``train`` is empty (no patches to build the bank from).
    """
    if not train:
        raise ValueError("knn_scores: no training image to build the bank from")
    patches = np.concatenate([features(x).flatten(1).T.numpy() for x in train])
    mean, std = patches.mean(0), patches.std(0) + 1e-6
    rng = np.random.default_rng(seed)
    bank = (patches[rng.choice(len(patches), min(len(patches), bank_size), replace=False)] - mean) / std
    search = NearestNeighbors(n_neighbors=1).fit(bank)
    return np.array([search.kneighbors((features(x).flatten(1).T.numpy() - mean) / std)[0].max() for x in valid],
                    np.float32)


if __name__ == "__main__":
    main()
