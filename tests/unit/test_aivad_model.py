"""The AI-VAD model: the velocity stream fitted on real Ped2 features, save/load round trips through the model store
(velocity alone, and all three streams on real CenterNet / DIS / MoveNet / EfficientNet-Lite0 features), the
streamad GMM options, how the three streams' scores combine (anomalib ``CombinedDensityEstimator``), and its
errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from ped2_fixtures import DATA
from streamad.errors import ModelError
from streamad.frames import Clip, Frame
from streamad.metric_math import auroc
from streamad.models.postprocess import PostProcess
from streamad.models.store import load_model, save_model
from streamad.models.video.aivad.density import GMMEstimator
from streamad.models.video.aivad.knn import GroupedKNNEstimator
from streamad.models.video.aivad.model import AiVad
from streamad.operators.deep_features import DeepFeatures
from streamad.operators.foreground_regions import ForegroundRegions
from streamad.operators.object_regions import ObjectRegions
from streamad.operators.optical_flow import OpticalFlow
from streamad.operators.pose_features import PoseFeatures
from streamad.operators.velocity_features import VelocityFeatures
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
    save_model(tmp_path / "m", model, PostProcess(min=0.0, max=1.0, image_threshold=0.5))
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
    with pytest.raises(ValidationError, match="at least one feature stream"):
        AiVad.Config(use_velocity_features=False)
    with pytest.raises(ValidationError, match="reg_covar_velocity"):
        AiVad.Config(reg_covar_velocity=0)


# --- three streams: how they combine (synthetic features), and the save/load round trip on real features ---

THREE = {"use_pose_features": True, "use_deep_features": True}
WIDTH = {"velocity": 4, "pose": 34, "deep": 8}


def _synthetic(n_videos: int = 3, clips: int = 8, regions: int = 3, seed: int = 0) -> tuple[list[dict], list[str]]:
    """Normal training features of every stream: ``clips`` clips of ``regions`` regions per video."""
    rng = np.random.default_rng(seed)
    feats, groups = [], []
    for v in range(n_videos):
        for _ in range(clips):
            feats.append({n: np.abs(rng.normal(1.0, 0.2, (regions, d))).astype(np.float32) for n, d in WIDTH.items()})
            groups.append(f"Train{v + 1:03d}")
    return feats, groups


def test_three_streams_add_up_as_anomalib_combined_density() -> None:
    train, groups = _synthetic()
    model = AiVad(AiVad.Config(**THREE, n_neighbors_pose=2, n_components_velocity=2))
    model.fit(train, groups)
    assert model.feature_streams == ["velocity", "pose", "deep"]
    # each stream's contribution is its own estimator's normalised score, fitted on that stream's rows
    stack = {n: np.concatenate([f[n] for f in train]) for n in WIDTH}
    rows = np.repeat(groups, 3)
    velocity = GMMEstimator(2)
    velocity.fit(stack["velocity"])
    pose, deep = GroupedKNNEstimator(2), GroupedKNNEstimator(1)
    pose.fit(stack["pose"], rows)
    deep.fit(stack["deep"], rows)
    # a test clip of 3 regions: a normal one, one with an odd pose only, one with an odd appearance only
    rng = np.random.default_rng(7)
    test = {n: np.abs(rng.normal(1.0, 0.2, (3, d))).astype(np.float32) for n, d in WIDTH.items()}
    test["pose"][1] += 3.0
    test["deep"][2] += 3.0
    r = model.predict(test)
    for name, est in (("velocity", velocity), ("pose", pose), ("deep", deep)):
        np.testing.assert_array_equal(r.contributions[name], est.predict(test[name]))
    # region score = sum of the per-stream contributions
    np.testing.assert_allclose(r.region_scores, sum(r.contributions.values()), rtol=1e-6)
    assert int(np.argmax(r.contributions["pose"])) == 1 and int(np.argmax(r.contributions["deep"])) == 2
    # frame score = sum over streams of each stream's maximum (not the maximum region score): the odd pose and the
    # odd appearance, in different regions, both count
    assert r.frame_score == pytest.approx(sum(float(c.max()) for c in r.contributions.values()))
    assert r.frame_score > float(r.region_scores.max()) + 1.0
    # several clips at once give the same scores as one by one; a clip without regions scores 0
    empty = {n: np.zeros((0, d), np.float32) for n, d in WIDTH.items()}
    batch = model.predict_batch([test, empty, train[0]])
    for got, f in zip(batch, [test, empty, train[0]]):
        want = model.predict(f)
        # float32 sums: a batch goes through BLAS in other blocks than one clip (seen: 9e-6 relative under load)
        np.testing.assert_allclose(got.region_scores, want.region_scores, rtol=5e-5)
        assert got.frame_score == pytest.approx(want.frame_score, rel=5e-5)
    assert batch[1].frame_score == 0.0 and batch[1].region_scores.shape == (0,)


@pytest.mark.parametrize("stream, operator", [("pose", "pose_features"), ("deep", "deep_features")])
def test_a_missing_stream_names_the_operator_to_add(stream: str, operator: str) -> None:
    train, groups = _synthetic()
    broken = [dict(f) for f in train]
    del broken[4][stream]
    with pytest.raises(ValueError, match=rf"1 of 24 training clips have no '{stream}' features: add the {operator} "
                                         rf"operator"):
        AiVad(AiVad.Config(**THREE)).fit(broken, groups)
    model = AiVad(AiVad.Config(**THREE))
    model.fit(train, groups)
    clip = {n: f for n, f in train[0].items() if n != stream}
    with pytest.raises(ModelError, match=rf"{stream} -> {operator}"):
        model.predict(clip)
    with pytest.raises(ModelError, match=rf"GroupedKNNEstimator was fitted on {WIDTH[stream]}-d"):
        model.predict({**train[0], stream: np.zeros((3, 5), np.float32)})


MODELS_DIR = DATA.parent / "models"
TRAIN_VIDEOS = ("Train001", "Train002", "Train003")


def _clip(video: UcsdVideo, last: int) -> Clip:
    """The clip of frames ``last - 3 .. last`` of a Ped2 video (``clip_window`` with 4 frames, target = last)."""
    frames = [Frame(video.name, i, i / 10, 0.0, read_rgb(video.frame_paths[i])) for i in range(last - L + 1, last + 1)]
    return Clip(video.name, frames, frames[-1])


@pytest.fixture(scope="module")
def ped2_three_streams() -> dict[str, object]:
    """All three streams' features from the real operators: object_regions (CenterNet), optical_flow (DIS),
    velocity_features, pose_features (MoveNet), deep_features (EfficientNet-Lite0), of clips ending at frames
    3, 13, ..., 53 of Train001-003 and at frames 40, 80, 120, 160 of Test001."""
    root = DATA / "UCSD_Anomaly_Dataset.v1p2"
    parts = [(ObjectRegions, ObjectRegions.Config(weights=str(MODELS_DIR / "centernet.onnx"))),
             (OpticalFlow, OpticalFlow.Config()), (VelocityFeatures, VelocityFeatures.Config()),
             (PoseFeatures, PoseFeatures.Config(weights=str(MODELS_DIR / "movenet-multipose.onnx"))),
             (DeepFeatures, DeepFeatures.Config())]
    shared = [(cls, c, cls.create_shared(c, None)) for cls, c in parts]  # type: ignore[arg-type]

    def features(video: UcsdVideo, lasts: range | tuple[int, ...]) -> list[dict[str, np.ndarray]]:
        ops = [cls(c, sh, video.name) for cls, c, sh in shared]  # one stream per video
        out = []
        for last in lasts:
            clip = _clip(video, last)
            for op in ops:
                clip = op.process(clip)[0]
            out.append(clip.features)
        return out

    train = {v.name: v for v in ucsd_videos(root, "UCSDped2", "train")}
    test = next(v for v in ucsd_videos(root, "UCSDped2", "test") if v.name == "Test001")
    tf, groups = [], []
    for name in TRAIN_VIDEOS:
        clips = features(train[name], range(L - 1, 60, 10))
        tf += clips
        groups += [name] * len(clips)
    return {"train": tf, "groups": groups, "test": features(test, (40, 80, 120, 160))}


def test_three_stream_model_saved_and_loaded_gives_identical_scores(ped2_three_streams: dict, tmp_path: Path) -> None:
    """Issue requirement: a model fitted, saved and loaded again gives identical scores (real Ped2 features of all
    three streams, kNN banks subsampled with k-center)."""
    data = ped2_three_streams
    n_rows = sum(len(f["pose"]) for f in data["train"])
    model = AiVad(AiVad.Config(**THREE, n_components_velocity=2, n_neighbors_deep=2, bank_size=64,
                               bank_sampling="kcenter", reg_covar_velocity=0.01))
    model.fit(data["train"], data["groups"])
    assert n_rows > 64
    save_model(tmp_path / "m", model, PostProcess(min=0.0, max=1.0, image_threshold=0.5))
    loaded, _ = load_model(tmp_path / "m")
    assert isinstance(loaded, AiVad) and loaded.config == model.config
    for name in ("pose", "deep"):  # the subsampled banks (at most bank_size rows) are what was saved
        assert 0 < loaded.estimator.estimators[name].bank.shape[0] <= 64
        np.testing.assert_array_equal(loaded.estimator.estimators[name].bank, model.estimator.estimators[name].bank)
    assert all(len(f["velocity"]) for f in data["test"])
    for f in data["test"]:
        a, b = model.predict(f), loaded.predict(f)
        np.testing.assert_array_equal(a.region_scores, b.region_scores)
        assert set(a.contributions) == set(b.contributions) == {"velocity", "pose", "deep"}
        for name in a.contributions:
            np.testing.assert_array_equal(a.contributions[name], b.contributions[name])
        assert a.frame_score == b.frame_score
        assert np.all(np.isfinite(a.region_scores))
    for a, b in zip(model.predict_batch(data["test"]), loaded.predict_batch(data["test"])):
        np.testing.assert_array_equal(a.region_scores, b.region_scores)
        assert a.frame_score == b.frame_score


def test_regions_without_a_pose_get_no_pose_contribution() -> None:
    # pose_features with persons_only gives NaN rows for regions that are not people: they are left out of the
    # pose density (fit and predict), get 0 pose contribution and do not count in the frame's pose maximum
    rng = np.random.default_rng(0)
    feats, groups = [], []
    for i in range(20):
        pose = rng.normal(0, 0.1, (3, 34)).astype(np.float32)
        pose[2] = np.nan  # the third region of every clip is not a person
        feats.append({"velocity": rng.uniform(1, 2, (3, 2)).astype(np.float32), "pose": pose})
        groups.append(f"v{i % 4}")
    model = AiVad(AiVad.Config(kind="aivad", use_pose_features=True))
    model.fit(feats, groups)
    test_pose = np.full((2, 34), np.nan, np.float32)
    test_pose[0] = 5.0  # a person in an unheard-of pose
    out = model.predict({"velocity": np.ones((2, 2), np.float32), "pose": test_pose})
    assert out.contributions["pose"][1] == 0.0 and out.contributions["pose"][0] > 1.0
    np.testing.assert_allclose(out.region_scores, out.contributions["velocity"] + out.contributions["pose"])
    assert out.frame_score == pytest.approx(out.contributions["velocity"].max() + out.contributions["pose"][0])
    batch = model.predict_batch([{"velocity": np.ones((2, 2), np.float32), "pose": test_pose}] * 2)
    assert batch[1].frame_score == pytest.approx(out.frame_score)
    all_nan = {"velocity": np.ones((1, 2), np.float32), "pose": np.full((1, 34), np.nan, np.float32)}
    assert model.predict(all_nan).frame_score == pytest.approx(float(model.predict(all_nan).contributions["velocity"][0]))


def test_fit_does_not_depend_on_the_order_in_which_streams_deliver_clips() -> None:
    """Training streams run concurrently; the fitted model must be the same whatever their clips' interleaving."""
    from streamad.models.video.fitting import ClipFitter
    from streamad.registry import VIDEO_MODELS

    rng = np.random.default_rng(0)
    clips = []
    for s in range(4):
        for i in range(30):
            f = Frame(f"train{s}", i, i / 10, 0.0, np.zeros((8, 8, 3), np.uint8))
            c = Clip(f"train{s}", [f], f)
            c.features = {"velocity": rng.gamma(2.0, 1.0 + s, (3, 4)).astype(np.float32)}
            clips.append(c)
    cls = VIDEO_MODELS.get("aivad")
    cfg = cls.Config(kind="aivad", n_components_velocity=3)
    states = []
    for order in (range(len(clips)), rng.permutation(len(clips))):
        fitter = ClipFitter(cls(cfg))
        for i in order:
            fitter.collect(clips[i])
        model, _ = fitter.fit(progress=False)
        states.append(model.state()[1])
    assert states[0].keys() == states[1].keys()
    for k in states[0]:
        np.testing.assert_array_equal(states[0][k], states[1][k], err_msg=k)
