"""Ped2 end to end: fit on the 16 training clips, eval on the 12 test clips from ../shared/data; frame-level AUROC
with the per-clip smoothing of examples/ped2.yaml clears 0.90."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ped2_frame_auroc(ped2_model: Path, data_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "STREAMAD_DATA": str(data_root)}
    out = tmp_path / "eval.json"
    plots = tmp_path / "plots"
    res = subprocess.run([sys.executable, "-m", "streamad.cli", "eval", str(REPO / "examples" / "ped2.yaml"),
                          "--model", str(ped2_model), "--json", str(out), "--plots", str(plots), "--quiet"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    m = json.loads(out.read_text())
    print(f"Ped2 frame AUROC smoothed {m['frame_auroc']:.4f} raw {m['frame_auroc_raw']:.4f}, {m['fps']:.1f} frames/s")
    assert m["frames"] == 2010
    assert m["frame_auroc"] > 0.90
    assert {"frame_auroc", "frame_aupr", "f1", "frames", "fps"} <= set(m)
    assert (plots / "roc.png").stat().st_size > 0
    assert len(list(plots.glob("UCSDped2_Test*.png"))) == 12
    assert "frame AUROC" in res.stdout
