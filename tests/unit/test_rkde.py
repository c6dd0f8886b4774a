"""R-KDE's parts on known cases: the region-to-map painting, anomalib's proposal filters and the fallback, the
scaling / PCA / KDE chain (an outlier region gets the top score), and the model's region step end to end (the map and
score follow its boxes; a missing detector file is named)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from pydantic import ValidationError

from image_fixtures import DATA, texture
from streamad.cli import cli
from streamad.config import load_config_text
from streamad.errors import ModelError
from streamad.models.components.kde_classifier import KDEClassifier
from streamad.models.image import IMAGE_MODELS
from streamad.models.image.image_set import ImageSet
from streamad.models.image.rkde.model import as_rois
from streamad.models.image.rkde.paint import paint_boxes
from streamad.models.image.rkde.regions import fallback_boxes, filter_proposals
from streamad.models.postprocess import PostProcess
from streamad.models.store import load_model, save_model

CENTERNET = str(DATA.parent / "models" / "centernet.onnx")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "magnetic_tile_rkde.yaml"


def test_paint_takes_the_largest_covering_score_and_zero_elsewhere() -> None:
    boxes = np.array([[2, 1, 5, 3], [4, 2, 8, 6], [-3, -3, 0, 0], [20, 20, 30, 30]], np.float32)
    m = paint_boxes(boxes, np.array([0.7, 0.2, 0.5, 0.9]), (8, 10))
    assert m.shape == (8, 10) and m.dtype == np.float32
    assert m[1, 2] == m[3, 5] == 0.7  # the first box, its corners included
    assert m[2, 4] == m[3, 4] == 0.7  # overlap: the larger score, whatever the order
    assert m[4, 4] == m[6, 8] == 0.2 and m[2, 6] == 0.2
    assert m[0, 0] == 0.5  # clipped to the image; the box fully outside paints nothing
    assert m[7, 9] == 0.0 and m[0, 5] == 0.0 and m[4, 3] == 0.0
    assert (m > 0).sum() == 4 * 3 + 5 * 5 - 2 * 2 + 1
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        paint_boxes(boxes[:2], np.array([1.0]), (8, 10))


def test_proposal_filters_and_fallback() -> None:
    boxes = np.array([[0, 0, 40, 40], [2, 2, 42, 42], [100, 0, 140, 20], [50, 50, 90, 90], [60, 0, 99, 30]],
                     np.float32)
    scores = np.array([0.2, 0.3, 0.9, 0.1, 0.05], np.float32)
    kept = filter_proposals(boxes, scores, min_size=25, iou_threshold=0.3, max_detections=100)
    # the 40x20 box is too low, the second of the two overlapping boxes wins the NMS, the order is by score
    np.testing.assert_array_equal(kept, boxes[[1, 3, 4]])
    assert len(filter_proposals(boxes, scores, 25, 0.3, max_detections=2)) == 2
    grid = fallback_boxes((64, 96), "grid", 4)
    assert grid.shape == (16, 4)
    assert (paint_boxes(grid, np.ones(16), (64, 96)) == 1).all()  # the cells cover the image ...
    assert sum((g[2] - g[0] + 1) * (g[3] - g[1] + 1) for g in grid) == 64 * 96  # ... without overlap
    np.testing.assert_array_equal(fallback_boxes((64, 96), "image", 4), [[0, 0, 95, 63]])
    rois = as_rois([grid[:2], fallback_boxes((64, 96), "image", 4)])
    np.testing.assert_array_equal(rois.numpy(), [[0, 0, 0, 24, 16], [0, 24, 0, 48, 16], [1, 0, 0, 96, 64]])


@pytest.mark.parametrize("scaling", ["scale", "norm"])
def test_kde_chain_gives_the_outlier_the_top_score(scaling: str) -> None:
    """Two clusters of 8-d regions at +-5 on the first axis; an outlier at 5 on the second axis is far from both
    (``scale``) and, once centred and projected, points where no training vector does (``norm``)."""
    rng = np.random.default_rng(0)

    def regions(n: int) -> np.ndarray:
        x = rng.normal(0, 0.3, (n, 8))
        x[:, 0] += np.where(rng.random(n) < 0.5, -5.0, 5.0)
        return (x + 3.0).astype(np.float32)

    train = regions(300)
    clf = KDEClassifier(scaling).fit(train, n_components=4, max_points=200, seed=0)
    assert clf.training_points == 200 and clf.pca.n_components == 4
    outlier = np.full((1, 8), 3.0, np.float32)
    outlier[0, 1] += 5.0
    with torch.inference_mode():
        scores = clf(torch.from_numpy(np.vstack([regions(20), outlier]))).numpy()
        longest = float(torch.linalg.vector_norm(clf.pca(torch.from_numpy(train)), dim=1).max())
    assert scores.shape == (21,) and ((scores > 0) & (scores < 1)).all()
    assert int(np.argmax(scores)) == 20, scores
    if scaling == "scale":  # the scale is the largest projected norm of the 200 kept training vectors
        assert 0.5 * longest < float(clf.max_length) <= longest + 1e-4
    with pytest.raises(ValueError, match="more feature vectors than n_pca_components"):
        KDEClassifier(scaling).fit(train[:4], n_components=4, max_points=100)


def _model(tmp_path: Path | None = None, **kw: object):
    cls = IMAGE_MODELS.get("rkde")
    cfg = {"kind": "rkde", "input_size": [64, 96], "detector_weights": CENTERNET, "n_pca_components": 4, **kw}
    return cls(cls.Config.model_validate(cfg))


def test_rkde_regions_score_and_map_and_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = ImageSet((64, 96))
    for i in range(30):
        train.append(texture(rng), 0, name=f"t{i}")
    grid = _model(roi_score_threshold=1.0)  # no detection passes: every image gets the 4x4 grid
    stats = grid.fit(train)
    assert stats["images_with_detections"] == 0 and stats["regions"] == 30 * 16 == stats["training_points"]
    assert stats["feature_dim"] == 112 + 320  # EfficientNet-Lite0 layer3 + layer4
    images = np.stack([texture(rng), texture(rng, defect=True)])
    p = grid.predict(images)
    for i in range(2):
        boxes = p.boxes[i]
        np.testing.assert_array_equal(boxes[:, :4], fallback_boxes((64, 96), "grid", 4))
        np.testing.assert_array_equal(p.anomaly_map[i, 0], paint_boxes(boxes[:, :4], boxes[:, 4], (64, 96)))
        assert p.score[i] == boxes[:, 4].max()
    save_model(tmp_path / "m", grid, PostProcess(min=0.0, max=1.0, image_threshold=0.5, pixel_threshold=0.5))
    loaded, _ = load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict(images).score, p.score, rtol=1e-6)
    res = CliRunner().invoke(cli, ["export", str(tmp_path / "m"), "-o", str(tmp_path / "ir")])
    assert res.exit_code == 4 and "is not exportable" in res.output and not (tmp_path / "ir").exists()
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["model"]["config"]["detector_weights"] = str(tmp_path / "moved.onnx")
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="moved.onnx not found"):  # at load, not at the first frame
        load_model(tmp_path / "m")
    detected = _model()
    assert detected.fit(train)["images_with_detections"] == 30  # CenterNet keeps low-score boxes on textures
    few = _model(max_detections_per_image=1, min_box_size=0)
    few.fit(train)
    assert all(len(b) == 1 for b in few.predict(images).boxes)
    both = _model(regions="detector_and_grid", max_detections_per_image=1, min_box_size=0)
    both.fit(train)
    for boxes in both.predict(images).boxes:  # the detection, then the 16 cells
        assert len(boxes) == 17
        np.testing.assert_array_equal(boxes[1:, :4], fallback_boxes((64, 96), "grid", 4))
    cells = _model(regions="grid", detector_weights=None, grid=2)
    assert cells.fit(train)["regions"] == 30 * 4 and cells.proposer.detector is None
    missing = _model(detector_weights=str(tmp_path / "nowhere" / "centernet.onnx"))
    with pytest.raises(ModelError, match="nowhere/centernet.onnx"):
        missing.fit(train)
    with pytest.raises(ValidationError, match="detector_weights: required with regions 'detector'"):
        IMAGE_MODELS.get("rkde").Config.model_validate({"kind": "rkde"})
    with pytest.raises(ValidationError, match="feature_scaling_method"):
        _model(feature_scaling_method="minmax")
    train.close()


def test_example_config_keeps_anomalibs_settings_but_the_regions() -> None:
    cfg = load_config_text(EXAMPLE.read_text(encoding="utf-8"), name=str(EXAMPLE), path=EXAMPLE)
    model = cfg.operators[0].model
    assert cfg.operators[0].runtime == "torch" and model.kind == "rkde"
    assert model.regions == "grid" and model.grid == 4  # chosen on the validation half (README)
    assert (model.roi_score_threshold, model.min_box_size, model.iou_threshold, model.max_detections_per_image,
            model.n_pca_components, model.max_training_points) == (0.001, 25, 0.3, 100, 16, 40000)
    assert Path(model.detector_weights).name == "centernet.onnx"
