"""One BLAS / OpenMP thread for small numerical kernels (the AI-VAD density estimators' matrix products and EM).

On a busy 2-core machine, idle worker threads of OpenBLAS / OpenMP spinning beside the pipeline's own threads made
small problems 10-50x slower. ``threadpoolctl.threadpool_limits`` rescans the process's shared libraries on every
call (milliseconds once torch and OpenVINO are loaded), which is too slow per scored clip; the controller here scans
once, on first use, and only sets and restores the thread counts afterwards (microseconds).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

from threadpoolctl import ThreadpoolController

__all__ = ["one_blas_thread"]

_controller: ThreadpoolController | None = None
_lock = threading.Lock()


def one_blas_thread() -> AbstractContextManager[object]:
    """A context manager limiting every BLAS / OpenMP library of the process to one thread while it is open.

    The libraries are found the first time this is called; call it after torch / numpy / scikit-learn are imported
    (they are, whenever a model is scored or fitted).
    """
    global _controller
    with _lock:
        if _controller is None:
            _controller = ThreadpoolController()
        return _controller.limit(limits=1)
