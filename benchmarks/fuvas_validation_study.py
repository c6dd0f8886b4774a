"""Choose FUVAS's settings without test labels: validate on held-out *training* clips of UCSD Ped2 with
pseudo-anomalies (the protocol of ``benchmarks/aivad_validation_study.py``, whose held-out split and validation
clips this reuses); it never reads the test split.

Usage::

    STREAMAD_DATA=../shared/data python benchmarks/fuvas_validation_study.py --work /tmp/fuvas_val   # ~15 min, 2 cores

1. ``--held-out`` of the 16 training clips are held out (seeded); FUVAS is fitted on the others, every
   ``train_clip_stride`` = 10th clip (as examples/ped2_fuvas.yaml).
2. Each held-out clip gives a normal, a skip-frame and a pasted-object version
   (:func:`aivad_validation_study.validation_clips`; the pasted object is the most confident CenterNet box of
   another held-out clip).
3. Grid: backbone layer (EfficientNet-Lite0 ``layer3`` stride 16 / ``layer4`` stride 32), clip length 2 / 4,
   temporal combination ``stack`` / ``mean``, frame score ``sum`` (anomalib) / ``max``; PCA level 0.98 (anomalib)
   throughout. Each configuration is scored by the mean of the skip-frame and pasted-object frame AUROCs against
   the normal frames, after the example's temporal smoothing (sigma 3 frames); ties keep grid order.

Frame maps come from the backbone of :class:`~streamad.models.components.clip_grid.ClipGridFeatures` and are
cached under ``--work``; clips are built from them as the ``clip_features`` operator builds them, and scored by
:class:`~streamad.models.video.fuvas.model.Fuvas` itself.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import torch

from streamad.models.components.centernet import CenterNetDetector
from streamad.models.components.backbone import FeatureExtractor, build_feature_extractor
from streamad.models.components.clip_grid import combine_frames
from streamad.models.video.fuvas.model import Fuvas
from streamad.sources.image_folder import read_rgb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aivad_validation_study import cached, held_out_split, validation_clips, validation_score  # noqa: E402
from ped2_study import smooth_clip  # noqa: E402

LAYERS = ("layer3", "layer4")
LENGTHS = (2, 4)
TEMPORAL = ("stack", "mean")
FRAME_SCORES = ("sum", "max")
SIGMA = 3.0
TRAIN_CLIP_STRIDE = 10
EXAMPLE = dict(layer="layer4", length=2, temporal="stack", frame_score="sum")  # anomalib's defaults


class Detector:
    """What :func:`validation_clips` needs of its extractor: CenterNet boxes of a frame (score 0.3)."""

    def __init__(self, models: Path) -> None:
        self.det = CenterNetDetector(models / "centernet.onnx", precision="bf16")  # as the AI-VAD examples

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.det(frame, 0.3)


def frame_maps(net: FeatureExtractor, frames: list[np.ndarray]) -> dict[str, np.ndarray]:
    """``{layer: (T, h, w, C) float16}`` maps of every frame (one backbone pass per frame for both layers)."""
    out: dict[str, list[np.ndarray]] = {layer: [] for layer in LAYERS}
    with torch.inference_mode():
        for f in frames:
            maps = net(torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None].float())
            for layer in LAYERS:
                out[layer].append(maps[layer][0].permute(1, 2, 0).numpy().astype(np.float16))
    return {layer: np.stack(v) for layer, v in out.items()}


def clip_rows(maps: np.ndarray, length: int, temporal: str) -> list[dict[str, np.ndarray]]:
    """``features`` of every clip (frames k .. k+length-1) of a video's ``(T, h, w, C)`` maps, as ``clip_features``
    builds them."""
    return [{"clip": combine_frames(maps[k:k + length].astype(np.float32), temporal)}
            for k in range(len(maps) - length + 1)]


def frame_scores(model: Fuvas, maps: np.ndarray, length: int, temporal: str) -> np.ndarray:
    """One score per frame: clip k's score for its last frame, the first clip's for the frames before it
    (``clip_window``'s ``pad_edges``)."""
    rows = clip_rows(maps, length, temporal)
    scores = np.concatenate([[r.frame_score for r in model.predict_batch(rows[i:i + 100])]
                             for i in range(0, len(rows), 100)])
    return np.r_[np.full(length - 1, scores[0]), scores]


def main() -> int:
    args, _, models, rng, held, fit_videos = held_out_split(__doc__ or "")
    torch.set_num_threads(1)
    net = build_feature_extractor("efficientnet_lite0", list(LAYERS))  # ClipGridFeatures's backbone, both layers
    print("frame maps (cached):")
    fit = [cached(args.work, f"train_{v.name}", lambda v=v: frame_maps(net, [read_rgb(p) for p in v.frame_paths]))
           for v in fit_videos]
    clips = validation_clips(held, Detector(models), rng)  # type: ignore[arg-type]
    names = [f"train_{held[i // 3].name}" if c.kind == "normal" else f"val{args.seed}_{c.kind}_{i // 3}"
             for i, c in enumerate(clips)]  # the normal versions are the held-out training clips' maps
    val = [cached(args.work, name, lambda c=c: frame_maps(net, c.frames)) for name, c in zip(names, clips)]
    val_labels = [(c.kind, c.labels) for c in clips]

    results = []
    for layer, length, temporal in itertools.product(LAYERS, LENGTHS, TEMPORAL):
        train_rows = [r for z in fit for r in clip_rows(z[layer], length, temporal)]
        for frame_score in FRAME_SCORES:
            model = Fuvas(Fuvas.Config(frame_score=frame_score, train_clip_stride=TRAIN_CLIP_STRIDE))
            model.fit(train_rows, ["train"] * len(train_rows))
            scores = [smooth_clip(frame_scores(model, z[layer], length, temporal), SIGMA) for z in val]
            cfg = dict(layer=layer, length=length, temporal=temporal, frame_score=frame_score)
            results.append((validation_score(scores, val_labels), cfg))
            print(f"  {cfg}: skip {results[-1][0][0]:.3f} paste {results[-1][0][1]:.3f} "
                  f"mean {results[-1][0][2]:.3f}", flush=True)
    results.sort(key=lambda r: -r[0][2])  # stable: ties keep grid order
    print(f"\nvalidation: frame AUROC (smoothed, sigma {SIGMA:g}) on {sum(len(lab) for _, lab in val_labels)} "
          "frames of held-out clips (skip-frame vs normal, pasted object vs normal, mean)")
    for (s, p, m), cfg in results:
        tag = "  <- anomalib defaults" if cfg == EXAMPLE else ""
        print(f"{str(cfg):<80}{s:7.3f}{p:7.3f}{m:7.3f}{tag}")
    print(f"\nchosen: {results[0][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
