"""``streamad export``: a fitted image model's whole inference graph as an OpenVINO IR or an ONNX file.

The exported graph is the model's torch network (:attr:`ImageModel.network`): input ``images``
``(N, H, W, 3) uint8`` RGB frames of any size (batch, height and width are dynamic); inside: resize to the input
size, the backbone's normalisation, the backbone, the anomaly-map head (PatchCore's nearest-neighbour search as a
matrix product, never ``cdist``; PaDiM's Mahalanobis distance; DFM's PCA; DFKDE's KDE), the Gaussian blur and the
image score; outputs ``anomaly_map`` ``(N, 1, h, w) float32`` and ``score`` ``(N,) float32``, raw. The min-max
normalisation and the thresholds stay in ``model.json`` (the ``threshold`` operator applies them), so the IR and
torch share one post-processing. A model whose class sets ``exportable = False`` (R-KDE: its regions come from a
separate detector network before its torch network) is refused.

Files, beside ``model.json``::

    MODEL_DIR/openvino/model.xml, model.bin, export.json    (--format openvino)
    MODEL_DIR/onnx/model.onnx, export.json                  (--format onnx)

``export.json`` records the precision, the input and outputs, the fit it came from (``model_created`` = the
``created`` time of ``model.json``; ``serve`` / ``eval`` ignore an IR from an earlier fit) and a check: the largest
difference between the exported graph and torch on ``check_images`` frames, which must stay within
``1e-3 * (max - min)`` for FP32 (else :class:`~streamad.errors.ModelError`).

Precisions (OpenVINO): ``fp32``; ``fp16`` (weights stored in half precision, half the file; the CPU computes in
f32); ``int8`` (post-training quantisation of the backbone by NNCF on calibration frames; the anomaly-map head stays in
float, as quantising distances to a memory bank or a Gaussian would change the scores; the IR is test-compiled in
a child process first, as some int8 graphs crash OpenVINO's CPU plugin instead of raising).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from streamad import __version__
from streamad.errors import ModelError
from streamad.models.image.base import ImageModel
from streamad.models.image.preprocess import as_batch, resize_image
from streamad.models.store import load_model, read_metadata, read_postprocess

__all__ = ["export_model", "ExportResult", "FORMATS", "PRECISIONS"]

log = logging.getLogger("streamad.export")

FORMATS = ("openvino", "onnx")
PRECISIONS = ("fp32", "fp16", "int8")
_INPUT = "images"
_OUTPUTS = ("anomaly_map", "score")


@dataclass
class ExportResult:
    """What :func:`export_model` wrote.

    Attributes:
        path: the ``.xml`` or ``.onnx`` file. info: the ``export.json`` content. seconds: export time.
    """

    path: Path
    info: dict[str, Any]
    seconds: float


def _convert_openvino(net: torch.nn.Module, example: torch.Tensor) -> Any:
    import openvino as ov

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shapes fixed by the model's input size
        ov_model = ov.convert_model(net, example_input=example, input=[ov.PartialShape([-1, -1, -1, 3])])
    ov_model.inputs[0].get_tensor().set_names({_INPUT})
    for out, name in zip(ov_model.outputs, _OUTPUTS):
        out.get_tensor().set_names({name})
    return ov_model


def _quantize(ov_model: Any, frames: Sequence[np.ndarray], size: tuple[int, int]) -> Any:
    try:
        import nncf
    except ImportError:
        raise ModelError("int8 export needs NNCF (pip install nncf)") from None
    data = [as_batch(resize_image(f, size)) for f in frames]
    # only the backbone (the network's ``extractor`` module) is quantised: the head stays float
    head = nncf.IgnoredScope(patterns=[r"^(?!.*__module\.extractor).*$"], types=["MatMul"], validate=False)
    return nncf.quantize(ov_model, nncf.Dataset(data), subset_size=len(data), ignored_scope=head)


def _compiles(path: Path) -> str | None:
    """Compile the IR in a child process (some int8 graphs crash OpenVINO's CPU plugin in its low-precision
    passes instead of raising); ``None`` when it compiles, else what went wrong."""
    code = ("import sys, openvino as ov; "
            "ov.Core().compile_model(sys.argv[1], 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})")
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=600)
    return None if res.returncode == 0 else f"exit status {res.returncode}: {res.stderr.strip()[-300:]}"


def _export_onnx(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(path), input_names=[_INPUT], output_names=list(_OUTPUTS),
                          dynamic_axes={_INPUT: {0: "batch", 1: "height", 2: "width"}, "anomaly_map": {0: "batch"},
                                        "score": {0: "batch"}}, opset_version=17, dynamo=False)


def _compiled(path: Path) -> Any:
    import openvino as ov

    return ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def _check(model: ImageModel, path: Path, images: Sequence[np.ndarray], tolerance: float) -> dict[str, float]:
    """Largest |exported - torch| over ``images`` (maps and scores, raw units), and the share of map pixels whose
    difference exceeds ``tolerance`` (raw units)."""
    compiled = _compiled(path)
    d_map = d_score = 0.0
    over = total = 0
    for img in images:
        ref = model.predict(img)
        out = compiled([as_batch(img)])
        diff = np.abs(out[0] - ref.anomaly_map)
        d_map = max(d_map, float(diff.max()))
        over, total = over + int((diff > tolerance).sum()), total + diff.size
        d_score = max(d_score, float(np.abs(out[1].reshape(-1) - ref.score).max()))
    return {"max_abs_diff_map": d_map, "max_abs_diff_score": d_score, "map_share_over": over / max(total, 1),
            "images": len(images)}


_PARITY = 1e-3  # an FP32 export scores like torch: within this share of the normalisation range (max - min)


def _require_parity(model: ImageModel, path: Path, check: dict[str, float]) -> None:
    """Raise :class:`ModelError` unless the FP32 export scores like torch: every score within :data:`_PARITY` of
    the normalisation range, and every map pixel too, except for a model with :attr:`ImageModel.discrete_codes`:
    there a near-tie of the nearest-code argmin flips a latent cell, and its map patch, under another summation
    order (torch with another thread count can do the same), so its map difference is logged and recorded in
    ``export.json`` (``check.map_share_over``: the share of pixels beyond the tolerance) but not refused."""
    # the figure the refusal quotes is the one that broke the bound: the scores' for a discrete-code model, whose
    # map may differ by more without being refused
    what, diff = (("scores", check["normalised_score_diff"]) if model.discrete_codes
                  else ("scores or maps", check["normalised_max_diff"]))
    if diff > _PARITY:
        raise ModelError(f"{path}: the export's {what} differ from torch by {diff:.2e} of the normalisation range "
                         f"(allowed {_PARITY:g}); please report this model configuration")
    if check["normalised_max_diff"] > _PARITY:
        log.warning("%s: the scores match torch's within %.1e of the normalisation range, but %.2f%% of the map "
                    "pixels differ by more (up to %.2e): the %s model's nearest-code choice flipped at a near-tie",
                    path, check["normalised_score_diff"], 100 * check["map_share_over"],
                    check["normalised_max_diff"], model.kind)


def _check_images(model: ImageModel, frames: Sequence[np.ndarray] | None, n: int, seed: int) -> list[np.ndarray]:
    if frames:
        return [np.asarray(f) for f in list(frames)[:n]]
    h, w = model.input_size
    rng = np.random.default_rng(seed)  # smooth random images when no real frames are given
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        out.append(resize_image(small, (h + 7, w + 5)))  # a size other than the input size: the resize is checked too
    return out


def export_model(model_dir: str | Path, fmt: str = "openvino", precision: str = "fp32",
                 calibration: Sequence[np.ndarray] | None = None, output: str | Path | None = None,
                 check_images: int = 4) -> ExportResult:
    """Export the fitted image model of ``model_dir``.

    Args:
        model_dir: a directory written by ``streamad fit`` for an image model.
        fmt: ``openvino`` or ``onnx``.
        precision: ``fp32``, ``fp16`` or ``int8`` (OpenVINO only for the last two).
        calibration: ``(H, W, 3) uint8`` RGB frames for int8 quantisation (required then; a few hundred normal
            training frames) and, when given, the frames of the check.
        output: folder to write (default ``MODEL_DIR/<fmt>``; it is replaced).
        check_images: frames compared between the export and torch.

    Returns:
        The written file and its ``export.json``.

    Raises:
        ModelError: not an image model directory, a model that is not exportable, an unsupported combination, missing calibration frames for
            int8, or an FP32 export that does not score like torch.
        ValueError: unknown format or precision.
    """
    t0 = time.perf_counter()
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if fmt == "onnx" and precision != "fp32":
        raise ModelError("ONNX export is fp32 only; fp16 and int8 are OpenVINO exports (--format openvino)")
    if precision == "int8" and not calibration:
        raise ModelError("int8 export needs calibration frames: give --calibration CONFIG (its fit.train streams)")
    meta = read_metadata(model_dir)
    model, _ = load_model(model_dir)
    if not isinstance(model, ImageModel):
        raise ModelError(f"{model_dir}: holds a {model.kind!r} model; export supports the image models")
    if not model.exportable:
        raise ModelError(f"{model_dir}: image model {model.kind!r} is not exportable: its regions come from a separate "
                         f"detector network before its torch network (see its README); it runs with torch")
    net = model.require_network().eval()
    example = model.example_input(1)
    with torch.inference_mode():
        net(example)  # one call first: size-dependent constants (UpsampleBlur's matrices) are built before the trace
    out_dir = Path(output) if output is not None else Path(model_dir) / fmt
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    if fmt == "onnx":
        path = out_dir / "model.onnx"
        _export_onnx(net, example, path)
    else:
        import openvino as ov

        ov_model = _convert_openvino(net, example)
        if precision == "int8":
            ov_model = _quantize(ov_model, calibration or [], model.input_size)
        path = out_dir / "model.xml"
        ov.save_model(ov_model, str(path), compress_to_fp16=precision == "fp16")
        if precision == "int8":
            problem = _compiles(path)
            if problem is not None:
                shutil.rmtree(out_dir)
                raise ModelError(f"OpenVINO cannot compile the int8 model of {model_dir} ({problem}); export fp32 "
                                 f"or fp16 instead")
    post = read_postprocess(model_dir)
    span = (post.max - post.min) or 1.0
    check = _check(model, path, _check_images(model, calibration, check_images, model.config.seed), _PARITY * span)
    check["normalised_max_diff"] = max(check["max_abs_diff_map"], check["max_abs_diff_score"]) / span
    check["normalised_score_diff"] = check["max_abs_diff_score"] / span
    if precision == "fp32":
        _require_parity(model, path, check)
    info = {
        "format": fmt, "precision": precision, "model_kind": model.kind, "model_created": meta.get("created"),
        "input": {"name": _INPUT, "shape": [-1, -1, -1, 3], "dtype": "uint8", "layout": "NHWC RGB"},
        "outputs": {"anomaly_map": [-1, 1, *model.input_size], "score": [-1]},
        "input_size": list(model.input_size), "check": check,
        "calibration_frames": len(calibration) if precision == "int8" and calibration else 0,
        "bytes": sum(p.stat().st_size for p in out_dir.iterdir()),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(), "streamad_version": __version__,
    }
    (out_dir / "export.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    log.info("exported %s to %s (%s, %.1f s)", model.kind, path, precision, time.perf_counter() - t0)
    return ExportResult(path, info, time.perf_counter() - t0)
