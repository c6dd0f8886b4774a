"""``streamad bench``: N copies of a pipeline's streams run side by side with a fitted PaDiM on a small synthetic
folder dataset (real files, the real engine and model); the frames, stage table, CPU shares, latency, memory and
accuracy it reports, and the CLI's table and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from image_fixtures import defect_mask, folder_pipeline, texture, write_folder_dataset
from streamad.bench import bench, copies_of_streams
from streamad.config import load_config_text
from streamad.errors import ModelError
from streamad.runtime.jobs import fit


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder dataset (20 normal, 4 defect images with masks), its config file and a fitted PaDiM."""
    rng = np.random.default_rng(11)
    root = write_folder_dataset(tmp_path_factory.mktemp("bench"), (texture(rng) for _ in range(20)),
                                ((texture(rng, defect=True), defect_mask()) for _ in range(4)))
    (root / "pipeline.yaml").write_text(folder_pipeline("tex", root, root / "model", """
  - kind: image_model
    model: {kind: padim, layers: [layer1, layer2], n_features: 20, input_size: [64, 96]}
  - kind: threshold
"""))
    fit(load_config_text((root / "pipeline.yaml").read_text(), path=root / "pipeline.yaml"), quiet=True)
    return root


def _cfg(root: Path):  # noqa: ANN202
    return load_config_text((root / "pipeline.yaml").read_text(), path=root / "pipeline.yaml")


def test_copies_get_their_own_ids_and_settings(fitted: Path) -> None:
    cfg = _cfg(fitted)
    one = copies_of_streams(cfg, 1)
    assert [c.id for c in one] == ["tex"]
    three = copies_of_streams(cfg, 3, realtime=True, max_frames=5)
    assert [c.id for c in three] == ["tex@1", "tex@2", "tex@3"]
    assert all(c.realtime and c.max_frames == 5 for c in three) and not cfg.streams[0].realtime  # config untouched
    with pytest.raises(ValueError, match="at least 1"):
        copies_of_streams(cfg, 0)


def test_bench_two_copies_measures_every_stage(fitted: Path) -> None:
    res = bench(_cfg(fitted), streams=2)
    # each copy: the folder's test split (4 normal held out of 20, 4 defects) in two streams (good, bad)
    assert res.streams == 2 and res.sources == 4 and res.frames == 16 and not res.errors
    assert res.fps > 0 and res.fps_per_copy == pytest.approx(res.fps / 2)
    assert list(res.stages) == ["image_model", "threshold"]
    model = res.stages["image_model"]
    assert model["messages"] == 16 + 4 and model["ms_per_message"] > 0  # every frame and every stream's end
    assert 0 < model["cpu_share"] <= 1 and sum(s["cpu_share"] for s in res.stages.values()) <= 1.0
    assert res.cpu["process"] > 0 and 0 < res.cpu["stages"] <= res.cpu["process"] * 1.05 and res.peak_rss_mib > 50
    assert 0 < res.latency_ms["p50"] <= res.latency_ms["p99"] <= res.latency_ms["max"]
    assert res.accuracy["image_auroc"] == 1.0  # the same images as eval: the blobs are found in every copy
    assert res.dropped == {}  # file streams wait for the pipeline; only live ones drop
    text = res.table()
    assert "2 copies of the streams (4 streams), 16 frames" in text and "image_model" in text and "p99" in text


def test_cli_prints_the_table_and_writes_json(fitted: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, "-m", "streamad.cli", "bench", str(fitted / "pipeline.yaml"), "--streams",
                          "3", "--max-frames", "2", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "3 copies of the streams (6 streams), 12 frames" in res.stdout
    data = json.loads(out.read_text())
    assert data["frames"] == 12 and data["streams"] == 3 and set(data["latency_ms"]) == {"p50", "p99", "max"}
    assert data["stages"]["image_model"]["messages"] == 12 + 6 and data["fps"] > 0


def test_bench_without_a_model_says_how_to_fit_one(fitted: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="streamad fit"):
        bench(_cfg(fitted), tmp_path / "nothing")


def test_dropped_frames_are_summed_by_reason_over_streams() -> None:
    from streamad.bench.stage_metrics import frames_dropped
    from streamad.metrics import Metrics

    m = Metrics()
    assert frames_dropped(m) == {}
    m.frames_dropped.labels("cam1", "backpressure").inc(3)
    m.frames_dropped.labels("cam2", "backpressure").inc(2)
    m.frames_dropped.labels("cam2", "rate_cap").inc(5)
    m.frames_dropped.labels("cam3", "rate_cap")  # a series that never dropped is left out
    assert frames_dropped(m) == {"backpressure": 5, "rate_cap": 5}


def test_repeat_gives_the_median_run_and_the_spread(fitted: Path, tmp_path: Path) -> None:
    from streamad.bench import BenchResult, repeat_bench

    seen: list[int] = []
    runs = repeat_bench(lambda: bench(_cfg(fitted), max_frames=3), 3, lambda i, r: seen.append(i))
    assert seen == [1, 2, 3] and len(runs.runs) == 3 and all(r.frames == 6 and not r.errors for r in runs.runs)
    assert runs.median_run.fps == sorted(runs.fps)[1]
    with pytest.raises(ValueError, match="at least 1"):
        repeat_bench(lambda: bench(_cfg(fitted)), 0)
    # the median and the range are the runs' own figures, whatever their order
    fake = [BenchResult(config="c", streams=1, sources=1, frames=f, seconds=1.0, realtime=False) for f in (90, 120, 100)]
    rep = repeat_bench(iter(fake).__next__, 3)
    assert rep.median_run.frames == 100
    assert rep.summary() == "frames/s over 3 runs: median 100.0, min 90.0, max 120.0 (runs: 90.0, 120.0, 100.0)"
    data = rep.to_json()
    assert data["fps"] == 100.0 and data["repeats"]["fps"] == [90.0, 120.0, 100.0] and data["repeats"]["max"] == 120.0
    # the CLI: one line per run, the median run's table, the summary, and the JSON with every run
    out = tmp_path / "rep.json"
    res = subprocess.run([sys.executable, "-m", "streamad.cli", "bench", str(fitted / "pipeline.yaml"), "--repeat",
                          "2", "--max-frames", "2", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "run 1 of 2:" in res.stdout and "run 2 of 2:" in res.stdout and "frames/s over 2 runs: median" in res.stdout
    assert len(json.loads(out.read_text())["repeats"]["fps"]) == 2
