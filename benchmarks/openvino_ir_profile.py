"""Where an exported image model's OpenVINO IR spends its time on UCSD Ped2 frames, and how far bf16 moves its scores.

    STREAMAD_DATA=../shared/data python benchmarks/openvino_ir_profile.py MODEL_DIR [--frames 60] [--every 5]

MODEL_DIR is a fitted and exported image model (``streamad fit examples/ped2_padim.yaml`` then ``streamad export
runs/ped2_padim/model``). The script prints:

1. For ``f32`` and ``bf16`` (``OpenVINORunner``'s ``precision``; bf16 runs only on CPUs with AVX-512 BF16 or AMX,
   else f32): milliseconds a frame, one frame per call on the first ``--frames`` frames of ``Test001``, and the
   same time split by OpenVINO layer type and by the slowest layers (``PERF_COUNT``).
2. bf16 against f32 on every ``--every``-th frame of the 12 test clips: the largest, 99th-percentile and mean change of
   the normalised image score and the largest change of the normalised anomaly map (``model.json``'s min-max).
3. The time of ``regions_from_map`` a frame at the fitted pixel threshold.

To compare with an earlier version of the code, export the same model with that version into another folder and
point the script at it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamad.models.image.runner import OpenVINORunner  # noqa: E402
from streamad.models.postprocess import PostProcess  # noqa: E402
from streamad.operators.image_model import regions_from_map  # noqa: E402
from streamad.sources.datasets.ucsd import UcsdPedSource, ucsd_videos  # noqa: E402


def read(paths: list[Path]) -> np.ndarray:
    """``(N, H, W, 3) uint8`` RGB frames."""
    return np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths])


def profile(runner: OpenVINORunner, frames: np.ndarray) -> tuple[float, collections.Counter, collections.Counter]:
    """``(ms a frame, ms by layer type, ms by layer)`` over ``frames`` one at a time, after 5 warm-up calls."""
    runner.config["PERF_COUNT"] = True
    for f in frames[:5]:
        runner(f)
    req = next(r for (_, kind), r in runner._infer_requests.items() if kind == "request")
    by_type: collections.Counter = collections.Counter()
    by_node: collections.Counter = collections.Counter()
    t0 = time.perf_counter()
    for f in frames:
        runner(f)
        for p in req.profiling_info:
            ms = p.real_time.total_seconds() * 1e3 / len(frames)
            by_type[p.node_type] += ms
            by_node[f"{p.node_name[:60]} ({p.node_type})"] += ms
    return (time.perf_counter() - t0) * 1e3 / len(frames), by_type, by_node


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--frames", type=int, default=60, help="frames of Test001 timed per precision")
    ap.add_argument("--every", type=int, default=5, help="every Nth test frame in the bf16 drift")
    args = ap.parse_args()
    xml = args.model_dir / "openvino" / "model.xml"
    post = PostProcess.from_json(json.loads((args.model_dir / "model.json").read_text(encoding="utf-8"))["postprocess"],
                                 str(args.model_dir / "model.json"))
    root = Path(os.environ.get("STREAMAD_DATA", str(REPO.parent / "shared" / "data")))
    clips = ucsd_videos(root / UcsdPedSource.Config(split="test").root, "UCSDped2", "test")
    first = read(list(clips[0].frame_paths[: args.frames]))
    print(f"{xml}; load average {os.getloadavg()[0]:.1f}")
    runners = {}
    for precision in ("f32", "bf16"):
        runner = runners[precision] = OpenVINORunner(xml, precision=precision)
        ms, by_type, by_node = profile(runner, first)
        print(f"\n{precision} (OpenVINO ran {runner.precision_used}): {ms:.2f} ms a frame, {len(first)} frames")
        print("  by layer type: " + ", ".join(f"{k} {v:.2f}" for k, v in by_type.most_common(8)))
        for k, v in by_node.most_common(6):
            print(f"  {v:6.2f} ms  {k}")
    paths = [p for c in clips for p in c.frame_paths][:: args.every]
    d_score, d_map, maps = [], [], []
    for i in range(0, len(paths), 8):
        batch = read(paths[i:i + 8])
        (m32, s32), (m16, s16) = runners["f32"](batch), runners["bf16"](batch)
        d_score += [abs(post.normalize(float(a)) - post.normalize(float(b))) for a, b in zip(s32, s16)]
        d_map += list(np.abs(post.normalize_regions(m32) - post.normalize_regions(m16)).reshape(len(batch), -1).max(1))
        maps += [m[0] for m in m32]
    ds = np.asarray(d_score)
    print(f"\nbf16 against f32 on {len(ds)} test frames: normalised score change max {ds.max():.4f}, p99 "
          f"{np.quantile(ds, 0.99):.4f}, mean {ds.mean():.4f}; normalised map change max {max(d_map):.4f}")
    thr = post.pixel_threshold
    t0 = time.perf_counter()
    found = sum(len(regions_from_map(m, thr, 16, 10)[0]) > 0 for m in maps)
    print(f"regions_from_map at the pixel threshold {thr:.3f}: {(time.perf_counter() - t0) * 1e3 / len(maps):.3f} ms "
          f"a frame; {found} of {len(maps)} frames have a region")
    return 0


if __name__ == "__main__":
    sys.exit(main())
