"""Compile a pretrained network file (ONNX, OpenVINO IR) with OpenVINO for the CPU, with one inference request per
thread, so that one compiled network is shared by every stream of a pipeline.

The inference precision is always asked for explicitly (``INFERENCE_PRECISION_HINT``): left to itself, OpenVINO's CPU
plugin runs bf16 on CPUs with bfloat16 units (AVX-512 BF16, AMX) and f32 elsewhere, so the same pipeline would give
different detections on two machines (CenterNet's scores move by up to 0.04 between the two on Ped2 frames, around a
``box_score_thresh`` of 0.3). ``f32`` is the default; ``bf16`` is the faster opt-in, and runs as f32 on a CPU
without those units.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from streamad.errors import ModelError

__all__ = ["OpenVinoNet", "PRECISIONS"]

log = logging.getLogger("streamad.models")

#: Inference precisions a network can be asked to run in.
PRECISIONS = ("f32", "bf16")


class OpenVinoNet:
    """A network compiled once for the CPU, callable from several threads.

    Args:
        path: ``.onnx`` or ``.xml`` file.
        what: name used in error messages (``"CenterNet detector"``).
        input_shape: static input shape to reshape to (e.g. ``[1, 96, 96, 3]``), or ``None`` to keep the file's.
        threads: CPU threads per inference (``INFERENCE_NUM_THREADS``); 1 suits pipelines whose stages run in
            parallel threads on a small machine.
        precision: ``f32`` (default) or ``bf16`` (module doc); :attr:`precision_used` says which runs.

    Raises:
        ModelError: the file is missing or OpenVINO cannot read or compile it.
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """

    def __init__(self, path: str | Path, what: str, input_shape: Sequence[int] | None = None,
                 threads: int = 1, precision: str = "f32") -> None:
        import openvino as ov

        if precision not in PRECISIONS:
            raise ValueError(f"{what}: inference precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.path = Path(path)
        self.what = what
        if not self.path.is_file():
            raise ModelError(f"{what}: network file {self.path} not found (give the path of the file; nothing is "
                             f"downloaded)")
        try:
            core = ov.Core()
            model = core.read_model(str(self.path))
            if input_shape is not None:
                model.reshape({model.inputs[0]: list(input_shape)})
            self.compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": int(threads),
                                                              "INFERENCE_PRECISION_HINT": precision})
            used = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with long messages
            raise ModelError(f"{what}: OpenVINO cannot load {self.path}: {str(exc).splitlines()[0]}") from None
        #: the precision the CPU runs (``f32`` or ``bf16``): bf16 asked for on a CPU without bfloat16 units runs f32
        self.precision_used = used.to_string() if hasattr(used, "to_string") else str(used)
        if precision != "f32":
            log.info("%s %s: OpenVINO runs it in %s (asked for %s)", what, self.path.name, self.precision_used,
                     precision)
        self._local = threading.local()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        """Run the network on one input array; returns its outputs in order (arrays owned by the caller)."""
        req: Any = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        res = req.infer({0: x})
        return [np.array(res[o]) for o in self.compiled.outputs]
