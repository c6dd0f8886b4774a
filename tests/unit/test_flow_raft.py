"""``optical_flow`` with ``method: raft`` (torchvision RAFT as anomalib AI-VAD's ``FlowExtractor``) on real Ped2
frames, its weights loading and its config errors.

Real RAFT weights cannot be had offline here, so randomly initialised torchvision ``raft_large`` / ``raft_small``
state dicts stand in: they exercise the loading path (local file, strict load, clear errors) and the resizing and
frame-pixel scaling around the network, not the quality of the flow."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from ped2_fixtures import DATA
from streamad.config import load_config_text
from streamad.errors import ConfigError, ModelError
from streamad.frames import Clip, Frame
from streamad.operators.optical_flow import OpticalFlow
from streamad.sources.datasets.ucsd import ucsd_videos
from streamad.sources.image_folder import read_rgb

SIZE = [128, 192]  # small raft_size (H, W) for a quick CPU test; anomalib uses [520, 960]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """State dicts of randomly initialised raft_large and raft_small (seeded)."""
    from torchvision.models.optical_flow import raft_large, raft_small

    d = tmp_path_factory.mktemp("raft")
    torch.manual_seed(0)
    torch.save(raft_large(weights=None).state_dict(), d / "raft_large.pth")
    torch.save(raft_small(weights=None).state_dict(), d / "raft_small.pth")
    return {"large": d / "raft_large.pth", "small": d / "raft_small.pth"}


@pytest.fixture(scope="module")
def frames() -> tuple[np.ndarray, np.ndarray]:
    """Frames 0 and 3 of Ped2 Train001 (the first and last frame of a 4-frame clip), ``(240, 360, 3) uint8``."""
    video = ucsd_videos(DATA / "UCSD_Anomaly_Dataset.v1p2", "UCSDped2", "train")[0]
    return read_rgb(video.frame_paths[0]), read_rgb(video.frame_paths[3])


def _operator(**config: object) -> OpticalFlow:
    cfg = OpticalFlow.Config(method="raft", **config)
    return OpticalFlow(cfg, OpticalFlow.create_shared(cfg, None), "ped2")  # type: ignore[arg-type]


def _clip(first: np.ndarray, last: np.ndarray) -> Clip:
    a, b = Frame("ped2", 0, 0.0, 0.0, first), Frame("ped2", 3, 0.3, 0.0, last)
    return Clip("ped2", [a, b], b)


@pytest.mark.parametrize("model", ["large", "small"])
def test_raft_flow_of_a_ped2_clip_has_the_frame_shape(weights: dict[str, Path], frames: tuple, model: str) -> None:
    op = _operator(weights=str(weights[model]), raft_model=model, raft_size=SIZE)
    flow = op.process(_clip(*frames))[0].flow
    h, w = frames[0].shape[:2]
    assert flow.shape == (h, w, 2) and flow.dtype == np.float32
    assert np.all(np.isfinite(flow)) and flow.std() > 0
    np.testing.assert_array_equal(op.compute(*frames), flow)  # deterministic: the same pair gives the same flow


def test_raft_flow_is_in_frame_pixels(weights: dict[str, Path], frames: tuple) -> None:
    # A 128 x 192 crop is fed at raft_size as it is; the same crop at twice the size (each pixel repeated 2 x 2)
    # is resized down to exactly the same network input. Its flow must be the first one resized to 256 x 384 and
    # doubled: displacements are given in pixels of the frames the operator received, not of raft_size.
    op = _operator(weights=str(weights["large"]), raft_size=SIZE)
    first, last = (f[40:168, 80:272] for f in frames)
    small = op.compute(first, last)
    twice = [cv2.resize(f, (384, 256), interpolation=cv2.INTER_NEAREST) for f in (first, last)]
    big = op.compute(*twice)
    assert small.shape == (128, 192, 2) and big.shape == (256, 384, 2)
    expected = 2.0 * cv2.resize(small, (384, 256), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(big, expected, atol=1e-3 * float(np.abs(expected).max()))


def test_missing_or_wrong_weights_name_the_file(weights: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not found: .*raft_large\.pth.*nothing is downloaded"):
        _operator(weights=str(tmp_path / "raft_large.pth"))
    with pytest.raises(ModelError, match=r"raft_small\.pth does not match the architecture"):
        _operator(weights=str(weights["small"]))  # raft_model defaults to large
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a state dict")
    with pytest.raises(ModelError, match=r"cannot read weights .*junk\.pth"):
        _operator(weights=str(junk))


def test_raft_config_errors_name_the_field() -> None:
    text = ("streams:\n  - kind: image_folder\n    path: frames\noperators:\n  - kind: clip_window\n"
            "    clip_length_in_frames: 4\n  - kind: optical_flow\n    method: raft\n")
    with pytest.raises(ConfigError, match=r"operators\[1\]\.weights: .*method 'raft' needs weights"):
        load_config_text(text, name="raft.yaml")
    with pytest.raises(ValidationError, match="raft_size must be .* multiples of 8"):
        OpticalFlow.Config(method="raft", weights="raft.pth", raft_size=[520, 950])
    dis = OpticalFlow.Config()  # DIS stays the default and needs no weights
    assert dis.method == "dis" and OpticalFlow.create_shared(dis, None) is None  # type: ignore[arg-type]
