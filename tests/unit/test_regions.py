"""foreground_regions: AI-VAD's foreground boxes, anomalib's area/overlap filter, and the streamad extensions
(mask closing / dilation, flow-magnitude motion regions), on synthetic frames and on real Ped2 frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from streamad.frames import Clip, Frame, Regions
from streamad.operators.foreground_regions import ForegroundRegions, filter_boxes, foreground_boxes
from streamad.sources.datasets.ucsd import ucsd_videos
from streamad.sources.image_folder import read_rgb

H, W = 120, 160


def _frame(square_x: int | None, square_y: int = 40, size: int = 20) -> np.ndarray:
    """(H, W, 3) uint8 RGB: gray background (100) with a white square whose top-left corner is (square_x, y)."""
    img = np.full((H, W, 3), 100, np.uint8)
    if square_x is not None:
        img[square_y: square_y + size, square_x: square_x + size] = 255
    return img


def _clip(first: np.ndarray, last: np.ndarray, flow: np.ndarray | None = None) -> Clip:
    a = Frame("s", 0, 0.0, 0.0, first)
    b = Frame("s", 3, 0.3, 0.0, last)
    return Clip("s", [a, b], b, flow=flow)


def _regions(boxes: list[list[float]]) -> Regions:
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return Regions(b, np.full(len(b), 0.5, np.float32), np.zeros(len(b), np.int64))


def test_appearing_square_gives_its_box() -> None:
    # square at x 30..49, y 40..59 in the last frame only; the 3x3 blur spreads the edge by one pixel
    boxes = foreground_boxes(_frame(None), _frame(30))
    assert boxes.shape == (1, 4)
    np.testing.assert_allclose(boxes[0], [29, 39, 50, 60], atol=0)


def test_moving_square_fragments_and_merges_with_close_and_dilate() -> None:
    first, last = _frame(30), _frame(36)  # a solid square moving 6 px right: only its two edge strips change
    default = foreground_boxes(first, last)
    assert len(default) == 2, "anomalib's frame difference splits a uniform moving object into edge fragments"
    np.testing.assert_allclose(sorted(default[:, 0]), [29, 49])

    closed = foreground_boxes(first, last, close=15)
    assert closed.shape == (1, 4)
    np.testing.assert_allclose(closed[0], [29, 39, 56, 60])  # union of the old and new square, +1 px blur

    dilated = foreground_boxes(first, last, dilate=15)
    assert dilated.shape == (1, 4)
    np.testing.assert_allclose(dilated[0], [29 - 7, 39 - 7, 56 + 7, 60 + 7])  # grown by dilate // 2


def test_operator_defaults_are_anomalib_and_extensions_are_opt_in() -> None:
    c = ForegroundRegions.Config()
    assert (c.foreground_kernel_size, c.foreground_binary_threshold, c.min_bbox_area, c.max_bbox_overlap) == \
        (3, 18, 100, 0.65)
    assert (c.dilate, c.close, c.motion_source) == (0, 0, "frame_difference")
    with pytest.raises(ValidationError, match="motion_source"):
        ForegroundRegions.Config(motion_source="background_model")

    clip = ForegroundRegions(ForegroundRegions.Config(close=15), None, "s").process(_clip(_frame(30), _frame(36)))[0]
    assert len(clip.regions) == 1
    assert clip.regions.labels.tolist() == [0] and clip.regions.scores.tolist() == [0.5]


def test_filter_matches_anomalib_area_and_overlap_rule() -> None:
    regions = _regions([
        [0, 0, 100, 100],      # 0: area 10000, kept (largest)
        [10, 10, 30, 30],      # 1: inside box 0 -> overlap / own area = 1.0 > 0.65, dropped
        [90, 90, 120, 120],    # 2: 100 px of its 900 inside box 0 (0.11), kept
        [200, 200, 205, 205],  # 3: area 25 <= 100, dropped
        [300, 300, 310, 310],  # 4: area exactly 100, dropped (anomalib keeps area > min_bbox_area)
        [60, 0, 110, 20],      # 5: area 1000, 800 inside box 0 (0.8), dropped
        [80, 0, 110, 20],      # 6: area 600, 400 inside box 0 (0.67), dropped
        [85, 0, 110, 20],      # 7: area 500, 300 inside box 0 (0.6), kept
    ])
    kept = filter_boxes(regions, min_bbox_area=100, max_bbox_overlap=0.65)
    np.testing.assert_array_equal(kept.boxes, regions.boxes[[0, 2, 7]])  # input order kept

    # only larger boxes remove smaller ones: a small box mostly covered by a larger one goes, the larger stays
    pair = filter_boxes(_regions([[0, 0, 20, 20], [0, 0, 21, 21]]))
    np.testing.assert_array_equal(pair.boxes, [[0, 0, 21, 21]])
    # persons_only keeps label 1 (COCO person); foreground boxes carry label 0
    assert len(filter_boxes(regions, persons_only=True)) == 0


def test_minimum_area_as_a_fraction_of_the_frame_carries_across_resolutions() -> None:
    """``min_bbox_area_fraction``: the same square, 5% of the frame's width, is kept at 160x120 and at 4x that
    resolution, where a pixel minimum of 100 keeps it at 4x but drops it at 1x (area 8x8 = 64)."""
    small, big = ForegroundRegions.Config(min_bbox_area_fraction=0.002), ForegroundRegions.Config()
    assert small.min_area((120, 160, 3)) == pytest.approx(38.4) and big.min_area((120, 160, 3)) == 100
    for scale, kept_by_pixels in ((1, 0), (4, 1)):
        first = np.full((H * scale, W * scale, 3), 100, np.uint8)
        last = first.copy()
        s = 8 * scale  # 8 px at 160x120: 0.33 % of the frame
        last[40 * scale: 40 * scale + s, 30 * scale: 30 * scale + s] = 255
        frac = ForegroundRegions(small, None, "s").process(_clip(first, last))[0]
        px = ForegroundRegions(big, None, "s").process(_clip(first, last))[0]
        assert len(frac.regions) == 1 and len(px.regions) == kept_by_pixels
    with pytest.raises(ValidationError, match="not both"):
        ForegroundRegions.Config(min_bbox_area=50, min_bbox_area_fraction=0.001)
    with pytest.raises(ValidationError, match="min_bbox_area_fraction"):
        ForegroundRegions.Config(min_bbox_area_fraction=1.5)


def test_flow_magnitude_regions() -> None:
    flow = np.zeros((H, W, 2), np.float32)
    flow[50:70, 20:50] = (4.0, 0.0)   # 30 x 20 px object moving 4 px
    flow[5:8, 100:103] = (9.0, 0.0)   # 9 px blob, below min_bbox_area
    op = ForegroundRegions(ForegroundRegions.Config(motion_source="flow_magnitude", flow_magnitude_threshold=2.0),
                           None, "s")
    still = _frame(None)
    clip = op.process(_clip(still, still, flow))[0]
    np.testing.assert_array_equal(clip.regions.boxes, [[20, 50, 49, 69]])

    with pytest.raises(ValueError, match="optical_flow"):
        op.process(_clip(still, still, None))


@pytest.fixture(scope="module")
def ped2_pair(data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Frames 1 and 4 of UCSD Ped2 Train001 (people walking), (240, 360, 3) uint8 RGB."""
    video = ucsd_videos(data_root / "UCSD_Anomaly_Dataset.v1p2", "UCSDped2", "train")[0]
    return read_rgb(video.frame_paths[0]), read_rgb(video.frame_paths[3])


