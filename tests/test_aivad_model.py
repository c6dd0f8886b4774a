"""The AI-VAD model (velocity stream): fit on real Ped2 features, save/load round trip through the model store,
the streamad GMM options, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from streamad.errors import ModelError
from streamad.eval.metrics import auroc
from streamad.frames import Clip, Frame
from streamad.models.store import load_model, save_model
from streamad.models.video.aivad.density import GMMEstimator
from streamad.models.video.aivad.model import AiVad
from streamad.operators.features import VelocityFeatures
from streamad.operators.flow import OpticalFlow
from streamad.operators.regions import ForegroundRegions
from streamad.sources.datasets.ucsd import UcsdVideo, ucsd_videos
from streamad.sources.image_folder import read_rgb

L = 4  # frames per clip, as examples/ped2.yaml
FEATURES = {"n_velocity_bins": 1, "magnitude_percentiles": [50, 90, 99]}


def _features(video: UcsdVideo, n_frames: int) -> list[dict[str, np.ndarray]]:
    """Velocity features of the clips (frames k .. k+L-1) of the first ``n_frames`` frames of a Ped2 clip."""
    frames = [read_rgb(p) for p in video.frame_paths[:n_frames]]
    regions = ForegroundRegions(ForegroundRegions.Config(), None, video.name)
    flow = OpticalFlow(OpticalFlow.Config(), None, video.name)
    feats = VelocityFeatures(VelocityFeatures.Config(**FEATURES), None, video.name)
    out = []
    for k in range(len(frames) - L + 1):
        a, b = Frame(video.name, k, 0.0, 0.0, frames[k]), Frame(video.name, k + L - 1, 0.0, 0.0, frames[k + L - 1])
        clip = Clip(video.name, [a, b], b)
        for op in (regions, flow, feats):
            clip = op.process(clip)[0]
        out.append(clip.features)
    return out


@pytest.fixture(scope="module")
def ped2_features(data_root: Path) -> dict[str, object]:
    """Features of 2 x 60 training frames and of test clip Test002 (a cyclist from frame 95), with its labels."""
    root = data_root / "UCSD_Anomaly_Dataset.v1p2"
    train = ucsd_videos(root, "UCSDped2", "train")
    test = ucsd_videos(root, "UCSDped2", "test")[1]
    tf = _features(train[0], 60) + _features(train[1], 60)
    return {"train": tf, "groups": [train[0].name] * 57 + [train[1].name] * 57,
            "test": _features(test, test.num_frames), "labels": test.labels[L - 1:]}


def _fit(data: dict, **config: object) -> AiVad:
    model = AiVad(AiVad.Config(n_components_velocity=5, **config))
    model.fit(data["train"], data["groups"])
    return model


def test_scores_rank_the_cyclist_above_the_walkers(ped2_features: dict) -> None:
    model = _fit(ped2_features, reg_covar_velocity=0.01)
    scores = np.array([model.predict(f).frame_score for f in ped2_features["test"]])
    labels = ped2_features["labels"]
    assert auroc(scores, labels) > 0.9
    r = model.predict(ped2_features["test"][120])
    assert r.region_scores.shape == (len(ped2_features["test"][120]["velocity"]),)
    assert r.frame_score == pytest.approx(float(r.region_scores.max()))
    np.testing.assert_array_equal(r.contributions["velocity"], r.region_scores)


@pytest.mark.parametrize("config", [{}, {"reg_covar_velocity": 0.01, "velocity_transform": "log1p", "seed": 3}])
def test_save_load_round_trip_gives_identical_scores(ped2_features: dict, tmp_path: Path, config: dict) -> None:
    model = _fit(ped2_features, **config)
    save_model(tmp_path / "m", model, {"min": 0.0, "max": 1.0, "image_threshold": 0.5})
    loaded, meta = load_model(tmp_path / "m")
    assert isinstance(loaded, AiVad) and loaded.config == model.config
    for f in ped2_features["test"][::7]:
        a, b = model.predict(f), loaded.predict(f)
        np.testing.assert_array_equal(a.region_scores, b.region_scores)
        assert a.frame_score == b.frame_score
    params = json.loads((tmp_path / "m" / "model.json").read_text())["model"]["params"]["estimators"]["velocity"]
    assert params["reg_covar"] == model.config.reg_covar_velocity
    assert params["transform"] == model.config.velocity_transform


def test_covariance_floor_and_transform_change_the_density(ped2_features: dict) -> None:
    x = np.concatenate([f["velocity"] for f in ped2_features["train"] if len(f["velocity"])])
    plain, floored, logged = GMMEstimator(5), GMMEstimator(5, reg_covar=0.01), GMMEstimator(5, transform="log1p")
    for est in (plain, floored, logged):
        est.fit(x)
    # the floor widens every component: no covariance eigenvalue below 0.01 px^2
    assert np.linalg.eigvalsh(floored.gmm.covariances_).min() >= 0.01 - 1e-9
    assert np.linalg.eigvalsh(plain.gmm.covariances_).min() < 0.01
    # the training NLL range (the min-max normalisation) is narrower with the floor
    assert floored.max - floored.min < plain.max - plain.min
    assert not np.allclose(logged.predict(x[:20]), plain.predict(x[:20]))
    with pytest.raises(ValueError, match="transform"):
        GMMEstimator(2, transform="sqrt")


def test_no_regions_in_training_is_a_clear_error() -> None:
    model = AiVad(AiVad.Config())
    empty = [{"velocity": np.zeros((0, 8), np.float32)} for _ in range(5)]
    with pytest.raises(ValueError, match="No regions were extracted during training"):
        model.fit(empty, ["Train001"] * 5)


def test_errors_name_the_problem(ped2_features: dict) -> None:
    with pytest.raises(ModelError, match="before fit"):
        AiVad(AiVad.Config()).predict({"velocity": np.zeros((1, 4), np.float32)})
    model = _fit(ped2_features)
    with pytest.raises(ModelError, match="velocity_features"):
        model.predict({})
    with pytest.raises(ModelError, match="fitted on 4-d features but got 8-d"):
        model.predict({"velocity": np.zeros((2, 8), np.float32)})
    empty = model.predict({"velocity": np.zeros((0, 4), np.float32)})
    assert empty.frame_score == 0.0 and empty.region_scores.shape == (0,)  # no region -> lowest score
    with pytest.raises(ValidationError, match="not available"):
        AiVad.Config(use_pose_features=True)
    with pytest.raises(ValidationError, match="reg_covar_velocity"):
        AiVad.Config(reg_covar_velocity=0)
