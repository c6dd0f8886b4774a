"""Issue 17 item 3: ``streamad fit --per-stream`` fits one model per camera of a config in one command: two
training streams (Ped2 Train001 and Train002, 40 frames each) give two model directories (each stream's own
``model_dir``, ``{stream}`` resolved), fitted on that stream's footage only; a third stream whose footage is missing
fails alone and is reported by name at the end, with a non-zero exit, while the others' models are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from streamad.cli import cli
from streamad.config import load_config
from streamad.models.store import read_metadata
from streamad.runtime.per_stream import PerStreamFitError, fit_per_stream, per_stream_plan

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, data_root: Path, extra_train: list[dict] | None = None) -> Path:
    ped2 = data_root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Train"
    ops = yaml.safe_load((REPO / "examples" / "ped2.yaml").read_text())["operators"]
    train = [{"kind": "image_folder", "path": str(ped2 / name), "id": sid, "max_frames": 40}
             for sid, name in (("gate", "Train001"), ("yard", "Train002"))]
    doc = {"name": "cams", "operators": ops,
           "streams": [{"kind": "image_folder", "path": str(ped2 / "Train001"), "id": "gate",
                        "model_dir": str(tmp_path / "models" / "{stream}")}],
           "fit": {"train": train + (extra_train or []), "threshold": {"method": "manual", "value": 1.0}}}
    p = tmp_path / "cams.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def test_model_dirs_follow_the_train_entry_then_the_served_stream_then_dash_o(tmp_path: Path,
                                                                             data_root: Path) -> None:
    cfg = load_config(_config(tmp_path, data_root))
    plan = per_stream_plan(cfg, tmp_path / "out")
    assert [(sid, d) for _, sid, d in plan] == [("gate", tmp_path / "models" / "gate"),
                                              ("yard", tmp_path / "out" / "yard")]
    with pytest.raises(Exception, match=r"no model directory"):
        per_stream_plan(cfg, None)  # yard has none of its own and no -o


def test_two_streams_give_two_models_and_a_failing_stream_is_reported_by_name(tmp_path: Path,
                                                                              data_root: Path) -> None:
    missing = {"kind": "image_folder", "path": str(tmp_path / "no_such_camera"), "id": "lobby", "max_frames": 40}
    cfg = load_config(_config(tmp_path, data_root, [missing]))
    with pytest.raises(PerStreamFitError) as e:
        fit_per_stream(cfg, tmp_path / "out", quiet=True)
    res = e.value.result
    assert set(res.models) == {"gate", "yard"} and set(res.errors) == {"lobby"}
    assert "stream lobby" in str(e.value) and "no_such_camera" in str(e.value)
    gate, yard = read_metadata(tmp_path / "models" / "gate"), read_metadata(tmp_path / "out" / "yard")
    assert gate["created"] != yard["created"]
    # each model saw only its own camera's footage: one training stream each
    assert gate["fit"]["train_streams"] == yard["fit"]["train_streams"] == 1
    assert gate["model"]["params"] != yard["model"]["params"]
    assert not (tmp_path / "out" / "lobby").exists()


def test_the_cli_exits_non_zero_and_lists_what_it_wrote(tmp_path: Path, data_root: Path) -> None:
    bad = {"kind": "image_folder", "path": str(tmp_path / "gone"), "id": "lobby"}
    doc = yaml.safe_load(_config(tmp_path, data_root, [bad]).read_text())
    doc["fit"]["train"] = doc["fit"]["train"][:1] + [bad]  # gate (fits) and lobby (fails)
    p = tmp_path / "two.yaml"
    p.write_text(yaml.safe_dump(doc))
    r = CliRunner().invoke(cli, ["fit", str(p), "--per-stream", "--quiet", "-o", str(tmp_path / "o")])
    assert r.exit_code != 0, r.output
    assert f"stream gate: model written to {tmp_path / 'models' / 'gate'}" in r.output
    assert "stream lobby" in r.output and "gone" in r.output
    assert json.loads((tmp_path / "models" / "gate" / "model.json").read_text())["fit"]["train_streams"] == 1
