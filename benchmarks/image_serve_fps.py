"""Frames per second of PaDiM and PatchCore served frame by frame on UCSD Ped2 (360x240) through `streamad serve`,
torch vs OpenVINO side by side (FP32, and optionally FP16 / INT8 IRs).

    STREAMAD_DATA=../shared/data python benchmarks/image_serve_fps.py [--models padim patchcore]
        [--precisions fp32 fp16 int8 bf16] [--work runs/bench_serve] [--refit] [--batch-size 4] [--repeat 5]

For each model: fit examples/ped2_padim.yaml (PatchCore: the same pipeline with a PatchCore model) once into
``<work>/<model>/model`` unless it is there, export the IR(s), then run ``streamad serve`` as a subprocess on the 12
Ped2 test clips (2,010 frames, JPEG decoding, image model, smoothing, threshold, alerts, a JSONL sink) with
``runtime: torch`` and ``runtime: openvino``, and read the frames/s it prints. ``bf16`` is the FP32 IR served with
the operator's ``inference_precision: bf16`` (the CPU's bfloat16 units where it has them; the machine line says
whether it has ``avx512_bf16`` / AMX). End to end: from the first decoded
frame to the last alert written, per the engine's own clock. ``--repeat K`` serves each OpenVINO precision K times
in a row and reports the median frames/s with the range (torch once): the same command spreads by 5-15 % between runs
on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PATCHCORE = {"kind": "patchcore", "backbone": "efficientnet_lite0", "layers": ["layer2", "layer3"],
             "input_size": [240, 360], "coreset_sampling_ratio": 0.01, "max_coreset_input": 100000,
             "num_neighbors": 9}
_SERVED = re.compile(r"served (\d+) frames in ([\d.]+) s \(([\d.]+) frames/s\)")


def config(model: str, work: Path, runtime: str = "auto", batch_size: int = 1, hint: str = "latency",
           inference_precision: str = "f32") -> Path:
    """A copy of examples/ped2_padim.yaml with the model, the runtime, its OpenVINO ``performance_hint`` and
    ``inference_precision``, ``runtime.batch_size`` and a JSONL sink under ``work``."""
    data: dict[str, Any] = yaml.safe_load((REPO / "examples" / "ped2_padim.yaml").read_text(encoding="utf-8"))
    data["name"] = f"ped2_{model}"
    data["data_root"] = os.environ.get("STREAMAD_DATA", str(REPO.parent / "shared" / "data"))
    data["model_dir"] = str(work / model / "model")
    if model == "patchcore":
        data["operators"][0]["model"] = PATCHCORE
    data["operators"][0]["runtime"] = runtime
    data["operators"][0]["performance_hint"] = hint
    data["operators"][0]["inference_precision"] = inference_precision
    data.setdefault("runtime", {})["batch_size"] = batch_size
    data["sinks"] = [{"kind": "jsonl", "path": str(work / model / f"alerts_{runtime}.jsonl")}]
    path = work / model / f"{runtime}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def streamad(*args: str) -> str:
    """Run the CLI; return its stdout (raises with its stderr on failure)."""
    res = subprocess.run([sys.executable, "-m", "streamad.cli", "--log-level", "WARNING", *args], capture_output=True,
                         text=True, cwd=REPO)
    if res.returncode != 0:
        raise RuntimeError(f"streamad {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res.stdout


def serve_fps(cfg: Path, model_dir: Path) -> tuple[int, float, float]:
    """``(frames, seconds, frames/s)`` that `streamad serve` reports."""
    out = streamad("serve", str(cfg), "--model", str(model_dir))
    m = _SERVED.search(out)
    if not m:
        raise RuntimeError(f"no 'served ... frames/s' line in:\n{out[-2000:]}")
    return int(m.group(1)), float(m.group(2)), float(m.group(3))


def cpu_flags() -> str:
    """The CPU features that decide OpenVINO's fast paths (AVX2 / AVX-512, VNNI for int8, BF16 / AMX)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text(encoding="utf-8").split())
    except OSError:
        return "flags unknown"
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16"]
    return " ".join(f for f in wanted if f in flags) or "no AVX2"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["padim", "patchcore"], choices=["padim", "patchcore"])
    ap.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "fp16", "int8", "bf16"])
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_serve")
    ap.add_argument("--refit", action="store_true", help="fit again even when a model directory exists")
    ap.add_argument("--batch-size", type=int, default=1,
                    help="runtime.batch_size: frames of different streams scored in one model call")
    ap.add_argument("--repeat", type=int, default=1, help="serve each OpenVINO precision this many times; the "
                                                          "table gives the median, the lines every run")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    work = args.work.resolve()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores ({cpu_flags()}); "
          f"python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.1f}")
    rows = []
    for model in args.models:
        model_dir = work / model / "model"
        fit_cfg = config(model, work)
        if args.refit or not (model_dir / "model.json").is_file():
            t0 = time.perf_counter()
            streamad("fit", str(fit_cfg), "--quiet")
            print(f"{model}: fitted in {time.perf_counter() - t0:.0f} s")
        frames, secs, torch_fps = serve_fps(config(model, work, "torch", args.batch_size), model_dir)
        row = {"model": model, "frames": frames, "torch": torch_fps}
        for precision in args.precisions:
            extra = ["--calibration", str(fit_cfg), "--calibration-frames", "300"] if precision == "int8" else []
            ir_precision = "fp32" if precision == "bf16" else precision
            out_dir = model_dir / "openvino"
            if out_dir.exists():
                shutil.rmtree(out_dir)
            try:
                streamad("export", str(model_dir), "--format", "openvino", "--precision", ir_precision, *extra)
            except RuntimeError as exc:
                print(f"{model}: {precision} export failed: {exc}")
                row[f"openvino {precision}"] = float("nan")
                continue
            served = config(model, work, "openvino", args.batch_size,
                            inference_precision="bf16" if precision == "bf16" else "f32")
            runs = [serve_fps(served, model_dir)[2] for _ in range(args.repeat)]
            row[f"openvino {precision}"] = statistics.median(runs)
            if args.repeat > 1:
                print(f"{model}: openvino {precision}: median {statistics.median(runs):.1f}, min {min(runs):.1f}, "
                      f"max {max(runs):.1f} frames/s (runs: {', '.join(f'{f:.1f}' for f in runs)})")
        rows.append(row)
        print(f"{model}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items() if isinstance(v, float)))
    cols = ["torch"] + [f"openvino {p}" for p in args.precisions]
    print(f"\nframes/s end to end through `streamad serve`, UCSD Ped2 test split (360x240, 2,010 frames), "
          f"runtime.batch_size {args.batch_size}" + (f", OpenVINO columns: median of {args.repeat} runs"
                                                     if args.repeat > 1 else ""))
    print("| model | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for r in rows:
        print(f"| {r['model']} | " + " | ".join(f"{r[c]:.1f}" for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
