"""Issue 17 items 3-4, unit level: one model per camera (``ModelSet``) and the hot swap of a refitted model
directory (``ModelWatcher``). Each directory is loaded once and shared by the streams naming it, ``{stream}`` in a
stream's ``model_dir`` names a directory per camera, a stream without one falls back to the pipeline's model, a
refit is swapped in (alerts' ``model.version`` changes) and a directory that fails to load keeps the old model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from streamad.errors import ModelError
from streamad.frames import Clip, Frame, Regions
from streamad.metrics import Metrics
from streamad.models.model_set import ModelSet, resolve_model_dir, stream_path_part
from streamad.models.postprocess import PostProcess
from streamad.models.store import save_model
from streamad.models.video.aivad.model import AiVad
from streamad.operators.threshold import Threshold
from streamad.operators.video_model import VideoModelOp
from streamad.parts import BuildContext
from streamad.runtime.model_watch import ModelWatcher


def _save(d: Path, shift: float, threshold: float = 1.0) -> Path:
    """A small velocity-only AI-VAD fitted on synthetic features centred on ``shift``, saved to ``d``."""
    rng = np.random.default_rng(int(shift * 10))
    feats = [{"velocity": np.abs(rng.normal(shift, 0.2, (3, 4))).astype(np.float32)} for _ in range(24)]
    model = AiVad(AiVad.Config(n_components_velocity=2))
    model.fit(feats, ["Train001"] * 12 + ["Train002"] * 12)
    return save_model(d, model, PostProcess(min=0.0, max=2 * threshold, image_threshold=threshold))


def _get(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_stream_ids_become_safe_path_parts_and_fall_back_to_the_pipeline_model(tmp_path: Path) -> None:
    assert stream_path_part("10.0.0.5:554/live/ch1") == "10.0.0.5_554_live_ch1"
    assert stream_path_part("..") == "_.." and stream_path_part("/") == "stream"
    assert resolve_model_dir(str(tmp_path / "m" / "{stream}"), "yard/cam 1", None) == tmp_path / "m" / "yard_cam_1"
    assert resolve_model_dir(None, "yard", tmp_path / "default") == tmp_path / "default"


def test_each_directory_is_loaded_once_and_shared_by_the_streams_naming_it(tmp_path: Path) -> None:
    a, b, default = _save(tmp_path / "models" / "gate", 1.0), _save(tmp_path / "models" / "yard", 3.0), \
        _save(tmp_path / "default", 2.0)
    m = Metrics()
    ms = ModelSet(default, m)
    template = str(tmp_path / "models" / "{stream}")
    for sid, tpl in (("gate", template), ("yard", template), ("yard2", str(b)), ("lobby", None)):
        ms.assign(sid, tpl)
    ms.bind("aivad", "video_model")
    ms.load_all()
    assert sorted(ms.dirs()) == sorted([a, b, default])
    assert ms.handle_for("yard") is ms.handle_for("yard2")  # one model in memory for both cameras
    assert ms.handle_for("lobby").dir == str(default)  # no model_dir of its own: the pipeline's model
    assert ms.handle_for("gate").identity == {"name": "aivad", "version": ms.handle_for("gate").version,
                                              "dir": str(a)}
    assert ms.per_stream
    for d in (a, b, default):
        assert _get(m, "streamad_model_loads_total", model_dir=str(d)) == 1.0
    age = _get(m, "streamad_model_age_seconds", stream="gate")
    assert age is not None and 0 <= age < 60
    assert m.remove_stream("gate") >= 1 and _get(m, "streamad_model_age_seconds", stream="gate") is None


def test_a_stream_naming_a_missing_directory_is_a_model_error_naming_the_stream_and_the_directory(
        tmp_path: Path) -> None:
    m = Metrics()
    ms = ModelSet(_save(tmp_path / "default", 1.0), m)
    ms.assign("gate", str(tmp_path / "nowhere" / "{stream}"))
    ms.bind("aivad", "video_model")
    with pytest.raises(ModelError) as e:
        ms.load_all()
    assert "stream gate" in str(e.value) and str(tmp_path / "nowhere" / "gate") in str(e.value)
    assert _get(m, "streamad_model_load_errors_total", model_dir=str(tmp_path / "nowhere" / "gate")) == 1.0


def _clip(stream: str, velocity: float) -> Clip:
    f = Frame(stream, 0, 0.0, 0.0, np.zeros((8, 8, 3), np.uint8))
    c = Clip(stream, [f], f)
    c.regions = Regions(np.array([[0, 0, 4, 4]], np.float32), np.ones(1, np.float32), np.zeros(1, np.int64))
    c.features = {"velocity": np.full((1, 4), velocity, np.float32)}
    return c


def test_each_stream_is_scored_and_normalised_by_its_own_model(tmp_path: Path) -> None:
    low, high = _save(tmp_path / "low", 1.0, threshold=5.0), _save(tmp_path / "high", 3.0, threshold=50.0)
    ctx = BuildContext(model_dir=low, mode="serve", metrics=Metrics())
    ctx.models = ModelSet(low, ctx.metrics)
    ctx.models.assign("a", None)
    ctx.models.assign("b", str(high))
    config = VideoModelOp.Config(model={"kind": "aivad", "n_components_velocity": 2})
    shared = VideoModelOp.create_shared(config, ctx)
    post = Threshold.create_shared(Threshold.Config(), ctx)
    sa, sb = (VideoModelOp(config, shared, s).process(_clip(s, 3.0))[0] for s in ("a", "b"))
    assert sa.model["dir"] == str(low) and sb.model["dir"] == str(high)
    assert sa.postprocess.image_threshold == 5.0 and sb.postprocess.image_threshold == 50.0
    na = Threshold(Threshold.Config(), post, "a").process(sa)[0].normalized
    nb = Threshold(Threshold.Config(), post, "b").process(sb)[0].normalized
    assert na != nb  # the same raw velocity means something else to each camera's model


def test_a_refit_is_swapped_in_and_a_broken_one_keeps_the_old_model(tmp_path: Path) -> None:
    d = _save(tmp_path / "cam", 1.0)
    m = Metrics()
    ms = ModelSet(d, m)
    ms.assign("cam", None)
    ms.bind("aivad", "video_model")
    ms.load_all()
    watcher = ModelWatcher(ms, 0)
    first = ms.handle_for("cam")
    assert watcher.check() == 0  # nothing changed: nothing loaded again
    _save(d, 2.0)
    assert watcher.check() == 1
    second = ms.handle_for("cam")
    assert second is not first and second.version != first.version
    assert _get(m, "streamad_model_loads_total", model_dir=str(d)) == 2.0

    meta = json.loads((d / "model.json").read_text())
    meta["model"]["kind"] = "no_such_model"  # a hand-edited, broken model.json
    (d / "model.json").write_text(json.dumps(meta))
    assert watcher.check() == 0 and watcher.failures == 1
    assert ms.handle_for("cam") is second  # the old model stays and goes on scoring
    assert _get(m, "streamad_model_load_errors_total", model_dir=str(d)) == 1.0
    assert not math.isnan(ms.age_s("cam"))


def test_sighup_requests_a_check_now_even_with_polling_off(tmp_path: Path) -> None:
    d = _save(tmp_path / "cam", 1.0)
    ms = ModelSet(d)
    ms.assign("cam", None)
    ms.bind("aivad", "video_model")
    first = ms.load_all()[0]
    watcher = ModelWatcher(ms, 0).start()
    try:
        _save(d, 2.0)
        watcher.request()
        import time

        deadline = time.monotonic() + 10
        while ms.handle_for("cam") is first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ms.handle_for("cam") is not first and watcher.swaps == 1
    finally:
        watcher.stop()


def test_a_stream_added_while_serving_gets_its_model_loaded_first_or_is_refused(tmp_path: Path) -> None:
    default, yard = _save(tmp_path / "default", 1.0), _save(tmp_path / "yard", 2.0)
    m = Metrics()
    ms = ModelSet(default, m)
    ms.assign("gate", None)
    ms.bind("aivad", "video_model")
    ms.load_all()
    ms.assign("yard", str(yard))  # a reload adds a camera with its own model: loaded before it is assigned
    assert ms.handle_for("yard").dir == str(yard)
    assert _get(m, "streamad_model_loads_total", model_dir=str(yard)) == 1.0
    ms.assign("yard2", str(yard))  # another camera naming it shares it
    assert ms.handle_for("yard2") is ms.handle_for("yard")
    assert _get(m, "streamad_model_loads_total", model_dir=str(yard)) == 1.0
    with pytest.raises(ModelError, match=r"stream yard: model_dir .*missing"):
        ms.assign("yard", str(tmp_path / "missing"))
    assert ms.handle_for("yard").dir == str(yard)  # refused: the camera keeps the model it had


def test_an_adopted_model_gives_the_age_but_is_not_hot_swapped(tmp_path: Path) -> None:
    from streamad.models.handle import read_handle

    d = _save(tmp_path / "img", 1.0)
    ms = ModelSet(d, Metrics())
    ms.assign("cam", None)
    handle = read_handle(d, "aivad", "image_model")
    ms.adopt(handle)
    assert 0 <= ms.age_s("cam") < 60 and ms.handle_for("cam") is handle
    watcher = ModelWatcher(ms, 0)
    _save(d, 2.0)
    assert watcher.check() == 0 and ms.handle_for("cam") is handle
