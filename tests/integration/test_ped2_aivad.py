"""AI-VAD in full (velocity + pose + deep) on UCSD Ped2 from ../shared/data, end to end through ``streamad fit`` and
``streamad eval`` with examples/ped2_aivad.yaml: frame-level AUROC, per-stream contributions, and alerts whose regions
say why they are anomalous."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "examples" / "ped2_aivad.yaml"


@pytest.fixture(scope="module")
def aivad_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    tmp = tmp_path_factory.mktemp("ped2_aivad")
    env = _env(data_root)
    model = tmp / "model"
    fit = subprocess.run([sys.executable, "-m", "streamad.cli", "fit", str(CONFIG), "-o", str(model), "--quiet"],
                         env=env, capture_output=True, text=True, timeout=1500, cwd=tmp)
    assert fit.returncode == 0, fit.stderr
    out = tmp / "eval.json"
    ev = subprocess.run([sys.executable, "-m", "streamad.cli", "eval", str(CONFIG), "--model", str(model),
                         "--json", str(out), "--quiet"], env=env, capture_output=True, text=True, timeout=1500,
                        cwd=tmp)
    assert ev.returncode == 0, ev.stderr
    return json.loads(out.read_text()), model, tmp


def _env(data_root: Path) -> dict[str, str]:
    return {**os.environ, "STREAMAD_DATA": str(data_root), "STREAMAD_MODELS": str(data_root.parent / "models"),
            "OMP_NUM_THREADS": "1"}


def test_full_aivad_frame_auroc_on_ped2(aivad_run: tuple[dict, Path, Path]) -> None:
    m, model, _ = aivad_run
    print(f"Ped2 AI-VAD (velocity + pose + deep) frame AUROC smoothed {m['frame_auroc']:.4f} "
          f"raw {m['frame_auroc_raw']:.4f}, {m['fps']:.1f} frames/s")
    assert m["frames"] == 2010
    # issue 22's target is 0.97 smoothed with settings chosen on held-out training clips only
    # (benchmarks/aivad_validation_study.py), and no label at fit time (fitted on 12 training clips, calibrated on the
    # 4 held out). With detect_every 2 and no reuse: 0.9808 smoothed, 0.9410 raw in one install and 0.9774 / 0.9326
    # in a fresh install of the same computation (the k-center bank follows float noise). Since the examples reuse
    # work between clips for issue 21's speed (detect_every 4, pose refresh_every 2, reused appearance vectors):
    # 0.9754 / 0.9419 (2026-12-07). The floors are the issues' 0.97 smoothed and a raw floor below every run; they
    # fail when accuracy really drops.
    assert m["frame_auroc"] >= 0.970
    assert m["frame_auroc_raw"] >= 0.925
    meta = json.loads((model / "model.json").read_text())
    assert set(meta["model"]["params"]["estimators"]) == {"velocity", "pose", "deep"}
    assert meta["model"]["params"]["estimators"]["deep"]["type"] == "knn"


# the first four test clips (690 frames: a third of the test split keeps CI short); each holds an anomalous event
SERVED = ["Test001", "Test002", "Test003", "Test004"]


def test_full_aivad_alerts_name_regions_and_reasons(aivad_run: tuple[dict, Path, Path], data_root: Path) -> None:
    _, model, run_dir = aivad_run
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["streams"][0]["videos"] = SERVED
    config = run_dir / "serve_subset.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    res = subprocess.run([sys.executable, "-m", "streamad.cli", "serve", str(config), "--model", str(model)],
                         env=_env(data_root), capture_output=True, text=True, timeout=1500, cwd=run_dir)
    assert res.returncode == 0, res.stderr
    assert "served 690 frames" in res.stdout
    lines = (run_dir / "runs" / "ped2_aivad" / "alerts.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    starts = [e for e in events if e["type"] == "start"]
    # each served clip holds an anomalous event (bicycles, carts, skateboards): at least 3 of the 4 raise one
    # (all 12 test clips did when the whole split was served, 15 events)
    assert len({e["stream_id"] for e in starts}) >= 3, starts
    for e in events:  # scores reach the alert operator in stream order, the first clip's edge frames too
        assert e["frame"] >= e["start_frame"], e
    for e in starts:
        assert e["regions"] and e["reasons"]
        top = e["regions"][0]
        assert set(top["contributions"]) == {"velocity", "pose", "deep"}
        assert len(top["box"]) == 4 and top["reasons"]
        assert set(top["reasons"]) <= {"fast", "unusual pose", "unusual object"}
    # bicycles and carts look like nothing in the training clips: appearance drives some alerts
    assert any("unusual object" in e["reasons"] for e in starts)
