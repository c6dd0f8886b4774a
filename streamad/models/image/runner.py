"""Runs a fitted image model's network on frames, in torch or from an exported OpenVINO IR.

Both runners take ``(N, H, W, 3) uint8`` RGB frames of any size and return ``(anomaly_map (N, 1, h, w) float32,
score (N,) float32)`` raw model outputs; the graph is the same (:attr:`ImageModel.network`), so they agree to
float rounding. :func:`open_runner` picks the IR when ``runtime`` is ``auto`` and ``MODEL_DIR/openvino/model.xml``
exists and was exported from this fit (``export.json`` names the fit's ``created`` time).

OpenVINO is compiled for the CPU with ``INFERENCE_PRECISION_HINT=f32`` by default (the CPU plugin would otherwise run
bf16 on CPUs that have it, and scores would drift from torch; ``precision="bf16"`` asks for that on purpose: faster
where the CPU has AVX-512 BF16 or AMX, measured in README Speed, f32 elsewhere) and ``PERFORMANCE_HINT``
``LATENCY`` (default: a batch is one request using every core) or ``THROUGHPUT`` (the cores are split into OpenVINO streams and each frame of a batch is
its own request, run in parallel with ``AsyncInferQueue``: the same scores; meant for machines with more cores, it
measured no gain on 2 cores, README Speed). The first few frame sizes seen each get a model reshaped to that static
size (static shapes run faster; a resize to the size the frames already have is bypassed there); further sizes
share one dynamic-shape compiled model.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streamad.errors import ModelError
from streamad.models.image.base import ImageModel
from streamad.models.image.preprocess import as_batch

__all__ = ["Runner", "TorchRunner", "OpenVINORunner", "open_runner", "export_info"]

log = logging.getLogger("streamad.models.image")

_STATIC_SHAPES = 4


class Runner(Protocol):
    """Scores frames: ``runner(images) -> (maps, scores)``; ``name`` is ``torch`` or ``openvino``."""

    name: str

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class TorchRunner:
    """The model's torch network (``torch.inference_mode``)."""

    name = "torch"

    def __init__(self, model: ImageModel) -> None:
        self.model = model

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, H, W, 3) uint8`` (or one ``(H, W, 3)`` frame) -> ``(maps (N, 1, h, w), scores (N,))``."""
        p = self.model.predict(images)
        return p.anomaly_map, p.score


def _core() -> Any:
    import openvino as ov

    return ov.Core()


def _drop_identity_resizes(model: Any) -> int:
    """Bypass the ``Interpolate`` nodes of a static-shape ``ov.Model`` whose output shape equals their input's.

    :class:`~streamad.models.image.preprocess.Preprocess` resizes every frame to the model's input size; for frames
    that already have it (a camera the model was sized for: Ped2's 360x240 in ``examples/ped2_padim.yaml``) that
    resize is the identity but OpenVINO still runs it (0.6 of PaDiM's 6.6 ms a frame on Ped2). A resize to the same
    size samples every pixel at its own position (half-pixel, asymmetric or align-corners coordinates, any
    interpolation mode), so bypassing it leaves the outputs unchanged; ``tf_half_pixel_for_nn`` shifts samples by half
    a pixel and is left alone. Returns the number of nodes bypassed.
    """
    dropped = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Interpolate":
            continue
        if op.get_attributes().get("coordinate_transformation_mode") == "tf_half_pixel_for_nn":
            continue
        src, dst = op.input_value(0).get_partial_shape(), op.get_output_partial_shape(0)
        if src.is_static and dst.is_static and src.to_shape() == dst.to_shape():
            for target in list(op.output(0).get_target_inputs()):
                target.replace_source_output(op.input_value(0))
            dropped += 1
    if dropped:
        model.validate_nodes_and_infer_types()
    return dropped


class OpenVINORunner:
    """An OpenVINO IR (``model.xml``) on the CPU.

    Args:
        xml: the IR file. threads: ``INFERENCE_NUM_THREADS`` (``None``: OpenVINO's default, all cores).
        hint: ``latency`` or ``throughput`` (module doc).
        precision: ``INFERENCE_PRECISION_HINT``: ``f32`` (default, torch's scores to float rounding) or ``bf16``
            (the CPU's bfloat16 units where it has them, else f32; :attr:`precision_used` says which ran).

    Raises:
        ModelError: the file is missing or not a readable IR. ValueError: unknown ``hint`` or ``precision``.
    """

    name = "openvino"

    def __init__(self, xml: str | Path, threads: int | None = None, hint: str = "latency",
                 precision: str = "f32") -> None:
        if hint not in ("latency", "throughput"):
            raise ValueError(f"OpenVINO performance hint must be latency or throughput, got {hint!r}")
        if precision not in ("f32", "bf16"):
            raise ValueError(f"OpenVINO inference precision must be f32 or bf16, got {precision!r}")
        self.precision_used: str | None = None  # the compiled model's INFERENCE_PRECISION_HINT, after the first call
        self.hint = hint
        self.xml = Path(xml)
        if not self.xml.is_file():
            raise ModelError(f"{self.xml}: no OpenVINO IR here (run `streamad export MODEL_DIR --format openvino`)")
        self.core = _core()
        try:
            self.ov_model = self.core.read_model(str(self.xml))
        except RuntimeError as exc:
            raise ModelError(f"{self.xml}: cannot read the IR: {str(exc).splitlines()[0]}") from None
        self.config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": hint.upper()}
        if threads is not None:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self._requests: dict[tuple[int, ...] | None, Any] = {}  # compiled models by input shape
        self._infer_requests: dict[tuple[int, str], Any] = {}  # (compiled model, kind): a request or an async queue
        self._lock = threading.Lock()

    def _compiled(self, shape: tuple[int, ...]) -> Any:
        """The compiled model for input ``shape``: static for the first few shapes, then one dynamic model."""
        compiled = self._requests.get(shape)
        if compiled is not None:
            return compiled
        key: tuple[int, ...] | None = shape
        model = self.ov_model
        if len([k for k in self._requests if k is not None]) < _STATIC_SHAPES:
            model = self.ov_model.clone()
            model.reshape({model.inputs[0]: list(shape)})
            _drop_identity_resizes(model)
        else:
            key = None
            if key in self._requests:
                return self._requests[key]
        compiled = self.core.compile_model(model, "CPU", self.config)
        if self.precision_used is None:
            used = compiled.get_property("INFERENCE_PRECISION_HINT")
            self.precision_used = used.to_string() if hasattr(used, "to_string") else str(used)
            if self.config["INFERENCE_PRECISION_HINT"] != "f32":
                log.info("%s: OpenVINO runs it in %s (asked for %s)", self.xml, self.precision_used,
                         self.config["INFERENCE_PRECISION_HINT"])
        self._requests[key] = compiled
        return compiled

    def _latency(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        compiled = self._compiled(tuple(batch.shape))
        req = self._infer_requests.get((id(compiled), "request"))
        if req is None:
            req = self._infer_requests[(id(compiled), "request")] = compiled.create_infer_request()
        req.infer([batch])
        amap = np.array(req.get_tensor("anomaly_map").data, np.float32)
        score = np.array(req.get_tensor("score").data, np.float32).reshape(-1)
        return amap, score

    def _throughput(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import openvino as ov

        compiled = self._compiled((1, *batch.shape[1:]))
        queue = self._infer_requests.get((id(compiled), "queue"))
        if queue is None:
            queue = self._infer_requests[(id(compiled), "queue")] = ov.AsyncInferQueue(compiled)
        maps: list[Any] = [None] * len(batch)
        scores: list[Any] = [None] * len(batch)

        def done(req: Any, k: int) -> None:
            maps[k] = np.array(req.get_tensor("anomaly_map").data, np.float32)
            scores[k] = np.array(req.get_tensor("score").data, np.float32).reshape(-1)

        queue.set_callback(done)
        for k in range(len(batch)):
            queue.start_async([batch[k:k + 1]], k)
        queue.wait_all()
        return np.concatenate(maps), np.concatenate(scores)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, H, W, 3) uint8`` (or one ``(H, W, 3)`` frame) -> ``(maps (N, 1, h, w), scores (N,))``."""
        batch = as_batch(images)
        with self._lock:
            if self.hint == "throughput" and len(batch) > 1:
                return self._throughput(batch)
            return self._latency(batch)


def export_info(model_dir: str | Path, fmt: str = "openvino") -> dict[str, Any] | None:
    """``MODEL_DIR/<fmt>/export.json`` parsed, or ``None`` when there is no export."""
    p = Path(model_dir) / fmt / "export.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{p}: unreadable export metadata: {exc}") from None


def open_runner(model: ImageModel, model_dir: str | Path | None, metadata: dict[str, Any], runtime: str = "auto",
                threads: int | None = None, hint: str = "latency", precision: str = "f32") -> Runner:
    """The runner for a loaded model.

    Args:
        model: the fitted model (torch). model_dir: its directory (``None``: torch only).
        metadata: its ``model.json`` (the fit's ``created`` time identifies the export).
        runtime: ``torch``, ``openvino`` (the IR must exist and match this fit) or ``auto`` (the IR when it exists
            and matches, else torch).
        threads: OpenVINO inference threads. hint: OpenVINO ``latency`` or ``throughput``. precision: OpenVINO
            ``f32`` or ``bf16`` (:class:`OpenVINORunner`; torch always runs float32).

    Raises:
        ModelError: ``runtime`` is ``openvino`` and there is no IR, or it was exported from another fit.
        ValueError: unknown ``runtime``.
    """
    if runtime not in ("auto", "torch", "openvino"):
        raise ValueError(f"runtime must be auto, torch or openvino, got {runtime!r}")
    if runtime == "torch" or model_dir is None:
        if runtime == "openvino":
            raise ModelError("runtime openvino needs a model directory with an exported IR")
        return TorchRunner(model)
    info = export_info(model_dir)
    xml = Path(model_dir) / "openvino" / "model.xml"
    if info is None or not xml.is_file():
        if runtime == "openvino":
            raise ModelError(f"{model_dir}: no OpenVINO IR; run `streamad export {model_dir} --format openvino`")
        return TorchRunner(model)
    if info.get("model_created") != metadata.get("created"):
        msg = (f"{xml} was exported from an earlier fit ({info.get('model_created')}) than model.json "
               f"({metadata.get('created')}); run `streamad export {model_dir} --format openvino` again")
        if runtime == "openvino":
            raise ModelError(msg)
        log.warning("%s; scoring with torch", msg)
        return TorchRunner(model)
    return OpenVINORunner(xml, threads, hint, precision)
