"""Session fixtures around the Magnetic Tile set in ../shared/data: image models fitted once for the whole run.

PatchCore and PaDiM are fitted with examples/magnetic_tile_{patchcore,padim}.yaml unchanged on the real training
split (762 MT_Free images); only their calibration (min-max statistics and thresholds) reads 20 images per test
class instead of the whole test split, to keep the CI cost down (AUROC and AUPRO do not depend on it). DFM and DFKDE
are fitted on 200 training images, FastFlow briefly trained on 64: their tests check export parity, not accuracy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STREAMAD_DATA", REPO.parent / "shared" / "data")).resolve()
CALIBRATION_PER_CLASS = 20


def noise_set(n: int = 8, size: tuple[int, int] = (32, 64)) -> Any:
    """An :class:`~streamad.models.image.image_set.ImageSet` of ``n`` uniform-noise ``size`` images (seed 0),
    labelled normal: training data for the from-scratch models' unit tests (DRAEM, DSR)."""
    from streamad.models.image.image_set import ImageSet

    rng = np.random.default_rng(0)
    s = ImageSet(size)
    for _ in range(n):
        s.append(rng.integers(0, 256, (*size, 3), dtype=np.uint8), 0)
    return s


def seeded(seed: int = 0) -> Any:
    """A ``torch.Generator`` seeded with ``seed``."""
    import torch

    return torch.Generator().manual_seed(seed)


def model_from(config: dict[str, Any], **overrides: Any) -> Any:
    """The image model of ``config`` (its ``kind``) with ``overrides`` applied, unfitted."""
    from streamad.models.image import IMAGE_MODELS

    cls = IMAGE_MODELS.get(config["kind"])
    return cls(cls.Config.model_validate({**config, **overrides}))


def texture(rng: np.random.Generator, defect: bool = False) -> np.ndarray:
    """A synthetic striped grey texture ``(80, 120, 3) uint8``; a defect is a bright blob centred at (85, 30)."""
    h, w = 80, 120
    x = np.arange(w)[None, :] + rng.normal(0, 1.0, (h, 1))
    img = 110 + 25 * np.sin(x / 3.0 + rng.uniform(0, 6.28)) + rng.normal(0, 4, (h, w))
    if defect:
        cv2.circle(img, (85, 30), 9, 250, -1)
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def defect_mask() -> np.ndarray:
    """The ``(80, 120) bool`` ground truth of :func:`texture`'s defect."""
    m = np.zeros((80, 120), np.uint8)
    cv2.circle(m, (85, 30), 9, 1, -1)
    return m > 0


