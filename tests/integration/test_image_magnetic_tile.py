"""PatchCore and PaDiM fitted on the real Magnetic Tile split (80 % of MT_Free, seeded), calibrated on the validation
half of the held-out images and evaluated on the test half (95 MT_Free + 198 defect images), through
``streamad fit`` / ``streamad eval``'s jobs.

Asserted: PatchCore image AUROC >= 0.90 and pixel AUROC >= 0.88 over the test half (0.936 and 0.898 measured), PaDiM
within 0.05 of PatchCore on both. MT_Uneven holds 72 % of the anomalous pixels, so the whole-split pixel AUROC is
mostly how well its bands are found; the examples' band-shaped neighbourhood (``patch_size: [13, 23]``) finds them
at the cost of the smallest defects (Blowhole, Crack), whose per-class pixel AUROC is asserted against a floor
below 0.90 (measured figures in streamad/models/image/*/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from image_fixtures import mt_config
from streamad.cli import cli
from streamad.runtime.jobs import evaluate

DEFECTS = ("MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven")


@pytest.fixture(scope="module")
def reports(mt_patchcore: Path, mt_padim: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = {}
    for kind, model_dir in (("patchcore", mt_patchcore), ("padim", mt_padim)):
        plots = tmp_path_factory.mktemp(f"plots_{kind}")
        report, stats = evaluate(mt_config(kind), model_dir, plots, quiet=True)
        out[kind] = (report, stats, plots)
    return out


def test_patchcore_image_and_pixel_auroc_and_padim_within_005(reports: dict) -> None:
    pc, pd = reports["patchcore"][0], reports["padim"][0]
    assert pc.frames == pd.frames == 293  # the test half: 95 MT_Free + 198 defect images
    assert pc.image_auroc >= 0.90, pc.format_table()
    # every pixel of the 293 test images: 0.898 measured (0.908 on the validation half that kept the examples'
    # patch_size band; 0.903 on the whole held-out set before it was cut into halves)
    assert pc.pixel_auroc >= 0.88, pc.format_table()
    assert pd.image_auroc >= pc.image_auroc - 0.05, pd.format_table()
    assert pd.pixel_auroc >= pc.pixel_auroc - 0.05, pd.format_table()


@pytest.mark.parametrize("kind", ["patchcore", "padim"])
def test_pixel_auroc_per_defect_class(reports: dict, kind: str) -> None:
    """Each defect class's test images with the 95 normal ones: every class is localised (0.84-0.97 measured)."""
    report = reports[kind][0]
    for name in DEFECTS:
        cls = report.per_stream[f"magnetic_tile/{name}"]
        assert cls["pixel_auroc"] >= 0.80, (name, report.format_table())
    assert 0.0 < report.pixel_aupro <= 1.0


def test_report_keys_and_worst_case_plots(reports: dict) -> None:
    report, stats, plots = reports["patchcore"]
    data = report.to_json()
    assert list(data)[:7] == ["image_auroc", "image_aupr", "image_f1", "frames", "fps", "pixel_auroc", "pixel_aupro"]
    assert json.loads(json.dumps(data)) == data
    assert data["per_stream"]["magnetic_tile/MT_Free"]["anomalous_frames"] == 0
    assert stats.errors == {}
    names = sorted(p.name for p in plots.iterdir())
    assert "roc.png" in names
    assert len([n for n in names if n.startswith("worst_missed_")]) == 8
    assert len([n for n in names if n.startswith("worst_false_alarm_")]) == 8
    assert all((plots / n).stat().st_size > 10_000 for n in names)


def test_eval_cli_writes_image_and_pixel_keys(mt_padim: Path, tmp_path: Path) -> None:
    """`streamad eval` on an image dataset prints the image/pixel table and writes the prefixed JSON keys (here on
    5 images per test class)."""
    cfg = tmp_path / "mt.yaml"
    text = Path(mt_config("padim").path).read_text(encoding="utf-8")
    text = text.replace("    split: test\n", "    split: test\n    max_frames: 5\n", 1)
    cfg.write_text(text.replace("${STREAMAD_DATA:-./data}", str(Path(mt_config("padim").data_root))),
                   encoding="utf-8")
    res = CliRunner().invoke(cli, ["eval", str(cfg), "--model", str(mt_padim), "--json", str(tmp_path / "e.json"),
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    assert "AUPRO" in res.output and "pixel AUROC" in res.output
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["frames"] == 30
    for key in ("image_auroc", "image_aupr", "image_f1", "pixel_auroc", "pixel_aupro", "pixel_f1", "fps"):
        assert isinstance(data[key], float), key
