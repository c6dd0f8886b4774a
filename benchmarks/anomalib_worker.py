"""anomalib's side of benchmarks/anomalib_side_by_side.py; runs inside the separate anomalib venv, never in
streamad's environment (it imports nothing of streamad).

    <env>/bin/python benchmarks/anomalib_worker.py SPEC.json

SPEC.json (written by anomalib_side_by_side.py)::

    {"model": "padim" | "patchcore", "backbone": "efficientnet_lite0", "layers": ["blocks.2", "blocks.4"],
     "input_size": [240, 360], "n_features": 100, "coreset_sampling_ratio": 0.01, "num_neighbors": 9,
     "train": [frame paths], "test": [frame paths], "export_dir": "...", "batch_size": 16}

1. Builds anomalib's ``Padim`` / ``Patchcore`` with a timm backbone at ``pre_trained=False`` (nothing can be
   downloaded here; random weights cost the same time per frame as trained ones) and a pre-processor resizing to
   ``input_size`` (Ped2's own 240x360: the resize is a no-op in value, not in the graph) with ImageNet normalisation.
2. Fits it as anomalib's ``training_step`` + ``fit()`` do (the Lightning ``Engine`` loop is left out: it adds
   nothing to the fitted model): every ``train`` frame through the torch model in training mode, then
   ``fit()`` (PaDiM: the Gaussians; PatchCore: the k-center-greedy coreset). The post-processor's min/max and
   thresholds (NaN until an ``Engine`` validates) are set from 16 training frames, so the IR's outputs are finite.
3. Exports with anomalib's own ``to_openvino(..., input_size)`` (torch -> ONNX -> OpenVINO IR, FP32).
4. Times anomalib's ``OpenVINOInferencer(xml, device="CPU").predict(path)`` over the ``test`` frames, each read
   from disk by ``predict`` itself (PIL, RGB, /255), one untimed warm-up call first.

Prints one JSON object on the last stdout line: model, memory_bank (rows), fit_frames, fit_s, export_s, frames,
seconds (wall, the timed loop), fps (frames/s), versions.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _load(paths: list[str], size: tuple[int, int]) -> torch.Tensor:
    """Frames as a ``(n, 3, h, w)`` float tensor in [0, 1], read as anomalib reads them."""
    from anomalib.data.utils import read_image

    imgs = [read_image(p, as_tensor=True) for p in paths]
    out = torch.stack(imgs)
    if tuple(out.shape[-2:]) != size:
        raise SystemExit(f"frame size {tuple(out.shape[-2:])} differs from input_size {size}")
    return out


def build(spec: dict):
    """anomalib's lightning model for ``spec`` (module doc, step 1)."""
    from anomalib.models import Padim, Patchcore

    size = tuple(spec["input_size"])
    common = {"backbone": spec["backbone"], "layers": list(spec["layers"]), "pre_trained": False,
              "evaluator": False, "visualizer": False}
    if spec["model"] == "padim":
        return Padim(n_features=spec["n_features"], pre_processor=Padim.configure_pre_processor(image_size=size),
                     **common)
    return Patchcore(coreset_sampling_ratio=spec["coreset_sampling_ratio"], num_neighbors=spec["num_neighbors"],
                     pre_processor=Patchcore.configure_pre_processor(image_size=size), **common)


@torch.no_grad()
def fit(model, spec: dict) -> float:
    """Module doc, step 2. Returns seconds."""
    size = tuple(spec["input_size"])
    t0 = time.perf_counter()
    model.model.train()
    bs = int(spec.get("batch_size", 16))
    for i in range(0, len(spec["train"]), bs):
        model.model(model.pre_processor(_load(spec["train"][i:i + bs], size)))
    model.fit()
    model.model.eval()
    step = max(1, len(spec["train"]) // 16)
    pred = model.model(model.pre_processor(_load(spec["train"][::step][:16], size)))
    post = model.post_processor
    post.image_min.fill_(float(pred.pred_score.min()))
    post.image_max.fill_(float(pred.pred_score.max()))
    post.pixel_min.fill_(float(pred.anomaly_map.min()))
    post.pixel_max.fill_(float(pred.anomaly_map.max()))
    post._image_threshold.fill_(float(pred.pred_score.max()))
    post._pixel_threshold.fill_(float(pred.anomaly_map.max()))
    return time.perf_counter() - t0


def fit_and_export(spec: dict) -> dict:
    """Module doc, steps 1-3: ``{"memory_bank", "fit_frames", "fit_s", "export_s", "xml", "onnx_exporter"}``."""
    model = build(spec)
    fit_s = fit(model, spec)
    bank = int(model.model.memory_bank.shape[0]) if spec["model"] == "patchcore" else None
    t0 = time.perf_counter()
    try:  # anomalib 2.1 was written for the TorchScript exporter (torch >= 2.9 defaults to dynamo)
        exporter = "torchscript"
        xml = model.to_openvino(spec["export_dir"], input_size=tuple(spec["input_size"]),
                                onnx_kwargs={"dynamo": False})
    except Exception as exc:  # noqa: BLE001 - the dynamo exporter then, with a static batch of 1
        print(f"TorchScript ONNX export failed ({exc}); using the dynamo exporter", file=sys.stderr)
        exporter = "dynamo"
        xml = model.to_openvino(spec["export_dir"], input_size=tuple(spec["input_size"]),
                                onnx_kwargs={"dynamic_axes": None})
    return {"memory_bank": bank, "fit_frames": len(spec["train"]), "fit_s": round(fit_s, 1),
            "export_s": round(time.perf_counter() - t0, 1), "xml": str(xml), "onnx_exporter": exporter}


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    import anomalib
    import openvino as ov
    from anomalib.deploy import OpenVINOInferencer

    info_path = Path(spec["export_dir"]) / "fit_info.json"
    if info_path.is_file():  # fitted and exported by an earlier run with the same spec (the caller's key)
        info = json.loads(info_path.read_text(encoding="utf-8"))
    else:
        info = fit_and_export(spec)
        info_path.write_text(json.dumps(info), encoding="utf-8")
    inferencer = OpenVINOInferencer(path=info["xml"], device="CPU")
    inferencer.predict(spec["test"][0])  # warm-up, untimed
    scores = []
    t0 = time.perf_counter()
    for path in spec["test"]:
        scores.append(float(np.asarray(inferencer.predict(path).pred_score).ravel()[0]))
    seconds = time.perf_counter() - t0
    n = len(spec["test"])
    print(json.dumps({"model": spec["model"], **info, "frames": n, "seconds": round(seconds, 3),
                      "fps": round(n / seconds, 2), "finite_scores": int(np.isfinite(scores).sum()),
                      "versions": {"anomalib": anomalib.__version__, "openvino": ov.__version__,
                                   "torch": torch.__version__}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
