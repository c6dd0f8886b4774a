"""velocity_features: AI-VAD's velocity histogram (mean magnitude per direction bin) and the streamad magnitude
extensions, on synthetic flows of known value and on DIS flow of a real Ped2 frame moved by a known shift."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from streamad.frames import Clip, Frame, Regions
from streamad.operators.optical_flow import OpticalFlow
from streamad.operators.velocity_features import VelocityFeatures, velocity_dims, velocity_histogram
from streamad.sources.datasets.ucsd import ucsd_videos
from streamad.sources.image_folder import read_rgb

BOX = np.array([[10, 10, 49, 29]], np.float32)  # 40 x 20 px


def _uniform(fx: float, fy: float, h: int = 60, w: int = 80) -> np.ndarray:
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = fx, fy
    return flow


@pytest.mark.parametrize("fx, fy, bin_index", [(3, 0, 6), (-3, 0, 2), (0, 3, 4), (0, -3, 7),
                                                  (3 / np.sqrt(2), 3 / np.sqrt(2), 5)])
def test_uniform_flow_puts_all_magnitude_in_its_direction_bin(fx: float, fy: float, bin_index: int) -> None:
    # anomalib's theta = atan2(flow_x, flow_y): +x (right) is pi/2 -> bin 6 of 8 over [-pi, pi]; straight up
    # (theta = pi) falls in the last bin, as torch.histc counts its upper edge
    hist = velocity_histogram(_uniform(fx, fy), BOX, n_bins=8)
    expected = np.zeros((1, 8), np.float32)
    expected[0, bin_index] = 3.0
    np.testing.assert_allclose(hist, expected, atol=1e-6)


def test_one_bin_is_the_mean_magnitude_and_bins_hold_means_not_sums() -> None:
    flow = _uniform(3, 0)
    flow[10:20, 10:50] = (0, 1)  # upper half of the box moves down at 1 px
    hist = velocity_histogram(flow, BOX, n_bins=8)
    assert hist[0, 6] == pytest.approx(3.0) and hist[0, 4] == pytest.approx(1.0)
    assert velocity_histogram(flow, BOX, n_bins=1)[0, 0] == pytest.approx(2.0)


def test_magnitude_bins_and_percentiles() -> None:
    flow = _uniform(3, 0)
    out = velocity_histogram(flow, BOX, n_bins=0, magnitude_edges=[1, 2, 4], magnitude_percentiles=[50, 90])
    np.testing.assert_allclose(out, [[0, 0, 1, 0, 3, 3]], atol=1e-6)  # 3 px lies in [2, 4)

    flow[10:20, 10:50] = (1.5, 0)  # half of the box at 1.5 px, half at 3 px
    out = velocity_histogram(flow, BOX, n_bins=8, magnitude_edges=[1, 2, 4], magnitude_percentiles=[25, 50, 99])
    assert out.shape == (1, velocity_dims(8, [1, 2, 4], [25, 50, 99])) == (1, 15)
    np.testing.assert_allclose(out[0, 8:12], [0, 0.5, 0.5, 0])
    mags = np.r_[np.full(400, 1.5), np.full(400, 3.0)]
    np.testing.assert_allclose(out[0, 12:], np.percentile(mags, [25, 50, 99]), rtol=1e-6)


def test_boxes_are_clipped_to_the_image_and_no_box_gives_no_row() -> None:
    flow = _uniform(0, 2)
    out = velocity_histogram(flow, np.array([[-20, -20, 500, 500]], np.float32), 1, magnitude_percentiles=[50])
    np.testing.assert_allclose(out, [[2, 2]])
    assert velocity_histogram(flow, np.zeros((0, 4), np.float32), 8, [1.0], [50]).shape == (0, 8 + 2 + 1)
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        velocity_histogram(flow[..., 0], BOX)


def test_config_validation() -> None:
    c = VelocityFeatures.Config()
    assert (c.n_velocity_bins, c.magnitude_edges, c.magnitude_percentiles) == (8, [], [])  # anomalib AiVadModel
    with pytest.raises(ValidationError, match="increasing"):
        VelocityFeatures.Config(magnitude_edges=[2, 1])
    with pytest.raises(ValidationError, match=r"\[0, 100\]"):
        VelocityFeatures.Config(magnitude_percentiles=[150])
    with pytest.raises(ValidationError, match="no columns"):
        VelocityFeatures.Config(n_velocity_bins=0)


def test_operator_needs_flow_and_regions() -> None:
    img = np.zeros((60, 80, 3), np.uint8)
    f = Frame("cam", 0, 0.0, 0.0, img)
    op = VelocityFeatures(VelocityFeatures.Config(), None, "cam")
    with pytest.raises(ValueError, match="stream cam: velocity_features needs optical_flow"):
        op.process(Clip("cam", [f, f], f))
    clip = Clip("cam", [f, f], f, regions=Regions(BOX, np.ones(1, np.float32), np.zeros(1, np.int64)),
                flow=_uniform(3, 0))
    assert op.process(clip)[0].features["velocity"].shape == (1, 8)


def test_box_height_units_make_a_far_and_a_near_walker_alike() -> None:
    """Perspective: a 20 px tall person moving 1 px and a 60 px tall one moving 3 px walk at the same speed in
    heights; ``box_height`` gives both 5 % of their height, ``pixels`` tells them apart, ``both`` keeps the two."""
    flow = np.zeros((100, 120, 2), np.float32)
    flow[0:20, 0:10, 0] = 1.0   # far: 10 x 20 px box, 1 px
    flow[30:90, 50:80, 0] = 3.0  # near: 30 x 60 px box, 3 px
    boxes = np.array([[0, 0, 9, 19], [50, 30, 79, 89]], np.float32)  # heights 20 (inclusive pixels) and 60
    regions = Regions(boxes, np.ones(2, np.float32), np.ones(2, np.int64))
    f = Frame("cam", 0, 0.0, 0.0, np.zeros((100, 120, 3), np.uint8))

    def run(units: str, **kw: object) -> np.ndarray:
        op = VelocityFeatures(VelocityFeatures.Config(n_velocity_bins=1, velocity_units=units, **kw), None, "cam")
        return op.process(Clip("cam", [f, f], f, regions=regions, flow=flow))[0].features["velocity"]

    px, rel, both = run("pixels"), run("box_height"), run("both")
    np.testing.assert_allclose(px[:, 0], [1.0, 3.0], atol=0.06)  # box edges hold a row of zero flow
    np.testing.assert_allclose(rel[:, 0], 100 * px[:, 0] / np.array([19.0, 59.0]), rtol=1e-5)
    assert abs(rel[0, 0] - rel[1, 0]) < 0.3 and px[1, 0] > 2.5 * px[0, 0]
    np.testing.assert_allclose(both, np.concatenate([px, rel], axis=1))
    # magnitude-bin fractions are fractions in every unit; means and percentiles are rescaled
    fr = run("box_height", magnitude_edges=[2.0], magnitude_percentiles=[50])
    fp = run("pixels", magnitude_edges=[2.0], magnitude_percentiles=[50])
    np.testing.assert_allclose(fr[:, 1:3], fp[:, 1:3])
    np.testing.assert_allclose(fr[:, 3], 100 * fp[:, 3] / np.array([19.0, 59.0]), rtol=1e-5)
    with pytest.raises(ValidationError, match="velocity_units"):
        VelocityFeatures.Config(velocity_units="metres")


def test_dis_flow_of_a_shifted_real_frame(data_root: Path) -> None:
    """A real Ped2 frame moved 3 px right: the flow operator and the features report 3 px in the +x bin."""
    video = ucsd_videos(data_root / "UCSD_Anomaly_Dataset.v1p2", "UCSDped2", "test")[0]
    first = read_rgb(video.frame_paths[0])
    h, w = first.shape[:2]
    last = cv2.warpAffine(first, np.float32([[1, 0, 3], [0, 1, 0]]), (w, h), borderMode=cv2.BORDER_REFLECT)
    fa, fb = Frame("t", 0, 0.0, 0.0, first), Frame("t", 1, 0.1, 0.0, last)
    clip = OpticalFlow(OpticalFlow.Config(), None, "t").process(Clip("t", [fa, fb], fb))[0]
    assert clip.flow.shape == (h, w, 2) and clip.flow.dtype == np.float32
    box = np.array([[60, 60, 300, 200]], np.float32)  # interior, away from the borders
    out = velocity_histogram(clip.flow, box, n_bins=8, magnitude_percentiles=[50])
    assert out[0, 6] == pytest.approx(3.0, abs=0.3)
    assert out[0, 8] == pytest.approx(3.0, abs=0.3)
    assert int(np.argmax(out[0, :8])) == 6
