"""Per-layer anomaly maps of the feature-comparison models (STFPM, Reverse Distillation) brought to the input size
and combined into one map: anomalib's ``AnomalyMapGenerator`` of those models, without the blur (each network applies
its own :class:`~streamad.models.components.gaussian_blur.GaussianBlur2d` afterwards).

Built from ``torch.nn.functional`` ops that ONNX and OpenVINO export.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["COMBINE_MODES", "combine_layer_maps", "cosine_distance_map"]

COMBINE_MODES = ("add", "multiply")


def cosine_distance_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N, C, h, w)`` x2 float32 -> ``(N, 1, h, w)``: ``1 - cosine similarity`` of the two feature vectors at
    every position, in ``[0, 2]`` (anomalib's Reverse Distillation layer map).

    Written out as ``1 - a.b / max(|a| |b|, 1e-8)`` (``torch.nn.functional.cosine_similarity``'s formula) because
    OpenVINO has no conversion rule for ``aten::cosine_similarity``.
    """
    dot = (a * b).sum(1, keepdim=True)
    norms = torch.sqrt((a * a).sum(1, keepdim=True) * (b * b).sum(1, keepdim=True))
    return 1.0 - dot / norms.clamp_min(1e-8)


def combine_layer_maps(maps: Iterable[torch.Tensor], size: tuple[int, int], mode: Literal["add", "multiply"],
                       align_corners: bool = False) -> torch.Tensor:
    """Bilinearly upsample each ``(N, 1, h_l, w_l)`` layer map to ``size`` and add or multiply them.

    Args:
        maps: one map per layer (at least one). size: output ``(h, w)`` in pixels.
        mode: ``add`` or ``multiply`` (anomalib's ``AnomalyMapGenerationMode``). align_corners: of the upsampling.

    Returns:
        ``(N, 1, h, w)`` float32.

    Raises:
        ValueError: an unknown ``mode`` or no map.
    """
    if mode not in COMBINE_MODES:
        raise ValueError(f"anomaly map mode must be one of {', '.join(COMBINE_MODES)}, got {mode!r}")
    out: torch.Tensor | None = None
    for m in maps:
        up = F.interpolate(m, size=tuple(size), mode="bilinear", align_corners=align_corners)
        out = up if out is None else (out + up if mode == "add" else out * up)
    if out is None:
        raise ValueError("combine_layer_maps: no layer map")
    return out
