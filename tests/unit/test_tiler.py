"""The image-model tiler (anomalib's ``Tiler``): tile boxes and stitching, its config errors, and end to end on
generated 1920x1080 frames, where a 12x12-pixel defect is found tile by tile and lost when the whole frame is
resized to the model's input size."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from image_fixtures import folder_pipeline, write_folder_dataset
from streamad.config import load_config_text
from streamad.errors import ConfigError
from streamad.export import export_model
from streamad.models.image.tiler import TiledRunner, Tiler, TilerConfig
from streamad.runtime.jobs import evaluate, fit

H, W, DEFECT = 1080, 1920, 12


def test_boxes_cover_the_frame_and_end_at_its_edges() -> None:
    t = Tiler(TilerConfig(tile_size=(256, 256)), map_size=(128, 128))
    boxes = t.boxes(H, W)
    assert len(boxes) == 5 * 8  # ceil(1080 / 256) rows x ceil(1920 / 256) columns
    assert boxes[:, 2].max() == H and boxes[:, 3].max() == W  # the last row / column moved back to the edge
    assert ((boxes[:, 2] - boxes[:, 0]) == 256).all() and ((boxes[:, 3] - boxes[:, 1]) == 256).all()
    covered = np.zeros((H, W), bool)
    for y0, x0, y1, x1 in boxes:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert t.canvas_size(H, W) == (540, 960)
    overlapping = Tiler(TilerConfig(tile_size=(256, 256), stride=(128, 128)), (128, 128))
    assert len(overlapping.boxes(512, 512)) == 9


def test_untile_puts_maps_back_and_averages_overlaps() -> None:
    t = Tiler(TilerConfig(tile_size=(64, 64), stride=(32, 32)), map_size=(32, 32))
    image = np.random.default_rng(0).random((160, 224)).astype(np.float32)
    tiles = t.tiles(image)  # (T, 64, 64): each tile's "map" is the tile itself at half resolution
    maps = np.stack([cv2.resize(tile, (32, 32), interpolation=cv2.INTER_AREA) for tile in tiles])[:, None]
    stitched = t.untile(maps, 160, 224)
    assert stitched.shape == (1, 80, 112)
    np.testing.assert_allclose(stitched[0], cv2.resize(image, (112, 80), interpolation=cv2.INTER_AREA), atol=1e-5)
    ones = t.untile(np.stack([np.full((1, 32, 32), k, np.float32) for k in range(len(tiles))]), 160, 224)
    assert ones[0, 0, 0] == 0.0 and ones[0, -1, -1] == len(tiles) - 1  # corners: one tile each
    assert 0 < ones[0, 20, 20] < len(tiles) - 1  # inside: the mean of the overlapping tiles


def test_tiled_runner_scores_each_frame_by_its_worst_tile() -> None:
    class Inner:
        name = "fake"

        def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            means = images.reshape(len(images), -1).mean(1).astype(np.float32)
            return np.broadcast_to(means[:, None, None, None], (len(images), 1, 8, 8)).copy(), means

    frame = np.zeros((64, 96, 3), np.uint8)
    frame[40:60, 70:90] = 200
    maps, scores = TiledRunner(Inner(), Tiler(TilerConfig(tile_size=(32, 32)), (8, 8)))(frame)
    assert maps.shape == (1, 1, 16, 24)  # 2x3 tiles of 8x8 map pixels
    assert scores[0] == pytest.approx(200 * 20 * 20 / 32**2)  # the lower right tile holds the bright square
    assert maps[0, 0, 8:, 16:].min() == pytest.approx(scores[0]) and maps[0, 0, :8].max() == 0.0


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="tiler.stride"):
        TilerConfig(tile_size=(64, 64), stride=(128, 64))
    with pytest.raises(ValueError, match="at least 32x32"):
        TilerConfig(tile_size=(16, 16))
    with pytest.raises(ValidationError, match="blend"):
        TilerConfig(tile_size=(64, 64), blend="max")
    with pytest.raises(ValueError, match="smaller than the 256x256 tile"):
        Tiler(TilerConfig(), (64, 64)).boxes(200, 400)


def _frame(rng: np.random.Generator, defect: tuple[int, int] | None = None) -> np.ndarray:
    """A ``(1080, 1920, 3) uint8`` grey texture: smooth blobs (about 24 px) and pixel noise; a defect is a
    12x12 white square with its top-left corner at ``defect`` (y, x)."""
    low = rng.normal(0, 1, (H // 24, W // 24)).astype(np.float32)
    img = 128 + 30 * cv2.resize(low, (W, H), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 6, (H, W))
    if defect is not None:
        img[defect[0]:defect[0] + DEFECT, defect[1]:defect[1] + DEFECT] = 255
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.fixture(scope="module")
def large_frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 defect-free and 5 defective 1080p frames with their masks (a folder dataset)."""
    rng = np.random.default_rng(3)

    def defective() -> tuple[np.ndarray, np.ndarray]:
        y, x = int(rng.integers(0, H - DEFECT)), int(rng.integers(0, W - DEFECT))
        mask = np.zeros((H, W), bool)
        mask[y:y + DEFECT, x:x + DEFECT] = True
        return _frame(rng, (y, x)), mask

    return write_folder_dataset(tmp_path_factory.mktemp("large_frames"), (_frame(rng) for _ in range(20)),
                                (defective() for _ in range(5)))


