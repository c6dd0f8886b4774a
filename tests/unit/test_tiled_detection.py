"""CenterNet in tiles (``object_regions``' ``detector_min_scale``): far, small people are found that the whole-frame
detector misses; a frame that fits the input is detected exactly as without tiling."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ped2_fixtures import vtest_frame
from streamad.eval.detection_recall import far_scene, match_boxes
from streamad.models.components.centernet import PERSON_LABEL, CenterNetDetector
from streamad.models.components.tiled_detection import TiledDetector, merge_detections, tile_grid
from streamad.operators.object_regions import ObjectRegions
from streamad.sources.image_folder import read_rgb

DATA = Path(os.environ.get("STREAMAD_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data").resolve()
CENTERNET = DATA.parent / "models" / "centernet.onnx"


@pytest.fixture(scope="module")
def centernet() -> CenterNetDetector:
    return CenterNetDetector(CENTERNET)


def test_tile_grid_covers_the_frame_with_the_overlap_asked() -> None:
    tiles = tile_grid(576, 768, 512, 0.2)
    assert tiles == [(0, 0, 512, 512), (256, 0, 768, 512), (0, 64, 512, 576), (256, 64, 768, 576)]
    for x0, y0, x1, y1 in tile_grid(1080, 1920, 341, 0.2):
        assert x1 - x0 == 341 and y1 - y0 == 341  # square tiles: no distortion of the people in them
    covered = np.zeros((576, 768), bool)
    for x0, y0, x1, y1 in tiles:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert tile_grid(240, 360, 512, 0.2) == [(0, 0, 360, 240)]
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(10, 10, 5, 1.0)


def test_merge_keeps_the_best_of_duplicates_per_class() -> None:
    boxes = np.array([[0, 0, 10, 20], [1, 0, 11, 20], [0, 0, 10, 20], [50, 50, 60, 70]], np.float32)
    scores = np.array([0.4, 0.6, 0.5, 0.3], np.float32)
    labels = np.array([1, 1, 3, 1], np.int64)  # a person and a car in the same place are two regions
    b, s, lab = merge_detections(boxes, scores, labels, 0.5)
    assert s.tolist() == pytest.approx([0.6, 0.5, 0.3]) and lab.tolist() == [1, 3, 1]
    assert b[0].tolist() == [1, 0, 11, 20]


def test_tiles_find_far_people_the_whole_frame_misses(centernet: CenterNetDetector) -> None:
    """vtest.avi's clear people (score >= 0.45, 80-110 px tall) made far: the frame shrunk to 0.2 and repeated over
    the 768x576 canvas, people 16-22 px tall. Whole, the frame reaches the network at 0.67 x 0.89 scale and few are
    found; tiles at scale 1.0 find most."""
    frame = vtest_frame(60)
    boxes, _, labels = centernet(frame, 0.45)
    canvas, ref = far_scene(frame, boxes[labels == PERSON_LABEL], 0.2)
    assert len(ref) >= 50
    recall = {}
    for name, det in [("whole", centernet), ("tiled", TiledDetector(centernet, centernet.input_size, 1.0))]:
        b, s, lab = det(canvas, 0.3)
        recall[name] = match_boxes(ref, b[lab == PERSON_LABEL])[0].mean()
        assert (b[:, 2] <= 767).all() and (b[:, 3] <= 575).all() and (b[:, :2] >= 0).all()
        assert np.all(np.diff(s) <= 0)  # highest score first, as the detector's own output
    assert recall["whole"] < 0.3 and recall["tiled"] > 0.6, recall


def test_far_scene_shrinks_and_repeats_the_reference_boxes() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    canvas, boxes = far_scene(image, np.array([[10, 20, 30, 60]], np.float32), 0.5)
    assert canvas.shape == image.shape
    assert boxes.tolist() == [[5, 10, 15, 30], [105, 10, 115, 30], [5, 60, 15, 80], [105, 60, 115, 80]]
    found, extra = match_boxes(boxes, np.array([[5, 10, 15, 31], [0, 0, 3, 3]], np.float32))
    assert found.tolist() == [True, False, False, False] and extra == 1


def test_a_frame_that_fits_the_input_is_detected_as_without_tiles(data_root: Path) -> None:
    frame = read_rgb(data_root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test" / "Test004" / "100.jpg")
    cfg = dict(weights=str(CENTERNET))
    plain = ObjectRegions.create_shared(ObjectRegions.Config(**cfg), None).detector  # type: ignore[arg-type]
    tiled = ObjectRegions.create_shared(ObjectRegions.Config(**cfg, detector_min_scale=1.0), None).detector  # type: ignore[arg-type]
    assert isinstance(tiled, TiledDetector) and tiled.tiles(*frame.shape[:2]) == []
    for a, b in zip(plain(frame, 0.3), tiled(frame, 0.3)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="Mask R-CNN"):
        ObjectRegions.Config(weights="w.pt", detector="maskrcnn", detector_min_scale=1.0)
