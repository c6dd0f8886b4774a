"""`serve` of a fitted Ped2 model applies the per-stream frame-rate cap of the stream config (``every_nth``) and
counts what it drops."""

from __future__ import annotations

from streamad.metrics import Metrics


def test_serve_applies_the_rate_cap_of_the_stream_config(ped2_model, data_root, tmp_path) -> None:
    import os

    from serve_process import pipeline_yaml
    from streamad.config import load_config
    from streamad.runtime.jobs import serve

    clip = data_root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test" / "Test001"  # 180 frames
    cfg = load_config(pipeline_yaml(tmp_path / "capped.yaml", [{"kind": "image_folder", "path": str(clip),
                                                                "id": "capped", "every_nth": 3}],
                                    runtime={"watch_config": False}),
                      env={**os.environ, "STREAMAD_DATA": str(data_root)})
    metrics = Metrics()
    res = serve(cfg, ped2_model, metrics=metrics)
    get = metrics.registry.get_sample_value
    assert get("streamad_frames_in_total", {"stream": "capped"}) == 180
    assert get("streamad_frames_dropped_total", {"stream": "capped", "reason": "rate_cap"}) == 120
    assert res.stats.delivered == get("streamad_frames_processed_total", {"stream": "capped"}) <= 60
    assert res.stats.errors == {}
