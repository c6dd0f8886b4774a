"""What FUVAS's ``clip_features`` costs a clip on this machine with each backbone, on real UCSD Ped2 frames.

    STREAMAD_DATA=../shared/data python benchmarks/fuvas_backbone_speed.py [--clips 6] [--lengths 2 4]
        [--backbones efficientnet_lite0 r3d_18 mc3_18 r2plus1d_18 swin3d_t swin3d_b]

For each backbone and clip length it prints the milliseconds one clip of ``Test001`` (360x240) takes through the
operator with its default layer, after one warm-up clip, and the feature size (cells x values a cell). The 3-D
torchvision networks get random weights saved in their real layout (the time of a forward pass does not depend on
the values; no Kinetics weights can be had here), the 2-D default its packaged ImageNet weights. The 2-D backbone
computes each frame once per stream, so its clip costs one frame's pass once the stream runs (the figure printed
is that cost); a 3-D network computes the whole clip for every clip.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamad.frames import Clip, Frame  # noqa: E402
from streamad.models.components.video_backbone import VIDEO_BACKBONES  # noqa: E402
from streamad.operators.clip_features import ClipFeatures  # noqa: E402
from streamad.sources.datasets.ucsd import ucsd_videos  # noqa: E402
from streamad.sources.image_folder import read_rgb  # noqa: E402


def random_weights(name: str, folder: Path) -> str:
    """A state dict of torchvision's ``name`` with its random initial values, saved under ``folder``."""
    import torch
    import torchvision

    path = folder / f"{name}.pth"
    torch.save(getattr(torchvision.models.video, name)(weights=None).state_dict(), path)
    return str(path)


def clip_ms(backbone: str, weights: str | None, frames: list[Frame], length: int, clips: int) -> tuple[float, str]:
    """``(ms a clip, "cells x values")``: the operator on ``clips`` consecutive clips after one warm-up clip."""
    cfg = ClipFeatures.Config(backbone=backbone, weights=weights)
    op = ClipFeatures(cfg, ClipFeatures.create_shared(cfg, None), "bench")  # type: ignore[arg-type]
    out = op.process(Clip("bench", frames[:length], frames[length - 1]))[0]
    t0 = time.perf_counter()
    for k in range(1, clips + 1):
        op.process(Clip("bench", frames[k:k + length], frames[k + length - 1]))
    ms = (time.perf_counter() - t0) / clips * 1e3
    rows, cols = out.features["clip"].shape
    return ms, f"{rows} x {cols}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--lengths", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", *VIDEO_BACKBONES])
    args = ap.parse_args()
    root = Path(os.environ.get("STREAMAD_DATA", "data")) / "UCSD_Anomaly_Dataset.v1p2"
    video = ucsd_videos(root, "UCSDped2", "test")[0]
    n = args.clips + max(args.lengths)
    frames = [Frame("bench", i, i / 10, 0.0, read_rgb(p)) for i, p in enumerate(video.frame_paths[:n])]
    print(f"{video.name}, {frames[0].width}x{frames[0].height}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'backbone':20s} {'layer':14s} {'frames':>6s} {'ms a clip':>10s}  features")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backbones:
            weights = random_weights(name, Path(tmp)) if name in VIDEO_BACKBONES else None
            layer = VIDEO_BACKBONES[name][0] if name in VIDEO_BACKBONES else "layer4"
            for length in args.lengths:
                ms, size = clip_ms(name, weights, frames, length, args.clips)
                print(f"{name:20s} {layer:14s} {length:6d} {ms:10.1f}  {size}", flush=True)


if __name__ == "__main__":
    main()
