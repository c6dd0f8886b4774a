"""Item 11 of issue 18: alert event ids of a file stream are reproducible, so a replay after a restart can be
deduplicated by ``(event_id, type, seq)``. Real ``streamad serve`` runs of the fitted Ped2 model over Ped2 Test001
(a cyclist from frame 61): the same folder served twice gives the same ids; the same frames at another path, or a
refitted model (another ``model.json`` ``created``), give other ids."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from serve_process import REPO, pipeline_yaml

# the subprocess imports this checkout's streamad whatever its working directory (not an installed copy)
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _serve_ids(tmp_path: Path, name: str, folder: Path, model: Path) -> list[tuple[str, str, int, int]]:
    """``(event_id, type, seq, start_frame)`` of every alert of one ``serve`` run of stream ``cam`` = ``folder``."""
    out = tmp_path / f"{name}.jsonl"
    cfg = pipeline_yaml(tmp_path / f"{name}.yaml", [{"kind": "image_folder", "id": "cam", "path": str(folder)}],
                        sinks=[{"kind": "jsonl", "path": str(out)}])
    run = subprocess.run([sys.executable, "-m", "streamad.cli", "serve", str(cfg), "--model", str(model)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, env=ENV)
    assert run.returncode == 0, run.stderr[-3000:]
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert events, f"{name}: no alert (the cyclist of Test001 should raise one)"
    return [(e["event_id"], e["type"], e["seq"], e["start_frame"]) for e in events]


def test_the_same_file_served_twice_gives_the_same_event_ids_another_file_or_model_other_ids(
        data_root: Path, ped2_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "Test001"
    shutil.copytree(data_root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test" / "Test001", folder)
    first = _serve_ids(tmp_path, "run1", folder, ped2_model)
    again = _serve_ids(tmp_path, "run2", folder, ped2_model)  # a replay after a restart
    assert again == first

    moved = tmp_path / "elsewhere" / "Test001"
    shutil.copytree(folder, moved)
    other_file = _serve_ids(tmp_path, "run3", moved, ped2_model)
    refit = tmp_path / "refit"
    shutil.copytree(ped2_model, refit)
    meta = json.loads((refit / "model.json").read_text())
    meta["created"] = "2000-01-01T00:00:00+00:00"  # another fit of the same weights: another model version
    (refit / "model.json").write_text(json.dumps(meta))
    other_model = _serve_ids(tmp_path, "run4", folder, refit)
    for other in (other_file, other_model):
        # the same events (same frames, same scores) under other ids
        assert [e[1:] for e in other] == [e[1:] for e in first]
        assert not {e[0] for e in other} & {e[0] for e in first}, other
