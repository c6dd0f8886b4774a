"""Cross-stream batching of the model (``runtime.batch_size``): the same scores as one clip at a time, on real
UCSD Ped2 clips through the whole operator chain and on the fitted AI-VAD model directly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from serve_process import REPO
from streamad.config import load_config
from streamad.frames import Scores
from streamad.metrics import Metrics
from streamad.models.store import load_model
from streamad.parts import BuildContext
from streamad.runtime.pipeline import Pipeline, build_stages
from streamad.sources.image_folder import ImageFolderSource


def test_aivad_predict_batch_equals_predict_per_clip(ped2_model: Path) -> None:
    model, _ = load_model(ped2_model)
    rng = np.random.default_rng(0)
    dims = {n: model.estimator.estimators[n].gmm.means_.shape[1] for n in model.feature_streams}
    clips = [{n: (rng.random((m, d)) * 4).astype(np.float32) for n, d in dims.items()} for m in (3, 0, 1, 7, 0, 2)]
    batch = model.predict_batch(clips)
    assert len(batch) == len(clips)
    for clip, got in zip(clips, batch):
        want = model.predict(clip)
        assert got.frame_score == want.frame_score or abs(got.frame_score - want.frame_score) < 1e-6
        np.testing.assert_allclose(got.region_scores, want.region_scores, rtol=1e-6, atol=1e-6)
        for n in want.contributions:
            np.testing.assert_allclose(got.contributions[n], want.contributions[n], rtol=1e-6, atol=1e-6)
    empty = [{n: np.zeros((0, d), np.float32) for n, d in dims.items()}] * 2
    assert [r.frame_score for r in model.predict_batch(empty)] == [0.0, 0.0]


def _scores(ped2_model: Path, data_root: Path, batch_size: int) -> tuple[dict[tuple[str, int], float], float]:
    """Raw frame scores of four Ped2 test clips read at once, and the number of model calls."""
    cfg = load_config(REPO / "examples" / "ped2.yaml", env={**os.environ, "STREAMAD_DATA": str(data_root)})
    ctx = BuildContext(config_path=cfg.path, data_root=cfg.data_root, model_dir=ped2_model, metrics=Metrics())
    test = data_root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test"
    sources = [ImageFolderSource.Config(kind="image_folder", path=str(test / c), id=c).build(ctx, c)[0]
               for c in ("Test001", "Test003", "Test009", "Test010")]
    out: dict[tuple[str, int], float] = {}

    def collect(msg: object) -> None:
        if isinstance(msg, Scores):
            out[(msg.stream_id, msg.index)] = msg.raw_score

    Pipeline(sources, build_stages(cfg.operators, ctx), ctx.metrics, consumers=[collect],  # type: ignore[arg-type]
             max_active_streams=4, batch_size=batch_size).run()
    calls = ctx.metrics.registry.get_sample_value("streamad_model_inference_seconds_count",  # type: ignore[union-attr]
                                                  {"model": "aivad"})
    return out, calls or 0.0


def test_batched_pipeline_scores_equal_unbatched(ped2_model: Path, data_root: Path) -> None:
    one, calls_one = _scores(ped2_model, data_root, 1)
    eight, calls_eight = _scores(ped2_model, data_root, 8)
    print(f"model calls: {calls_one:.0f} one clip at a time, {calls_eight:.0f} with batch_size 8")
    assert len(one) == 180 + 150 + 120 + 150 and one.keys() == eight.keys()
    assert calls_eight < calls_one  # clips of several streams did share calls
    diff = max(abs(one[k] - eight[k]) for k in one)
    assert diff < 1e-5, diff


def _ped2_config(data_root: Path, batch_size: int):  # type: ignore[no-untyped-def]
    cfg = load_config(REPO / "examples" / "ped2.yaml", env={**os.environ, "STREAMAD_DATA": str(data_root)})
    cfg.spec.runtime.batch_size = batch_size
    cfg.spec.runtime.max_active_streams = 4
    cfg.spec.runtime.watch_config = False
    cfg.spec.sinks = []
    return cfg


def _model_calls(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("streamad_model_inference_seconds_count",  # type: ignore[union-attr]
                                             {"model": "aivad"}) or 0.0


def test_eval_honours_batch_size_as_serve_does(ped2_model: Path, data_root: Path) -> None:
    """``streamad eval`` builds its pipeline with the run builder, so ``runtime.batch_size`` batches its model
    calls as it does ``serve``'s, and both report the same frame-level figures as one clip at a time."""
    from streamad.runtime.jobs import evaluate, serve

    reports, calls = {}, {}
    for b in (1, 8):
        metrics = Metrics()
        report, _ = evaluate(_ped2_config(data_root, b), ped2_model, quiet=True, metrics=metrics)
        reports[b], calls[b] = report.to_json(), _model_calls(metrics)
    served_metrics = Metrics()
    served = serve(_ped2_config(data_root, 8), ped2_model, metrics=served_metrics).report
    assert served is not None
    print(f"model calls: eval {calls[1]:.0f} (batch 1), {calls[8]:.0f} (batch 8); serve "
          f"{_model_calls(served_metrics):.0f} (batch 8)")
    assert calls[8] < calls[1] and _model_calls(served_metrics) < calls[1]  # both batched across streams
    assert reports[1]["frames"] == reports[8]["frames"] == served.frames == 2010
    for key in ("frame_auroc", "frame_auroc_raw", "f1"):
        assert abs(reports[1][key] - reports[8][key]) < 1e-6, key
        assert abs(served.to_json()[key] - reports[8][key]) < 1e-6, key
