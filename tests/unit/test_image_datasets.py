"""Image dataset sources: anomalib Folder layout, MVTec layout (written to tmp), and the real Magnetic Tile split."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamad.config import load_config_text
from streamad.errors import DataNotFoundError
from streamad.parts import BuildContext
from streamad.sources.datasets.folder import folder_samples, magnetic_tile_samples, mvtec_samples


def _png(path: Path, value: int = 100, size: tuple[int, int] = (20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))
    return path


def _mask(path: Path, size: tuple[int, int] = (20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros(size, np.uint8)
    m[5:10, 5:12] = 255
    cv2.imwrite(str(path), m)
    return path


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    for i in range(10):
        _png(root / "good" / f"{i:03d}.png", 90 + i)
    for i in range(3):
        _png(root / "bad" / f"{i:03d}.png", 200)
        _mask(root / "masks" / (f"{i:03d}.png" if i < 2 else f"{i:03d}_mask.png"))
    return root


def test_folder_split_and_masks(folder_root: Path) -> None:
    train = folder_samples(folder_root, "good", "train", abnormal_dir="bad", mask_dir="masks")
    test = folder_samples(folder_root, "good", "test", abnormal_dir="bad", mask_dir="masks")
    assert len(train) == 8 and len(test) == 2 + 3  # normal_split_ratio 0.2 of 10 normals held out
    assert {s.path for s in train}.isdisjoint(s.path for s in test)
    assert [s.label for s in test] == [0, 0, 1, 1, 1]
    assert [s.mask.name for s in test if s.label] == ["000.png", "001.png", "002_mask.png"]
    again = folder_samples(folder_root, "good", "test", abnormal_dir="bad", mask_dir="masks")
    assert [s.path for s in again] == [s.path for s in test]  # seeded
    other = folder_samples(folder_root, "good", "test", abnormal_dir="bad", mask_dir="masks", seed=1)
    assert [s.path for s in other] != [s.path for s in test]
    full = folder_samples(folder_root, "good", "full", abnormal_dir="bad")
    assert len(full) == 13 and all(s.mask is None for s in full)


def test_folder_errors(folder_root: Path) -> None:
    (folder_root / "masks" / "001.png").unlink()
    with pytest.raises(DataNotFoundError, match="no mask for 001.png"):
        folder_samples(folder_root, "good", "test", abnormal_dir="bad", mask_dir="masks")
    with pytest.raises(DataNotFoundError, match="normal_dir: folder not found"):
        folder_samples(folder_root, "nothing", "train")
    with pytest.raises(ValueError, match="split"):
        folder_samples(folder_root, "good", "val")


def test_folder_source_streams(folder_root: Path) -> None:
    cfg = load_config_text(f"""
streams:
  - {{kind: folder, root: {folder_root}, normal_dir: good, abnormal_dir: bad, mask_dir: masks, split: test}}
operators: [{{kind: threshold}}]
""")
    sources = cfg.streams[0].build(BuildContext(), "streams[0]")
    assert [s.stream_id for s in sources] == ["ds/good", "ds/bad"]
    assert type(cfg.streams[0]).image_dataset
    frames = list(sources[1].frames())
    assert len(frames) == 3 and all(f.label == 1 and f.mask.shape == (20, 30) and f.mask.sum() == 35
                                    for f in frames)


def test_mvtec_layout(tmp_path: Path) -> None:
    cat = tmp_path / "MVTec" / "bottle"
    for i in range(4):
        _png(cat / "train" / "good" / f"{i:03d}.png")
    _png(cat / "test" / "good" / "000.png")
    _png(cat / "test" / "broken" / "000.png")
    _mask(cat / "ground_truth" / "broken" / "000_mask.png")
    assert len(mvtec_samples(tmp_path / "MVTec", "bottle", "train")) == 4
    test = mvtec_samples(tmp_path / "MVTec", "bottle", "test")
    assert [(s.group, s.label, s.mask is not None) for s in test] == [("broken", 1, True), ("good", 0, False)]
    with pytest.raises(DataNotFoundError, match="category 'cable' not found.*mvtec"):
        mvtec_samples(tmp_path / "MVTec", "cable", "train")


def test_magnetic_tile_split(mt_root: Path) -> None:
    train = magnetic_tile_samples(mt_root, "train")
    val = magnetic_tile_samples(mt_root, "validation")
    test = magnetic_tile_samples(mt_root, "test")
    # 80 % of 952 MT_Free; the other 190 + 392 defect images cut per class into halves (floor to validation)
    assert len(train) == 762 and len(val) == 289 and len(test) == 293
    assert {s.path for s in val}.isdisjoint(s.path for s in test)
    for group in ("MT_Free", "MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven"):
        n_val, n_test = (sum(s.group == group for s in split) for split in (val, test))
        assert 0 <= n_test - n_val <= 1, group  # every class in both halves, equally
    free_test = [s for s in val + test if s.group == "MT_Free"]
    assert len(free_test) == 190 and all(s.label == 0 for s in free_test)
    assert {s.path for s in train}.isdisjoint(s.path for s in free_test)
    assert [s.path for s in magnetic_tile_samples(mt_root, "test")] == [s.path for s in test]  # fixed
    with pytest.raises(ValueError, match="split: must be one of train, validation, test"):
        magnetic_tile_samples(mt_root, "val")
    assert {s.group for s in test if s.label} == {"MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven"}
    assert all(s.mask is not None and s.mask.suffix == ".png" for s in test)
    assert [s.path for s in magnetic_tile_samples(mt_root, "train")] == [s.path for s in train]  # fixed
    assert [s.path for s in magnetic_tile_samples(mt_root, "train", seed=1)] != [s.path for s in train]
    with pytest.raises(DataNotFoundError, match="MT_Free/Imgs not found.*abin24"):
        magnetic_tile_samples(mt_root / "missing", "train")
