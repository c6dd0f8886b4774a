"""A torch module's weights as named numpy arrays, for ``weights.npz`` of the model store (no pickle): used by
the gradient-trained image models (STFPM's student, FastFlow's flows)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from streamad.errors import ModelError

__all__ = ["module_arrays", "load_module_arrays"]


def module_arrays(module: nn.Module, prefix: str) -> dict[str, np.ndarray]:
    """``module``'s state dict (parameters and buffers) as ``{prefix + name: numpy copy}``."""
    return {prefix + k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_module_arrays(module: nn.Module, arrays: dict[str, np.ndarray], prefix: str, what: str) -> None:
    """Load ``module``'s state dict from the ``prefix``-named arrays of :func:`module_arrays` (strict).

    Raises:
        ModelError: an array is missing, left over or of the wrong shape (names the first few).
    """
    own = module.state_dict()
    given = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    missing = [k for k in own if k not in given]
    extra = [k for k in given if k not in own]
    bad = [k for k in own if k in given and tuple(np.shape(given[k])) != tuple(own[k].shape)]
    if missing or extra or bad:
        parts = [f"{name} {', '.join(keys[:3])}" for name, keys in
                 (("missing", missing), ("unexpected", extra), ("wrong shape", bad)) if keys]
        raise ModelError(f"{what}: weights.npz does not match the architecture ({'; '.join(parts)}); refit")
    module.load_state_dict({k: torch.from_numpy(np.array(given[k])).to(own[k].dtype) for k in own}, strict=True)
