"""Bad input gives one clear message naming the file, key path and what was allowed, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def streamad(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamad.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})}, cwd=cwd)


BASE = """\
name: t
streams:
  - kind: image_folder
    path: {folder}
operators:
  - kind: clip_window
    clip_length_in_frames: 2
{extra}
"""


@pytest.fixture
def folder(data_root: Path) -> Path:
    return data_root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test" / "Test001"


def check(res: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in res.stderr, f"{n!r} not in: {res.stderr}"


def test_malformed_yaml(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("streams:\n  - kind: image_folder\n    path: [unclosed\noperators: []\n")
    check(streamad("serve", str(p)), 2, str(p), "malformed YAML")


def test_unknown_operator_kind(tmp_path: Path, folder: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(BASE.format(folder=folder, extra="  - kind: optical_flw\n"))
    res = streamad("fit", str(p))
    check(res, 2, f"{p}:8", "operators[1]", "unknown kind 'optical_flw'", "optical_flow")


def test_wrong_field_type_names_key_and_line(tmp_path: Path, folder: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(BASE.format(folder=folder, extra="  - kind: smooth\n    sigma: wide\n"))
    check(streamad("eval", str(p)), 2, f"{p}:9", "operators[1].sigma", "valid number", "'wide'")


def test_unknown_key_lists_allowed_keys(tmp_path: Path, folder: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(BASE.format(folder=folder, extra="  - kind: smooth\n    sigmaa: 2\n"))
    check(streamad("eval", str(p)), 2, "operators[1].sigmaa", "unknown key", "allowed for smooth: sigma")


def test_unset_environment_variable(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("data_root: ${STREAMAD_TEST_UNSET_VAR}\noperators: []\n")
    env = {k: v for k, v in os.environ.items() if k != "STREAMAD_TEST_UNSET_VAR"}
    res = subprocess.run([sys.executable, "-m", "streamad.cli", "serve", str(p)], capture_output=True, text=True,
                         env=env, timeout=120)
    check(res, 2, "data_root", "STREAMAD_TEST_UNSET_VAR is not set")


def test_missing_data_root_says_where_and_how(tmp_path: Path) -> None:
    res = streamad("fit", str(REPO / "examples" / "ped2.yaml"), env={"STREAMAD_DATA": str(tmp_path / "nowhere")},
                   cwd=tmp_path)
    check(res, 3, str(tmp_path / "nowhere"), "STREAMAD_DATA", "http://www.svcl.ucsd.edu/projects/anomaly/")


def test_missing_model_directory(tmp_path: Path, data_root: Path) -> None:
    res = streamad("eval", str(REPO / "examples" / "ped2.yaml"), "--model", str(tmp_path / "none"),
                   env={"STREAMAD_DATA": str(data_root)})
    check(res, 4, "no fitted model", "streamad fit")
