"""PaDiM and PatchCore through OpenVINO, streamad against anomalib's own ``OpenVINOInferencer``, on the same UCSD
Ped2 test frames, in one run on one machine (issue 21's speed ratio).

    STREAMAD_DATA=../shared/data python benchmarks/anomalib_side_by_side.py [--models padim patchcore]
        [--frames 2010] [--work runs/anomalib_side_by_side] [--env runs/anomalib_env] [--batch-size 1]
        [--json OUT.json] [--refit]

anomalib is never a dependency of streamad: the first run creates a separate venv (``--env``, reused afterwards)
and pip-installs :data:`ANOMALIB_PINS` there (about 6.6 GB and 4-5 minutes: anomalib imports torchvision, whose
PyPI wheels need the torch they were built with; streamad's torch is not shared). benchmarks/anomalib_worker.py runs
inside it.

For each model: streamad's model is fitted and exported first (step 2; PatchCore's bank size is needed by step 1),
then anomalib is measured (step 1), then streamad right after it:

1. anomalib (worker, subprocess in the venv): ``Padim`` / ``Patchcore`` with the settings of streamad's Ped2 image
   examples (examples/ped2_padim.yaml; PatchCore: image_serve_fps.PATCHCORE): timm ``efficientnet_lite0`` at
   ``pre_trained=False`` with streamad's ``layer2`` / ``layer3`` mapped to timm's ``blocks.2`` / ``blocks.4``
   (stride 8 / 16, 40 / 112 channels; :func:`timm_layers`), input 240x360, PaDiM ``n_features`` 100, PatchCore
   coreset 1 % and 9 neighbours. Random weights: nothing can be downloaded here, and weights do not change the
   time per frame (the same graph, the same shapes). PaDiM is fitted on every Ped2 training frame; PatchCore on
   evenly spread training frames, as many as make its memory bank as large as streamad's (streamad's
   ``max_coreset_input`` draws 100,000 patches, 40 a frame, into the coreset search: 1,020 rows; anomalib's 1 % of
   76 frames' 1,350 patches: 1,026; both are printed). ONNX through torch's TorchScript exporter (anomalib 2.1's
   dynamic axes; torch >= 2.9 defaults to the dynamo exporter). Exported with anomalib's ``to_openvino`` and
   timed with ``OpenVINOInferencer.predict(path)`` frame after frame, each frame read from disk by ``predict``.
   The exported IR is reused by later runs (``--refit``: fit and export again).
2. streamad: the model fitted from examples/ped2_padim.yaml (image_serve_fps.config, reused from
   ``<work>/<model>/model``), ``streamad export DIR --format openvino``, then :func:`streamad.bench.run.bench` with
   ``runtime: openvino`` over the same frames: the first K frames of each of the 12 test clips (K the smallest
   that gives ``--frames`` frames), the 12 clips as 12 streams, ``runtime.batch_size`` ``--batch-size``.

frames/s: frames / wall seconds of the timed loop. anomalib: from the first ``predict`` call to the last (model
loading, compilation and one warm-up call excluded). streamad: ``bench``'s run, from the first decoded frame to the
last delivered score (model loading excluded), with decoding, the image model, smoothing, threshold and alerts.
Prints a table (model | anomalib frames/s | streamad frames/s | ratio) with the cores and the load average at the
start, and writes every figure as JSON with ``--json``.

What each side does per frame (the network is the same: backbone, PaDiM's Mahalanobis map / PatchCore's
nearest-neighbour map and re-weighted score, bilinear / nearest upsampling to 240x360, Gaussian blur sigma 4):

* anomalib: PIL decode to RGB, ``/ 255`` as float64, to float32 NCHW (Python, one thread, before each call); in the
  IR a resize to 240x360 (a no-op in value) and ImageNet normalisation, and after the map the post-processor
  (min-max normalisation, image and pixel thresholds: ``pred_label``, ``pred_mask``); then a ``NumpyImageBatch``.
  Compiled for ``CPU`` (what the inferencer's default ``AUTO`` picks on this machine) with OpenVINO's defaults:
  bf16 inference on CPUs with AVX-512 BF16 or AMX (the machine line lists the CPU's flags), else f32.
* streamad: OpenCV decode to RGB uint8 in the source threads, 12 streams at once, overlapping the model; in the IR
  ``(x - 127) / 128``, out the raw map and score; then in Python min-max normalisation, anomalous regions
  (connected components of the thresholded map), temporal smoothing, threshold and alert stages. Compiled for
  ``CPU`` with ``INFERENCE_PRECISION_HINT=f32`` (``--inference-precision bf16``: bf16 where the CPU has it, as
  anomalib's default) and ``PERFORMANCE_HINT=LATENCY``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from image_serve_fps import PATCHCORE, config, cpu_flags, streamad  # noqa: E402

ANOMALIB_PINS = ("anomalib==2.1.0", "torch==2.14.1", "torchvision==0.29.1", "openvino==2026.4.1", "onnx==1.23.2",
                 "onnxscript==0.7.2", "lightning==2.6.6", "timm==1.0.31",
                 # anomalib.models imports every model: WinCLIP needs open_clip, VLM-AD dotenv, AI-VAD requests
                 "open-clip-torch==2.24.0", "python-dotenv==1.2.4", "requests==2.34.2")
_CHECK = "from anomalib.models import Padim, Patchcore; from anomalib.deploy import OpenVINOInferencer"
_WORKER = REPO / "benchmarks" / "anomalib_worker.py"


def _run(cmd: Sequence[str], what: str, **kw: Any) -> subprocess.CompletedProcess:
    """Run ``cmd``; raise naming the command and the tail of its output when it fails."""
    res = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if res.returncode != 0:
        tail = (res.stdout + res.stderr)[-3000:]
        raise RuntimeError(f"{what} failed ({res.returncode}): {' '.join(cmd)}\n{tail}")
    return res


def ensure_env(env: Path) -> Path:
    """The anomalib venv's python: ``env`` is created and :data:`ANOMALIB_PINS` installed unless its marker file
    already lists the same pins; the import of Padim, Patchcore and OpenVINOInferencer is checked either way."""
    python = env / "bin" / "python"
    marker = env / "streamad_pins.txt"
    pins = "\n".join(ANOMALIB_PINS)
    if not (marker.is_file() and marker.read_text(encoding="utf-8") == pins):
        t0 = time.perf_counter()
        if not python.is_file():
            _run([sys.executable, "-m", "venv", str(env)], "creating the anomalib venv")
        print(f"installing {' '.join(ANOMALIB_PINS)} into {env} (once; about 6.5 GB) ...", flush=True)
        _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *ANOMALIB_PINS],
             "pip install into the anomalib venv")
        marker.write_text(pins, encoding="utf-8")
        print(f"anomalib venv ready in {time.perf_counter() - t0:.0f} s", flush=True)
    _run([str(python), "-W", "ignore", "-c", _CHECK], f"importing anomalib in {env}")
    return python


def timm_layers(backbone: str, layers: Sequence[str]) -> list[str]:
    """streamad's layer names as timm feature-module names for anomalib's ``TimmFeatureExtractor``:
    EfficientNet-Lite's ``layer1..4`` (stride 4/8/16/32) are timm's ``blocks.1/2/4/6``; other names unchanged."""
    from streamad.models.components.backbone import _LITE_ALIASES

    lite = backbone.startswith("efficientnet_lite")
    return [_LITE_ALIASES.get(n, n) if lite else n for n in layers]


def frames_per_clip(total: int | None, clip_lengths: Sequence[int]) -> int:
    """The smallest K whose first-K-frames-per-clip selection holds at least ``total`` frames (all: the longest
    clip)."""
    longest = max(clip_lengths)
    if total is None or total >= sum(clip_lengths):
        return longest
    if total < 1:
        raise ValueError(f"--frames must be at least 1, got {total}")
    return next(k for k in range(1, longest + 1) if sum(min(k, n) for n in clip_lengths) >= total)


def patchcore_train_frames(bank: int, ratio: float, input_size: Sequence[int], stride: int = 8) -> int:
    """Training frames whose ``(h/stride)*(w/stride)`` patches each make anomalib's coreset (``ratio`` of all
    patches) at least ``bank`` rows."""
    patches = (input_size[0] // stride) * (input_size[1] // stride)
    return math.ceil(bank / ratio / patches)


def spread(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items evenly spread over ``items`` (all when ``n >= len``)."""
    if n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table: model | anomalib frames/s | streamad frames/s | ratio (streamad / anomalib)."""
    out = ["| model | frames | anomalib OpenVINOInferencer frames/s | streamad OpenVINO frames/s | ratio |",
           "|---|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['streamad_fps'] / r['anomalib_fps']:.2f}x" if r["anomalib_fps"] > 0 else "n/a"
        out.append(f"| {r['model']} | {r['frames']} | {r['anomalib_fps']:.1f} | {r['streamad_fps']:.1f} | {ratio} |")
    return "\n".join(out)


def _model_settings(model: str, work: Path) -> dict[str, Any]:
    """The image model block of the streamad config that ``config(model, ...)`` writes."""
    import yaml

    data = yaml.safe_load(config(model, work).read_text(encoding="utf-8"))
    return data["operators"][0]["model"]


def _bank_size(model_dir: Path) -> int:
    """``memory_bank_size`` of a fitted streamad PatchCore (from ``model.json``)."""
    def find(x: Any) -> int | None:
        if isinstance(x, dict):
            if "memory_bank_size" in x:
                return int(x["memory_bank_size"])
            return next((v for v in map(find, x.values()) if v is not None), None)
        if isinstance(x, list):
            return next((v for v in map(find, x) if v is not None), None)
        return None

    size = find(json.loads((model_dir / "model.json").read_text(encoding="utf-8")))
    if size is None:
        raise RuntimeError(f"{model_dir}/model.json: no memory_bank_size")
    return size


def prepare_streamad(model: str, work: Path, refit: bool) -> Path:
    """``<work>/<model>/model``, fitted (unless it holds a model) and exported to OpenVINO (unless it was)."""
    model_dir = work / model / "model"
    if refit or not (model_dir / "model.json").is_file():
        t0 = time.perf_counter()
        streamad("fit", str(config(model, work)), "--quiet")
        print(f"streamad {model}: fitted in {time.perf_counter() - t0:.0f} s", flush=True)
        shutil.rmtree(model_dir / "openvino", ignore_errors=True)
    if not (model_dir / "openvino" / "model.xml").is_file():
        streamad("export", str(model_dir), "--format", "openvino")
    return model_dir


def bench_streamad(model: str, work: Path, model_dir: Path, per_clip: int, batch_size: int,
                   hint: str = "latency", precision: str = "f32") -> dict[str, Any]:
    """:func:`streamad.bench.run.bench` of the config with ``runtime: openvino`` (module doc, step 2)."""
    from streamad.bench.run import bench
    from streamad.config import load_config

    cfg = load_config(config(model, work, "openvino", batch_size, hint, precision))  # as the CLI's _load
    res = bench(cfg, model_dir, max_frames=per_clip)
    if res.errors:
        raise RuntimeError(f"streamad bench of {model}: stream errors {res.errors}")
    out = res.to_json()
    if model == "patchcore":
        out["memory_bank"] = _bank_size(model_dir)
    return out


def anomalib_side(python: Path, model: str, work: Path, test: list[str], train: list[str],
                  settings: dict[str, Any], refit: bool) -> dict[str, Any]:
    """Run benchmarks/anomalib_worker.py in the venv on ``test`` (module doc, step 1); its JSON result."""
    spec = {"model": model, "backbone": settings["backbone"],
            "layers": timm_layers(settings["backbone"], settings["layers"]),
            "input_size": list(settings["input_size"]), "n_features": settings.get("n_features", 100),
            "coreset_sampling_ratio": settings.get("coreset_sampling_ratio", 0.1),
            "num_neighbors": settings.get("num_neighbors", 9), "train": train}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]  # reuse only the same fit
    out_dir = work / "anomalib" / f"{model}-{key}"
    if refit:
        shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.update(test=test, export_dir=str(out_dir))
    spec_path = out_dir / "spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    res = _run([str(python), "-W", "ignore", str(_WORKER), str(spec_path)], f"anomalib {model} worker",
               cwd=out_dir)  # OpenVINOInferencer writes ./cache
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["padim", "patchcore"], choices=["padim", "patchcore"])
    ap.add_argument("--frames", type=int, default=None, help="test frames (first K of each clip; default all 2,010)")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "anomalib_side_by_side")
    ap.add_argument("--env", type=Path, default=REPO / "runs" / "anomalib_env", help="the anomalib venv")
    ap.add_argument("--batch-size", type=int, default=1, help="streamad runtime.batch_size (frames of different "
                                                                   "streams in one model call); anomalib: always 1")
    ap.add_argument("--hint", choices=["latency", "throughput"], default="latency",
                    help="streamad's OpenVINO performance_hint (image_model operator)")
    ap.add_argument("--inference-precision", choices=["f32", "bf16"], default="f32",
                    help="streamad's OpenVINO inference_precision (image_model operator)")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    ap.add_argument("--refit", action="store_true", help="fit and export both sides again")
    args = ap.parse_args()
    from streamad.sources.datasets.ucsd import UcsdPedSource, ucsd_videos

    work = args.work.resolve()
    # absolute: the anomalib worker runs in another directory
    root = Path(os.environ.get("STREAMAD_DATA", str(REPO.parent / "shared" / "data"))).resolve()
    root = root / UcsdPedSource.Config(split="test").root  # the release folder, as the config's streams find it
    machine = {"processor": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "load_average_start": [round(x, 2) for x in os.getloadavg()], "python": sys.version.split()[0]}
    print(f"machine: {machine['processor']}, {machine['cores']} cores ({cpu_flags()}); load average (1/5/15 min) "
          f"{machine['load_average_start']} at the start", flush=True)
    python = ensure_env(args.env.resolve())
    clips = ucsd_videos(root, "UCSDped2", "test")
    per_clip = frames_per_clip(args.frames, [c.num_frames for c in clips])
    test = [str(p) for c in clips for p in c.frame_paths[:per_clip]]
    train_all = [str(p) for c in ucsd_videos(root, "UCSDped2", "train") for p in c.frame_paths]
    print(f"{len(test)} test frames (the first {per_clip} of each of {len(clips)} clips)", flush=True)
    rows, details = [], {}
    for model in args.models:
        settings = _model_settings(model, work)
        model_dir = prepare_streamad(model, work, args.refit)  # first: anomalib's PatchCore bank matches its size
        train = train_all
        if model == "patchcore":
            train = spread(train_all, patchcore_train_frames(_bank_size(model_dir), PATCHCORE["coreset_sampling_ratio"],
                                                             settings["input_size"]))
        load = [round(os.getloadavg()[0], 2)]
        theirs = anomalib_side(python, model, work, test, train, settings, args.refit)
        load.append(round(os.getloadavg()[0], 2))
        ours = bench_streamad(model, work, model_dir, per_clip, args.batch_size, args.hint,
                              args.inference_precision)  # right after anomalib's loop
        if ours["frames"] != theirs["frames"]:
            raise RuntimeError(f"{model}: streamad scored {ours['frames']} frames, anomalib {theirs['frames']}")
        rows.append({"model": model, "frames": theirs["frames"], "anomalib_fps": theirs["fps"],
                     "streamad_fps": ours["fps"]})
        bank = (f"; memory bank: anomalib {theirs['memory_bank']} rows from {theirs['fit_frames']} frames, "
                f"streamad {ours['memory_bank']}" if model == "patchcore" else "")
        print(f"{model}: anomalib {theirs['fps']:.1f} frames/s, streamad {ours['fps']:.1f} frames/s (1-min load "
              f"average {load[0]} / {load[1]} before each){bank}", flush=True)
        details[model] = {"anomalib": theirs, "streamad": ours, "load_average_before": load}
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"\nUCSD Ped2 test frames through OpenVINO (FP32), streamad runtime.batch_size {args.batch_size}, "
          f"performance_hint {args.hint}, inference_precision {args.inference_precision}; "
          f"load average {machine['load_average_start'][0]} at the start, {machine['load_average_end'][0]} at the end")
    print(format_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "rows": rows, "details": details,
                                         "anomalib_pins": list(ANOMALIB_PINS)}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
