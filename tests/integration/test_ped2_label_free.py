"""Label-free calibration on real data: Ped2 fitted on Train001-Train012, threshold from false_alarm_rate on the
held-out normal clips Train013-Train016 (no label used at fit time), evaluated on the labelled test split
(examples/ped2_label_free.yaml, the README's command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamad.config import load_config
from streamad.runtime.jobs import evaluate

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "streamad.cli", *args], env=env, capture_output=True, text=True,
                         timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stderr
    return res


def test_false_alarm_rate_threshold_matches_the_labelled_model(ped2_model: Path, data_root: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "STREAMAD_DATA": str(data_root)}
    config = str(REPO / "examples" / "ped2_label_free.yaml")
    model = tmp_path / "model"
    _cli("fit", config, "-o", str(model), "--quiet", env=env)
    post = json.loads((model / "model.json").read_text())["postprocess"]
    assert post["threshold_method"] == "false_alarm_rate"
    assert post["statistics_from"] == "fit.validation (normal frames)"
    cal = post["calibration"]
    assert cal["events_at_threshold"] <= cal["events_budget"]  # the promise on the held-out footage
    assert 0.015 < cal["held_out_hours"] < 0.02  # Train013-016: 630 frames at 10 frames/s

    out = tmp_path / "eval.json"
    res = _cli("eval", config, "--model", str(model), "--json", str(out), "--quiet", env=env)
    m = json.loads(out.read_text())
    monkeypatch.setenv("STREAMAD_DATA", str(data_root))
    labelled, _ = evaluate(load_config(REPO / "examples" / "ped2.yaml"), ped2_model, quiet=True)
    print(f"label-free AUROC {m['frame_auroc']:.4f} vs f1_adaptive {labelled.frame_auroc:.4f}; "
          f"operating points {m['operating_points']}")
    assert abs(m["frame_auroc"] - labelled.frame_auroc) <= 0.01
    ops = m["operating_points"]
    assert ops["model"]["method"] == "false_alarm_rate"
    assert ops["model"]["threshold"] == post["image_threshold"]
    assert ops["f1_optimal"]["f1"] >= ops["model"]["f1"] > 0.5  # the oracle is the best F1 on these labels
    assert ops["model"]["false_alarms_per_hour"] >= 0
    assert "F1-optimal (oracle, test labels)" in res.stdout and "false alarms/h" in res.stdout