def _config(root: Path, model_dir: Path, tiler: str) -> str:
    return folder_pipeline("large", root, model_dir, f"""
  - kind: image_model
    model: {{kind: padim, layers: [layer1, layer2], n_features: 40, input_size: [128, 128]}}{tiler}
  - kind: threshold
""", normal_split_ratio=0.25)


def test_a_small_defect_in_a_1080p_frame_is_found_tiled_and_missed_untiled(large_frames: Path,
                                                                           tmp_path: Path) -> None:
    tiled = load_config_text(_config(large_frames, tmp_path / "tiled", "\n    tiler: {tile_size: [256, 256]}"))
    untiled = load_config_text(_config(large_frames, tmp_path / "untiled", ""))
    reports = {}
    for name, cfg in (("tiled", tiled), ("untiled", untiled)):
        fit(cfg, quiet=True)
        reports[name], _ = evaluate(cfg, quiet=True)
        assert reports[name].frames == 10
    tiled_report, untiled_report = reports["tiled"], reports["untiled"]
    # whole frame at 128x128: the 12x12 square is under one map pixel and scores like the normal frames
    assert untiled_report.image_auroc < 0.8, untiled_report.format_table()
    # tile by tile at 256 -> 128: the square keeps 6x6 map pixels
    assert tiled_report.image_auroc == 1.0, tiled_report.format_table()
    assert tiled_report.pixel_auroc > 0.99 and tiled_report.pixel_auroc > untiled_report.pixel_auroc + 0.1
    # the model.json records the tiling; a pipeline that tiles otherwise is refused with a clear error
    meta = json.loads((tmp_path / "tiled" / "model.json").read_text())
    assert meta["fit"]["tiler"] == {"tile_size": [256, 256], "stride": [256, 256]}
    assert meta["fit"]["train_images"] == 15 * 40  # each training frame's 40 tiles
    # the exported OpenVINO IR takes the tiles as it takes whole frames: the same figures through the same tiler
    export_model(tmp_path / "tiled", "openvino")
    ov = load_config_text(_config(large_frames, tmp_path / "tiled",
                                  "\n    tiler: {tile_size: [256, 256]}\n    runtime: openvino"))
    ov_report, _ = evaluate(ov, quiet=True)
    assert ov_report.image_auroc == 1.0
    assert ov_report.pixel_auroc == pytest.approx(tiled_report.pixel_auroc, abs=1e-3)
    wrong = load_config_text(_config(large_frames, tmp_path / "untiled", "\n    tiler: {tile_size: [256, 256]}"))
    with pytest.raises(ConfigError, match="fitted with None"):
        evaluate(wrong, quiet=True)
