"""Save and restore a module's fitted buffers whatever their shapes (anomalib ``DynamicBufferMixin``: buffers are
created empty and take the shape of the fitted values, so ``load_state_dict``'s shape check cannot be used)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from streamad.errors import ModelError

__all__ = ["buffer_arrays", "assign_buffers"]


def buffer_arrays(module: nn.Module, prefix: str = "") -> dict[str, np.ndarray]:
    """``{prefix + name: array}`` of the module's persistent buffers (recursively)."""
    return {prefix + k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def assign_buffers(module: nn.Module, arrays: Mapping[str, np.ndarray], prefix: str = "", what: str = "") -> None:
    """Set every persistent buffer of ``module`` from ``arrays[prefix + name]`` (float arrays become float32).

    Raises:
        ModelError: an array is missing (names ``what`` and the key).
    """
    for name in list(module.state_dict()):
        key = prefix + name
        if key not in arrays:
            raise ModelError(f"{what or type(module).__name__}: weights.npz lacks array {key!r}; refit the model")
        value = torch.from_numpy(np.array(arrays[key]))
        if value.is_floating_point():
            value = value.float()
        owner = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
        setattr(owner, name.rpartition(".")[2], value)