def write_folder_dataset(root: Path, good: Iterable[np.ndarray], bad: Iterable[tuple[np.ndarray, np.ndarray]]) -> Path:
    """Write a ``kind: folder`` dataset: ``root/good/NNN.png`` from ``good`` (``(H, W, 3) uint8`` images), then
    ``root/bad/NNN.png`` and ``root/masks/NNN.png`` from ``bad`` (``(image, (H, W) bool mask)`` pairs), consuming the
    iterables in that order (so generators drawing from one random generator stay reproducible); returns ``root``."""
    for name in ("good", "bad", "masks"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(good):
        cv2.imwrite(str(root / "good" / f"{i:03d}.png"), image)
    for i, (image, mask) in enumerate(bad):
        cv2.imwrite(str(root / "bad" / f"{i:03d}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{i:03d}.png"), mask.astype(np.uint8) * 255)
    return root


def folder_pipeline(name: str, root: Path, model_dir: Path, operators: str, sinks: str = "[]",
                    normal_split_ratio: float = 0.2) -> str:
    """A pipeline.yaml text over the :func:`write_folder_dataset` folder ``root`` (stream id prefix ``name``): fit on
    its train split, calibrate and score on its test split, with ``operators`` (a YAML list body, each item
    starting ``  - ``) and ``sinks`` (YAML)."""
    data = (f"{{kind: folder, id: {name}, root: {root}, normal_dir: good, abnormal_dir: bad, mask_dir: masks, "
            f"normal_split_ratio: {normal_split_ratio}")
    return (f"name: {name}\nmodel_dir: {model_dir}\nstreams: [{data}, split: test}}]\n"
            f"fit:\n  train: [{data}, split: train}}]\n  validation: [{data}, split: test}}]\n"
            f"operators:\n{operators.rstrip()}\nsinks: {sinks}\n")


def mt_config(kind: str, train_frames: int | None = None, model: dict[str, Any] | None = None) -> Any:
    """examples/magnetic_tile_<patchcore|padim>.yaml (``kind`` ``dfm`` / ``dfkde`` reuse the PaDiM example with that
    model), calibrated on ``CALIBRATION_PER_CLASS`` images per class of the validation half; ``train_frames`` limits training."""
    from streamad.config import load_config_text

    example = REPO / "examples" / f"magnetic_tile_{kind if kind in ('patchcore', 'padim') else 'padim'}.yaml"
    data = yaml.safe_load(example.read_text(encoding="utf-8"))
    data["data_root"] = str(DATA)
    data["fit"]["validation"] = [{"kind": "magnetic_tile", "split": "validation",
                               "max_frames": CALIBRATION_PER_CLASS}]
    if train_frames is not None:
        data["fit"]["train"][0]["max_frames"] = train_frames
    if model is not None:
        data["operators"][0]["model"] = model
    data["sinks"] = []
    return load_config_text(yaml.safe_dump(data), name=str(example), path=example)


@pytest.fixture(scope="session")
def mt_root() -> Path:
    """The Magnetic Tile folder; fails loudly when absent."""
    root = DATA / "magnetic_tile"
    assert (root / "MT_Free" / "Imgs").is_dir(), f"Magnetic Tile not found under {DATA}: set STREAMAD_DATA"
    return root


def _fit(kind: str, tmp: pytest.TempPathFactory, **kw: Any) -> Path:
    from streamad.runtime.jobs import fit

    out = tmp.mktemp(f"mt_{kind}") / "model"
    fit(mt_config(kind, **kw), out, quiet=True)
    return out


@pytest.fixture(scope="session")
def mt_patchcore(mt_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/magnetic_tile_patchcore.yaml fitted on the full training split; returns the model directory."""
    return _fit("patchcore", tmp_path_factory)


@pytest.fixture(scope="session")
def mt_padim(mt_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/magnetic_tile_padim.yaml fitted on the full training split; returns the model directory."""
    return _fit("padim", tmp_path_factory)


@pytest.fixture(scope="session")
def mt_dfm(mt_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DFM (fre, layer3, 256x256) fitted on 200 training images."""
    return _fit("dfm", tmp_path_factory, train_frames=200, model={"kind": "dfm", "layers": ["layer3"]})


@pytest.fixture(scope="session")
def mt_dfkde(mt_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DFKDE (layer4, 256x256) fitted on 200 training images."""
    return _fit("dfkde", tmp_path_factory, train_frames=200, model={"kind": "dfkde", "layers": ["layer4"]})


@pytest.fixture(scope="session")
def mt_fastflow(mt_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FastFlow (128x128, at most 4 epochs, early stopping on the calibration images) trained on 64 training images."""
    return _fit("fastflow", tmp_path_factory, train_frames=64,
                model={"kind": "fastflow", "input_size": [128, 128], "batch_size": 4, "max_epochs": 4})


@pytest.fixture(scope="session")
def mt_winclip(mt_root: Path, tmp_path_factory: pytest.TempPathFactory, random_clip_weights: Any) -> Path:
    """WinCLIP, 4-shot, on random CLIP weights of the small open_clip ViT-S-32 (no CLIP weights offline: this
    checks the export, not the accuracy), references from the first 4 training images."""
    return _fit("winclip", tmp_path_factory, train_frames=4,
                model={"kind": "winclip", "backbone": "ViT-S-32", "input_size": [224, 224], "k_shot": 4,
                       "weights": str(random_clip_weights("ViT-S-32")), "class_name": "magnetic tile"})


@pytest.fixture(scope="session")
def random_clip_weights(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``weights(architecture) -> Path``: a safetensors file of an open_clip CLIP ``architecture`` with random
    weights (seeded), in the layout of a real open_clip checkpoint (no CLIP weights can be had offline). Each
    architecture is written once per session."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    made: dict[str, Path] = {}

    def weights(architecture: str) -> Path:
        if architecture not in made:
            torch.manual_seed(0)
            model = open_clip.create_model(architecture, pretrained=None)
            path = tmp_path_factory.mktemp("clip") / f"{architecture}-random.safetensors"
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
            made[architecture] = path
        return made[architecture]

    return weights
