"""The pure helpers of benchmarks/anomalib_side_by_side.py (nothing here installs or imports anomalib)."""

from __future__ import annotations


import pytest

from helpers import load_benchmark


@pytest.fixture(scope="module")
def sbs():
    return load_benchmark("anomalib_side_by_side")


def test_layers_map_to_timm_feature_modules_of_the_same_stride(sbs):
    assert sbs.timm_layers("efficientnet_lite0", ["layer2", "layer3"]) == ["blocks.2", "blocks.4"]
    assert sbs.timm_layers("efficientnet_lite0", ["layer1", "layer4", "blocks.3"]) == ["blocks.1", "blocks.6",
                                                                                       "blocks.3"]
    assert sbs.timm_layers("resnet18", ["layer2", "layer3"]) == ["layer2", "layer3"]


def test_frames_per_clip_is_the_smallest_that_covers_the_bound(sbs):
    ped2 = [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180]  # 2,010 frames
    assert sbs.frames_per_clip(None, ped2) == 180
    assert sbs.frames_per_clip(5000, ped2) == 180
    assert sbs.frames_per_clip(400, ped2) == 34  # 12 * 34 = 408
    assert sbs.frames_per_clip(1990, ped2) == 178  # the 120-frame clip stops adding past 120
    with pytest.raises(ValueError, match="--frames"):
        sbs.frames_per_clip(0, ped2)


def test_patchcore_train_frames_and_spread(sbs):
    # 30 x 45 = 1,350 patches a 240x360 frame at stride 8; 1 % of 75 frames' patches = 1,012 rows >= 1,000
    assert sbs.patchcore_train_frames(1000, 0.01, [240, 360]) == 75
    assert sbs.spread(list(range(10)), 3) == [0, 3, 6]
    assert sbs.spread([1, 2], 5) == [1, 2]


def test_table_prints_the_ratio_streamad_over_anomalib(sbs):
    out = sbs.format_table([{"model": "padim", "frames": 408, "anomalib_fps": 50.0, "streamad_fps": 175.0},
                            {"model": "patchcore", "frames": 408, "anomalib_fps": 0.0, "streamad_fps": 1.0}])
    assert "| padim | 408 | 50.0 | 175.0 | 3.50x |" in out
    assert "| patchcore | 408 | 0.0 | 1.0 | n/a |" in out
