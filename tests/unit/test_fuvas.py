"""FUVAS (``kind: fuvas``) and its ``clip_features`` operator: the PCA reconstruction math on synthetic clips (shapes,
an odd cell scoring highest, sum / max frame scores, batch = single), save/load round trips through ``state()`` and
the model store, clear errors, and the operator's grid features (shapes, boxes, frame cache)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from streamad.errors import ModelError
from streamad.frames import Clip, Frame
from streamad.models.components.clip_grid import combine_frames
from streamad.models.postprocess import PostProcess
from streamad.models.store import load_model, save_model
from streamad.models.video.fuvas.model import Fuvas
from streamad.operators.clip_features import ClipFeatures

M, D = 12, 8  # grid cells, values per cell


def _clips(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``n`` normal clips: every clip vector lies near a 3-dimensional subspace of R^(M*D)."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).normal(size=(3, M * D))
    x = rng.normal(size=(n, 3)) @ basis + 0.01 * rng.normal(size=(n, M * D))
    return [{"clip": row.reshape(M, D).astype(np.float32)} for row in x]


def _fit(**config: object) -> Fuvas:
    model = Fuvas(Fuvas.Config(**config))
    clips = _clips(40)
    model.fit(clips, ["v"] * len(clips))
    return model


def test_fit_predict_shapes_and_an_odd_cell_scores_highest() -> None:
    model = _fit()
    assert model.pca is not None and model.pca.n_components <= 40
    normal = model.predict(_clips(1, seed=5)[0])
    assert normal.region_scores.shape == (M,) and normal.region_scores.dtype == np.float32
    assert normal.frame_score == pytest.approx(float(normal.region_scores.sum()), rel=1e-5)
    assert set(normal.contributions) == {"clip"} and normal.contributions["clip"].shape == (M,)
    odd = _clips(1, seed=5)[0]
    odd["clip"][5] += 3.0  # one cell off the normal subspace
    res = model.predict(odd)
    assert int(np.argmax(res.region_scores)) == 5
    assert res.frame_score > 100 * normal.frame_score
    assert res.contributions["clip"][5] > 1.0 > float(normal.contributions["clip"].max())


def test_max_frame_score_and_pca_count() -> None:
    model = _fit(frame_score="max", pca_level=3)
    assert model.pca is not None and model.pca.n_components == 3
    res = model.predict(_clips(1, seed=7)[0])
    assert res.frame_score == pytest.approx(float(res.region_scores.max()))


def test_batch_equals_single_and_train_clip_stride_thins_the_fit() -> None:
    model = _fit()
    clips = _clips(5, seed=3)
    for a, b in zip(model.predict_batch(clips), [model.predict(c) for c in clips]):
        np.testing.assert_allclose(a.region_scores, b.region_scores, rtol=1e-4)  # float32 rounding
    thin = _fit(train_clip_stride=20)  # 40 clips -> 2
    assert thin.pca is not None and thin.pca.n_components <= 2


def test_state_round_trip_and_store_round_trip(tmp_path: Path) -> None:
    model = _fit()
    clip = _clips(1, seed=11)[0]
    params, arrays = model.state()
    again = Fuvas(model.config)
    again.load_state(params, arrays)
    np.testing.assert_array_equal(model.predict(clip).region_scores, again.predict(clip).region_scores)
    save_model(tmp_path / "m", model, PostProcess(min=0.0, max=1.0, image_threshold=0.5))
    loaded, _ = load_model(tmp_path / "m")
    assert isinstance(loaded, Fuvas) and loaded.config == model.config
    a, b = model.predict(clip), loaded.predict(clip)
    np.testing.assert_array_equal(a.region_scores, b.region_scores)
    assert a.frame_score == b.frame_score


def test_errors_name_the_field_and_the_shape_expected() -> None:
    with pytest.raises(ModelError, match="before fit"):
        Fuvas(Fuvas.Config()).predict(_clips(1)[0])
    with pytest.raises(ValueError, match="at least 2 training clips"):
        Fuvas(Fuvas.Config()).fit(_clips(1), ["v"])
    with pytest.raises(ValueError, match=r"clip 1 has shape \(12, 7\), expected \(M, D\) = \(12, 8\)"):
        Fuvas(Fuvas.Config()).fit([_clips(1)[0], {"clip": np.zeros((M, 7), np.float32)}], ["v", "v"])
    model = _fit()
    with pytest.raises(ModelError, match=r"features\['clip'\].*clip_features"):
        model.predict({"deep": np.zeros((3, 4), np.float32)})
    with pytest.raises(ModelError, match=r"shape \(6, 16\), expected \(M, D\) = \(12, 8\)"):
        model.predict({"clip": np.zeros((6, 16), np.float32)})
    params, arrays = model.state()
    with pytest.raises(ModelError, match="do not fit 12 cells x 9 values"):
        Fuvas(model.config).load_state({**params, "cell_dim": 9}, arrays)
    with pytest.raises(ModelError, match="cell_scale"):
        Fuvas(model.config).load_state({k: v for k, v in params.items() if k != "cell_scale"}, arrays)
    with pytest.raises(ModelError, match="has not been fitted"):
        Fuvas(Fuvas.Config()).state()
    with pytest.raises(ValidationError):
        Fuvas.Config(pca_level=0)


def _frame(i: int, image: np.ndarray) -> Frame:
    return Frame(stream_id="s", index=i, pts=i / 10, wall_time=0.0, image=image)


def test_clip_features_grid_boxes_and_frame_cache() -> None:
    cfg = ClipFeatures.Config(layer="layer3", pooling_kernel_size=2)
    shared = ClipFeatures.create_shared(cfg, None)  # type: ignore[arg-type]
    op = ClipFeatures(cfg, shared, "s")
    rng = np.random.default_rng(0)
    frames = [_frame(i, rng.integers(0, 255, (96, 128, 3), np.uint8)) for i in range(3)]
    calls = []
    real = op.shared
    op.shared = type("Spy", (), {"__call__": lambda _, img: calls.append(1) or real(img),
                                 "cell": real.cell, "video": False})()
    out = op.process(Clip(stream_id="s", frames=frames[:2], target=frames[1]))[0]
    out2 = op.process(Clip(stream_id="s", frames=frames[1:], target=frames[2]))[0]
    assert len(calls) == 3  # frame 1 is computed once for both clips
    # layer3: stride 16 -> 6 x 8 map, pooled by 2 -> 3 x 4 cells of 32 px; 112 channels x 2 frames
    assert out.features["clip"].shape == (12, 224) and out.features["clip"].dtype == np.float32
    assert out.regions is not None and out.regions.boxes.shape == (12, 4)
    np.testing.assert_array_equal(out.regions.boxes[5], [32, 32, 64, 64])
    # stacked oldest first: clip 2's first half is clip 1's second half (frame 1)
    np.testing.assert_array_equal(out2.features["clip"][:, :112], out.features["clip"][:, 112:])
    mean = ClipFeatures(ClipFeatures.Config(layer="layer3", pooling_kernel_size=2, temporal="mean"), real, "s")
    m = mean.process(Clip(stream_id="s", frames=frames[:2], target=frames[1]))[0].features["clip"]
    np.testing.assert_allclose(m, (out.features["clip"][:, :112] + out.features["clip"][:, 112:]) / 2, rtol=1e-5)
    with pytest.raises(ValueError, match="one frame size per stream"):
        small = _frame(3, rng.integers(0, 255, (64, 64, 3), np.uint8))
        op.process(Clip(stream_id="s", frames=[frames[2], small], target=small))


def test_combine_frames_layout_and_errors() -> None:
    maps = np.arange(2 * 1 * 3 * 4, dtype=np.float32).reshape(2, 1, 3, 4)  # T=2 frames, 1 x 3 cells, C=4
    stacked = combine_frames(maps, "stack")
    assert stacked.shape == (3, 8)
    np.testing.assert_array_equal(stacked[1], np.r_[maps[0, 0, 1], maps[1, 0, 1]])  # oldest frame first
    np.testing.assert_array_equal(combine_frames(maps, "mean")[2], maps[:, 0, 2].mean(axis=0))
    with pytest.raises(ValueError, match=r"\(T, h, w, C\)"):
        combine_frames(maps[0], "stack")
    with pytest.raises(ValueError, match="'stack' or 'mean'"):
        combine_frames(maps, "max")
