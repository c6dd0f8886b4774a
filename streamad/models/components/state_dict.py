"""Load a network's weights from a local file, safely and strictly: ``torch.load(weights_only=True)`` (or
safetensors), never a download, never unpickling code; any mismatch with the architecture is a clear error."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from streamad.errors import ModelError

__all__ = ["read_state_dict", "load_strict"]


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a local ``.pth`` / ``.pt`` (``weights_only``) or ``.safetensors`` file; a checkpoint holding
    ``{"state_dict": ...}`` is unwrapped, and the ``module.`` prefix of a state dict saved from
    ``DistributedDataParallel`` (every key) is removed.

    Args:
        path: the file.
        what: the network's name for messages (``"backbone resnet18"``, ``"RAFT flow"``).

    Raises:
        ModelError: the file is missing, unreadable, or does not hold a dict of tensors.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{what}: weights file not found: {p} (give a local state dict; nothing is downloaded)")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(p))
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file that is not a state dict
        raise ModelError(f"{what}: cannot read weights {p}: {' '.join(str(exc).split())[:300]}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ModelError(f"{what}: {p} holds a {type(sd).__name__}, expected a state dict")
    if sd and all(isinstance(k, str) and k.startswith("module.") for k in sd):
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    return sd


def load_strict(module: nn.Module, path: str | Path, what: str) -> None:
    """Load :func:`read_state_dict` of ``path`` into ``module`` with ``strict=True``.

    Raises:
        ModelError: as :func:`read_state_dict`, or keys / shapes that do not match the architecture.
    """
    sd = read_state_dict(path, what)
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).splitlines()[0:3])
        raise ModelError(f"{what}: {path} does not match the architecture: {first[:300]}") from None
