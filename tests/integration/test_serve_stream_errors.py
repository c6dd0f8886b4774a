"""`streamad serve` with a fitted Ped2 model: a truncated video ends its own stream with a clear error (exit code 1,
no traceback) while a healthy stream beside it is served to the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def streamad(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamad.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})}, cwd=cwd)


def test_truncated_video_ends_its_stream_with_a_clear_error(tmp_path: Path, data_root: Path,
                                                             ped2_model: Path) -> None:
    src = data_root / "opencv" / "vtest.avi"
    cut = tmp_path / "cut.avi"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 5])
    ok = tmp_path / "ok"
    ok.mkdir()
    for i in range(1, 31):  # a healthy stream beside the broken one
        shutil.copy(data_root / "UCSD_Anomaly_Dataset.v1p2/UCSDped2/Test/Test001" / f"{i:03d}.jpg", ok)
    ops = (REPO / "examples" / "ped2.yaml").read_text().split("operators:")[1].split("sinks:")[0]
    p = tmp_path / "c.yaml"
    p.write_text(f"name: t\nstreams:\n  - kind: video_file\n    path: {cut}\n    max_frames: 400\n"
                 f"  - kind: image_folder\n    id: healthy\n    path: {ok}\n"
                 f"operators:{ops}sinks:\n  - kind: jsonl\n    path: {tmp_path / 'a.jsonl'}\n")
    res = streamad("serve", str(p), "--model", str(ped2_model))
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert "stream cut failed" in res.stderr and "cut.avi" in res.stderr and "truncated" in res.stderr
    assert "served 344 frames" in res.stdout  # 314 decodable frames of the cut file + 30 of the healthy stream