def test_real_frames_boxes_are_valid_and_closing_only_joins(ped2_pair: tuple[np.ndarray, np.ndarray]) -> None:
    first, last = ped2_pair
    h, w = first.shape[:2]
    clip = ForegroundRegions(ForegroundRegions.Config(), None, "s").process(_clip(first, last))[0]
    b = clip.regions.boxes
    assert len(b) >= 3, "Ped2 Train001 frames 1-4 show several walking people"
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] < w).all() and (b[:, 3] < h).all()
    assert ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) > 100).all()

    raw = foreground_boxes(first, last)
    closed = foreground_boxes(first, last, close=9)
    assert len(closed) < len(raw), "closing joins fragments of the same person"
    # closing only adds pixels: every component of the plain mask lies inside one component of the closed mask
    for x1, y1, x2, y2 in raw:
        inside = (closed[:, 0] <= x1) & (closed[:, 1] <= y1) & (closed[:, 2] >= x2) & (closed[:, 3] >= y2)
        assert inside.any()


def test_detector_regions_are_kept_and_foreground_is_added_outside_them() -> None:
    first, last = _frame(None), _frame(30)
    last[80:100, 100:130] = 255  # a second new object, not covered by the detector
    clip = _clip(first, last)
    clip.regions = Regions(np.array([[28, 38, 52, 62]], np.float32), np.array([0.9], np.float32),
                           np.array([1], np.int64))  # a detected person around the square
    out = ForegroundRegions(ForegroundRegions.Config(), None, "s").process(clip)[0]
    np.testing.assert_array_equal(out.regions.boxes, [[28, 38, 52, 62], [99, 79, 130, 100]])
    assert out.regions.labels.tolist() == [1, 0] and out.regions.scores.tolist() == [pytest.approx(0.9), 0.5]
