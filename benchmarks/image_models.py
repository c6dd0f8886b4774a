"""The table of image models on the Magnetic Tile split: image AUROC, pixel AUROC, AUPRO, fit time and frames/s
(torch and OpenVINO), as a Markdown table for README.md.

    STREAMAD_DATA=../shared/data python benchmarks/image_models.py [--models patchcore padim dfm dfkde stfpm fastflow
        reverse_distillation uflow cfa cflow csflow
        ganomaly rkde draem dsr efficient_ad winclip] [--splits validation test] [--set patch_size=1]
        [--work runs/bench_images] [--json out.json]

WinCLIP needs CLIP weights the user names (``WINCLIP_WEIGHTS=/path/to/open_clip checkpoint``, read by its example):
without them it is left out of the table, with that reason printed, rather than failing the run.

Each model is fitted with its example, examples/magnetic_tile_<kind>.yaml (DFM and DFKDE: the
PaDiM pipeline with that model and anomalib's default layer), on the 762 training images, early-stopped and
calibrated on the validation half of the held-out images (289), then evaluated on each of ``--splits`` (default: the
test half, 293 images) twice, scored by torch and by the exported FP32 OpenVINO IR. Settings are chosen on the
``validation`` rows and the ``test`` rows are reported. ``--set key=value`` (repeatable; the value is YAML) changes
the model section of every example, e.g. ``--set patch_size=1``. Metrics are the OpenVINO run's (the two agree within
1e-3, see tests/integration/test_export_parity.py; R-KDE, not exportable: torch's run, no OpenVINO frames/s);
frames/s is the evaluation pipeline's throughput (JPEG decoding of images of varying size, the model,
post-processing), not the metric computation after it. Fit time is the whole
`streamad fit` (training features, memory bank, statistics or epochs, and the calibration pass over the validation
half).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from streamad.config import load_config_text
from streamad.export import export_model
from streamad.models.image import IMAGE_MODELS
from streamad.models.store import read_metadata
from streamad.runtime.jobs import evaluate, fit

REPO = Path(__file__).resolve().parents[1]
VIDEO_MODELS: dict[str, dict[str, Any] | None] = {
    "patchcore": None,  # the examples' own model sections
    "padim": None,
    "dfm": {"kind": "dfm", "layers": ["layer3"], "input_size": [256, 256], "pooling_kernel_size": 4,
            "pca_level": 0.97, "score_type": "fre"},
    "dfkde": {"kind": "dfkde", "layers": ["layer4"], "input_size": [256, 256], "n_pca_components": 16},
    "stfpm": None,  # examples/magnetic_tile_stfpm.yaml (trained, 128x128)
    "fastflow": None,  # examples/magnetic_tile_fastflow.yaml (trained, 128x128)
    "reverse_distillation": None,  # examples/magnetic_tile_reverse_distillation.yaml (trained, 128x128)
    "uflow": None,  # examples/magnetic_tile_uflow.yaml (trained, 128x128)
    "cfa": None,  # examples/magnetic_tile_cfa.yaml (trained, 128x128)
    "cflow": None,  # examples/magnetic_tile_cflow.yaml (trained, 128x128)
    "csflow": None,  # examples/magnetic_tile_csflow.yaml (trained, 128x128)
    "ganomaly": None,  # examples/magnetic_tile_ganomaly.yaml (trained from scratch, 64x64; no anomaly map)
    "rkde": None,  # examples/magnetic_tile_rkde.yaml (4x4 grid regions, 256x256; not exportable: torch only)
    "efficient_ad": None,  # examples/magnetic_tile_efficient_ad.yaml (distilled teacher, 160 steps, 128x128)
    "draem": None,  # examples/magnetic_tile_draem.yaml (trained from scratch on simulated anomalies, 128x128)
    "dsr": None,  # examples/magnetic_tile_dsr.yaml (VQ model trained here, 3 phases on simulated anomalies, 128x128)
    "winclip": None,  # examples/magnetic_tile_winclip.yaml (zero-shot CLIP; weights from WINCLIP_WEIGHTS)
}
#: kind -> (environment variable naming the weights file its example reads, what to give): skipped without it.
NEEDS_WEIGHTS = {"winclip": ("WINCLIP_WEIGHTS", "an open_clip ViT-B-16-plus-240 checkpoint (laion400m_e31)")}


def skip_reason(kind: str, env: dict[str, str] | None = None) -> str | None:
    """Why ``kind`` cannot be benchmarked here (its weights are not given), or ``None``."""
    env = os.environ if env is None else env
    if kind not in NEEDS_WEIGHTS:
        return None
    var, what = NEEDS_WEIGHTS[kind]
    if env.get(var):
        return None
    return f"{kind} skipped: needs CLIP weights ({what}) named by {var}; accuracy not measured"


def pipeline(kind: str, work: Path, runtime: str, split: str = "test",
             overrides: dict[str, Any] | None = None) -> Any:
    """The example config of ``kind`` with its model directory under ``work``, the given runtime, its streams on
    the Magnetic Tile ``split`` and ``overrides`` applied to its model section."""
    example = REPO / "examples" / f"magnetic_tile_{kind if VIDEO_MODELS[kind] is None else 'padim'}.yaml"
    data = yaml.safe_load(example.read_text(encoding="utf-8"))
    data["data_root"] = os.environ.get("STREAMAD_DATA", str(REPO.parent / "shared" / "data"))
    data["model_dir"] = str(work / kind / "model")
    if VIDEO_MODELS[kind] is not None:
        data["operators"][0]["model"] = VIDEO_MODELS[kind]
    data["operators"][0]["model"].update(overrides or {})
    data["operators"][0]["runtime"] = runtime
    data["streams"] = [{**data["streams"][0], "split": split}]
    data["sinks"] = []
    return load_config_text(yaml.safe_dump(data), name=str(example), path=example)


def reused_model(kind: str, work: Path, overrides: dict[str, Any]) -> Path:
    """The model directory a former run fitted for ``kind`` under ``work`` (``--reuse``).

    Raises:
        SystemExit: no fitted model there, or one fitted with other model settings than the example's section with
            ``overrides`` applied (its ``model.json`` config differs): the message names the directory and the keys.
    """
    model_dir = work / kind / "model"
    if not (model_dir / "model.json").is_file():
        raise SystemExit(f"--reuse: no fitted model in {model_dir}: run once without --reuse (same --work and --set)")
    want = pipeline(kind, work, "torch", overrides=overrides).operators[0].model.model_dump(mode="json")
    have = read_metadata(model_dir).get("model", {}).get("config", {})
    differ = sorted(k for k in want if k in have and have[k] != want[k])
    if differ:
        raise SystemExit(f"--reuse: {model_dir} was fitted with other settings ({', '.join(differ)}): "
                         f"give the --set of the run that fitted it")
    return model_dir


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(VIDEO_MODELS), choices=list(VIDEO_MODELS))
    ap.add_argument("--splits", nargs="+", default=["test"], choices=["validation", "test"],
                    help="evaluate on these halves of the held-out images (choose settings on validation)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="change the model section of every example (the value is YAML)")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_images")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    ap.add_argument("--reuse", action="store_true",
                    help="evaluate the model a former run fitted under --work with the same --set (no fit; 'fit (s)' "
                         "is then that fit's training time from its model.json)")
    ap.add_argument("--progress", action="store_true",
                    help="show each fit's progress bars and per-epoch lines (stderr); without it one line per step")
    args = ap.parse_args()
    if args.progress:  # the per-epoch lines of the trained models (loss, validation metric)
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    work = args.work.resolve()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.1f}", flush=True)
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    label = "".join(f" {k}={json.dumps(v)}" for k, v in overrides.items())
    rows = []
    for kind in args.models:
        reason = skip_reason(kind)
        if reason:
            print(reason, flush=True)
            continue
        if args.reuse:
            model_dir = reused_model(kind, work, overrides)
            fit_s = float(read_metadata(model_dir).get("fit", {}).get("seconds", float("nan")))
            print(f"{kind}: reusing {model_dir} (its fit: {fit_s:.0f} s); evaluating {', '.join(args.splits)} ...",
                  flush=True)
        else:
            print(f"{kind}: fitting{label} ...", flush=True)
            t0 = time.perf_counter()
            model_dir = fit(pipeline(kind, work, "torch", overrides=overrides), quiet=not args.progress).model_dir
            fit_s = time.perf_counter() - t0
            print(f"{kind}: fitted in {fit_s:.0f} s; evaluating {', '.join(args.splits)} ...", flush=True)
        # a model that cannot be exported (R-KDE: a detector network before its torch network) reports torch's run
        exportable = IMAGE_MODELS.get(kind).exportable
        if exportable:
            export_model(model_dir, "openvino")
        for split in args.splits:
            torch_report, torch_stats = evaluate(pipeline(kind, work, "torch", split, overrides), quiet=True)
            ov_report, ov_stats = (evaluate(pipeline(kind, work, "openvino", split, overrides), quiet=True)
                                   if exportable else (torch_report, None))
            # a model without an anomaly map (GANomaly: the image score at every pixel) has no pixel figures
            has_map = IMAGE_MODELS.get(kind).has_anomaly_map
            row = {"model": kind + label, "split": split, "frames": ov_report.frames,
                   "image_auroc": ov_report.image_auroc, "pixel_auroc": ov_report.pixel_auroc if has_map else None,
                   "pixel_aupro": ov_report.pixel_aupro if has_map else None, "image_f1": ov_report.image_f1,
                   "fit_s": fit_s,
                   "fps_torch": torch_stats.fps, "fps_openvino": ov_stats.fps if exportable else None,
                   "fit_stats": read_metadata(model_dir).get("fit", {}),
                   "image_auroc_torch": torch_report.image_auroc,
                   "per_class_pixel_auroc": {k.split("/")[-1]: v["pixel_auroc"] for k, v in ov_report.per_stream.items()
                                             if has_map and v["pixel_auroc"] is not None}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| model | split | image AUROC | pixel AUROC | AUPRO (0.3) | fit (s) | frames/s torch | frames/s OpenVINO |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        pix = "-" if r["pixel_auroc"] is None else f"{r['pixel_auroc']:.3f}"
        pro = "-" if r["pixel_aupro"] is None else f"{r['pixel_aupro']:.3f}"
        ov = "-" if r["fps_openvino"] is None else f"{r['fps_openvino']:.1f}"
        print(f"| {r['model']} | {r['split']} | {r['image_auroc']:.3f} | {pix} | {pro} | {r['fit_s']:.0f} | {r['fps_torch']:.1f} | "
              f"{ov} |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
