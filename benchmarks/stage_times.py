"""Where a pipeline's time goes: run `streamad eval` on a config and print frames/s end to end and the mean time of
each operator stage per message (from the ``streamad_stage_latency_seconds`` histogram).

    STREAMAD_DATA=../shared/data python benchmarks/stage_times.py examples/ped2.yaml [--model DIR] [--repeat 3]

Stages run in parallel threads, so the end-to-end rate is bounded by the slowest stage and by the two CPU cores the
stages share (Python holds the GIL outside OpenCV/numpy kernels), not by the sum of the stage times.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from streamad.bench.stage_metrics import stage_means
from streamad.config import load_config
from streamad.metrics import Metrics
from streamad.runtime.jobs import evaluate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--model", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cfg = load_config(args.config)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; python {sys.version.split()[0]}")
    for run in range(args.repeat):
        metrics = Metrics()
        report, stats = evaluate(cfg, Path(args.model) if args.model else None, quiet=True, metrics=metrics)
        print(f"\nrun {run + 1}: {stats.delivered} frames in {stats.seconds:.2f} s = {stats.fps:.1f} frames/s end to end"
              f" (frame AUROC {report.frame_auroc:.4f})")
        print(f"  {'stage':<22}{'ms/message':>12}{'messages':>10}{'max frames/s':>14}")
        for stage, (mean, n) in stage_means(metrics).items():
            cap = f"{1 / mean:14.0f}" if mean > 0 else f"{'-':>14}"
            print(f"  {stage:<22}{mean * 1e3:12.3f}{n:10d}{cap}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
