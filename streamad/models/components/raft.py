"""torchvision RAFT optical flow (Teed & Deng, "RAFT: Recurrent All-Pairs Field Transforms for Optical Flow",
ECCV 2020) from a local weights file: anomalib AI-VAD's ``FlowExtractor`` (``raft_large``, frames resized to
520 x 960, the weights' transforms, the last of the refinement iterations), for users who have the weights (for
example ``raft_large_C_T_SKHT_V2-ff5fadd5.pth`` from a torch hub cache). Nothing is downloaded."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torchvision.transforms.functional as F  # noqa: N812

from streamad.errors import ModelError
from streamad.models.components.state_dict import load_strict

__all__ = ["RaftFlow", "RAFT_MODELS"]

#: ``raft_model`` names -> torchvision builder and weights enum names.
RAFT_MODELS = {"large": ("raft_large", "Raft_Large_Weights"), "small": ("raft_small", "Raft_Small_Weights")}


class RaftFlow:
    """Dense optical flow of a pair of RGB frames with torchvision ``raft_large`` / ``raft_small``.

    As anomalib ``FlowExtractor``: both frames (as floats in ``[0, 1]``) are resized bilinearly without
    antialiasing to ``size``, mapped to ``[-1, 1]`` by the weights' transforms, and the flow is the last of the
    model's iterative estimates, resized back to the frame size. Unlike anomalib, the flow is then scaled by
    ``W / size_w`` (x) and ``H / size_h`` (y), so it is in pixels of the given frames, like the DIS flow.

    Args:
        path: local state-dict file (loaded with ``torch.load(weights_only=True)``, strict).
        model: ``"large"`` (anomalib) or ``"small"``.
        size: ``(H, W)`` the frames are resized to, both multiples of 8 (anomalib ``(520, 960)``).

    Raises:
        ModelError: the file is missing, unreadable or not a state dict of the chosen architecture; ``size`` not
            two positive multiples of 8.
    """

    def __init__(self, path: str | Path, model: Literal["large", "small"] = "large",
                 size: tuple[int, int] = (520, 960)) -> None:
        import torchvision.models.optical_flow as of

        if model not in RAFT_MODELS:
            raise ModelError(f"RAFT flow: model must be one of {list(RAFT_MODELS)}, got {model!r}")
        h, w = (int(v) for v in size)
        if h <= 0 or w <= 0 or h % 8 or w % 8:
            raise ModelError(f"RAFT flow: size must be (H, W) positive multiples of 8 pixels, got {tuple(size)}")
        self.size = (h, w)
        builder, weights = RAFT_MODELS[model]
        self.net = getattr(of, builder)(weights=None)
        load_strict(self.net, path, f"RAFT flow ({builder}, raft_model: {model})")
        self.net.eval()
        self.transforms = getattr(of, weights).DEFAULT.transforms()  # builds the transform, downloads nothing
        self._lock = threading.Lock()

    @torch.inference_mode()
    def __call__(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Flow ``(H, W, 2) float32`` from ``first`` to ``last`` (both ``(H, W, 3) uint8 RGB``): channel 0 = x,
        1 = y displacement, in pixels of the given frames."""
        h, w = first.shape[:2]
        a, b = (torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None].float() / 255.0
                for f in (first, last))
        if (h, w) != self.size:
            a = F.resize(a, list(self.size), antialias=False)
            b = F.resize(b, list(self.size), antialias=False)
        a, b = self.transforms(a, b)
        with self._lock:
            flow = self.net(a, b)[-1]
        if (h, w) != self.size:
            flow = F.resize(flow, [h, w], antialias=False)
            flow = flow * torch.tensor([w / self.size[1], h / self.size[0]]).view(1, 2, 1, 1)
        return flow[0].permute(1, 2, 0).contiguous().numpy().astype(np.float32, copy=False)
