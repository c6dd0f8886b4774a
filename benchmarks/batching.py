"""Cross-stream batching on vs off: serve many streams in one process and compare frames/s end to end, the score
stage's time per frame and the model's time per call, with ``runtime.batch_size`` 1 (off) and N (on).

    STREAMAD_DATA=../shared/data python benchmarks/batching.py examples/ped2.yaml --model runs/ped2/model \\
        [--batch-size 8] [--streams 12] [--repeat 3]

The streams are the config's ``streams`` (for ped2.yaml, the 12 Ped2 test clips), all read at once
(``max_active_streams`` = ``--streams``), as fast as the machine allows. On and off runs alternate so that
machine noise hits both alike; the frame-level AUROC of each run shows the scores do not change.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

from stage_times import stage_means  # benchmarks/ is on sys.path when this script runs

from streamad.config import load_config
from streamad.metrics import Metrics
from streamad.runtime.jobs import serve


def _histogram_mean(metrics: Metrics, name: str) -> tuple[float, int]:
    total, count = 0.0, 0
    for fam in metrics.registry.collect():
        for s in fam.samples:
            if s.name == f"{name}_sum":
                total += s.value
            elif s.name == f"{name}_count":
                count += int(s.value)
    return (total / count if count else 0.0), count


def run_once(config: str, model: Path | None, batch_size: int, streams: int) -> dict[str, float]:
    """One ``serve`` of the config's streams with ``batch_size``; frames/s, score ms/frame, model ms/call."""
    cfg = load_config(config)
    cfg.spec.runtime.batch_size = batch_size
    cfg.spec.runtime.max_active_streams = streams
    cfg.spec.runtime.watch_config = False
    cfg.spec.sinks = []
    metrics = Metrics()
    res = serve(cfg, model, metrics=metrics)
    score_ms = stage_means(metrics).get("video_model", (0.0, 0))[0] * 1e3
    model_s, calls = _histogram_mean(metrics, "streamad_model_inference_seconds")
    return {"fps": res.stats.fps, "frames": res.stats.delivered, "score_ms": score_ms, "model_ms": model_s * 1e3,
            "calls": calls, "auroc": res.report.frame_auroc if res.report else float("nan")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--model", default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--streams", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; python "
          f"{sys.version.split()[0]}; {args.streams} streams at once")
    model = Path(args.model) if args.model else None
    results: dict[int, list[dict[str, float]]] = {1: [], args.batch_size: []}
    for run in range(args.repeat):
        for bs in (1, args.batch_size):
            r = run_once(args.config, model, bs, args.streams)
            results[bs].append(r)
            print(f"run {run + 1} batch_size {bs:>2}: {r['frames']:.0f} frames, {r['fps']:6.1f} frames/s, score "
                  f"stage {r['score_ms']:.3f} ms/frame, {r['calls']:.0f} model calls of {r['model_ms']:.3f} ms, "
                  f"frame AUROC {r['auroc']:.4f}", flush=True)
    print(f"\n{'batch_size':>10}{'frames/s (median)':>19}{'score ms/frame':>16}{'model calls':>13}")
    for bs, rs in results.items():
        print(f"{bs:>10}{statistics.median(r['fps'] for r in rs):>19.1f}"
              f"{statistics.median(r['score_ms'] for r in rs):>16.3f}{statistics.median(r['calls'] for r in rs):>13.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
