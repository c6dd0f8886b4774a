"""benchmarks/image_models.py --reuse: a long fit is evaluated on another half without fitting again, and only when
the model under --work was fitted with the settings asked for."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from helpers import load_benchmark
from streamad.models.store import FORMAT, FORMAT_VERSION


def _bench() -> ModuleType:
    return load_benchmark("image_models")


def _write_model_json(model_dir: Path, config: dict) -> None:
    model_dir.mkdir(parents=True)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": {"kind": config["kind"], "config": config},
            "fit": {"seconds": 2259.5}}
    (model_dir / "model.json").write_text(json.dumps(meta), encoding="utf-8")


def test_reuse_takes_a_model_fitted_with_the_same_settings_and_refuses_others(tmp_path: Path) -> None:
    bench = _bench()
    with pytest.raises(SystemExit, match=r"no fitted model in .*cflow/model"):
        bench.reused_model("cflow", tmp_path, {})
    long_schedule = {"max_epochs": 50, "patience": 2}
    cfg = bench.pipeline("cflow", tmp_path, "torch", overrides=long_schedule).operators[0].model
    _write_model_json(tmp_path / "cflow" / "model", cfg.model_dump(mode="json"))
    assert bench.reused_model("cflow", tmp_path, long_schedule) == tmp_path / "cflow" / "model"
    # the example's own 5 epochs are not what that model was fitted with: its figures would be mislabelled
    with pytest.raises(SystemExit, match=r"other settings \(max_epochs\)"):
        bench.reused_model("cflow", tmp_path, {"patience": 2})
