"""Compile a pretrained network file (ONNX, OpenVINO IR) with OpenVINO for the CPU, with one inference request per
thread, so that one compiled network is shared by every stream of a pipeline."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from streamad.errors import ModelError

__all__ = ["OpenVinoNet"]


class OpenVinoNet:
    """A network compiled once for the CPU, callable from several threads.

    Args:
        path: ``.onnx`` or ``.xml`` file.
        what: name used in error messages (``"CenterNet detector"``).
        input_shape: static input shape to reshape to (e.g. ``[1, 96, 96, 3]``), or ``None`` to keep the file's.
        threads: CPU threads per inference (``INFERENCE_NUM_THREADS``); 1 suits pipelines whose stages run in
            parallel threads on a small machine.

    Raises:
        ModelError: the file is missing or OpenVINO cannot read or compile it.
    """

    def __init__(self, path: str | Path, what: str, input_shape: Sequence[int] | None = None,
                 threads: int = 1) -> None:
        import openvino as ov

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
            self.compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": int(threads)})
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with long messages
            raise ModelError(f"{what}: OpenVINO cannot load {self.path}: {str(exc).splitlines()[0]}") from None
        self._local = threading.local()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        """Run the network on one input array; returns its outputs in order (arrays owned by the caller)."""
        req: Any = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        res = req.infer({0: x})
        return [np.array(res[o]) for o in self.compiled.outputs]
