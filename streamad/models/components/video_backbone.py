"""A 3-D video network's layer over a whole clip, average-pooled into a grid of cells: FUVAS's features as anomalib
reads them (``FUVASModel.get_features``: one node of a torchvision / PyTorchVideo video network, time kept, spatial
``avg_pool3d`` by ``pooling_kernel_size``).

The networks are torchvision's Kinetics-400 video classifiers, built with ``weights=None`` and filled from a local
state dict the user names (``weights``): ``swin3d_t`` / ``swin3d_s`` / ``swin3d_b`` (Liu et al., "Video Swin
Transformer", CVPR 2022; anomalib's FUVAS offers ``swin3d_b`` at node ``features.6.1``) and the 3-D ResNets
``r3d_18`` / ``mc3_18`` / ``r2plus1d_18`` (Tran et al., "A Closer Look at Spatiotemporal Convolutions", CVPR 2018;
nodes ``layer1`` .. ``layer4``). Nothing is downloaded; the torchvision weight files are e.g.
``swin3d_b_22k-7c6ae6fa.pth`` or ``r3d_18-b3b3357e.pth`` from a machine that has them. anomalib's default x3d_s comes
from PyTorchVideo's torch hub, which is not installed here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from streamad.errors import ModelError
from streamad.models.components.state_dict import load_strict

__all__ = ["VIDEO_BACKBONES", "VideoClipGridFeatures"]

_KINETICS_MEAN, _KINETICS_STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

VIDEO_BACKBONES: dict[str, tuple[str, tuple[float, ...], tuple[float, ...]]] = {
    "swin3d_t": ("features.6.1", _IMAGENET_MEAN, _IMAGENET_STD),
    "swin3d_s": ("features.6.1", _IMAGENET_MEAN, _IMAGENET_STD),
    "swin3d_b": ("features.6.1", _IMAGENET_MEAN, _IMAGENET_STD),
    "r3d_18": ("layer4", _KINETICS_MEAN, _KINETICS_STD),
    "mc3_18": ("layer4", _KINETICS_MEAN, _KINETICS_STD),
    "r2plus1d_18": ("layer4", _KINETICS_MEAN, _KINETICS_STD),
}
"""torchvision video network -> (default node, as anomalib for swin3d_b; input mean; input std, 0-1 RGB), the
normalisation of torchvision's Kinetics-400 weights for each network."""


def _nodes(net: torch.nn.Module) -> list[str]:
    """The module names a user may pick, up to two levels deep (``layer3``, ``features.6``, ``features.6.1``)."""
    return [n for n, _ in net.named_modules() if n and n.count(".") <= 2 and not n.split(".")[-1].startswith(
        ("norm", "attn", "mlp", "conv", "bn", "relu", "downsample"))]


class VideoClipGridFeatures:
    """``clip(frames (T, H, W, 3) uint8 RGB) -> (T', h, w, C) float32``: node ``layer`` of a 3-D video network on
    the whole clip (input ``(1, 3, T, H, W)`` normalised as its Kinetics weights expect), average-pooled over
    ``pool`` x ``pool`` cells (``h = ceil(H / stride) // pool``, cells that do not fit dropped, as anomalib's
    ``avg_pool3d`` with kernel ``(1, pool, pool)``); ``T'`` is the layer's time axis (swin3d halves ``T``;
    ``r3d_18`` and ``r2plus1d_18`` halve it in each of ``layer2`` .. ``layer4``, to at least 1; ``mc3_18`` keeps it).
    Strides: swin3d 32 at ``features.6``; the 3-D ResNets 8 at ``layer3``, 16 at ``layer4``.

    Args:
        backbone: a key of :data:`VIDEO_BACKBONES`.
        layer: node name (``features.6.1``, ``layer4``, ...); ``None`` = the backbone's default.
        pool: pooling kernel and stride in map cells (``>= 1``).
        weights: local torchvision state dict (``.pth`` / ``.safetensors``), required.

    Raises:
        ModelError: unknown backbone, no or missing weights file, a file that does not match the network, an
            unknown layer (the message lists the network's nodes).
        ValueError: ``pool < 1``; (on call) frames that are not ``(T, H, W, 3)``, or a map smaller than one cell.
    """

    video = True
    """Marks a backbone that scores a whole clip at once (the 2-D ``ClipGridFeatures`` scores frames)."""

    def __init__(self, backbone: str, layer: str | None = None, pool: int = 1,
                 weights: str | Path | None = None) -> None:
        if backbone not in VIDEO_BACKBONES:
            raise ModelError(f"unknown video backbone {backbone!r}; known: {', '.join(VIDEO_BACKBONES)}")
        if pool < 1:
            raise ValueError(f"pooling_kernel_size must be >= 1, got {pool}")
        default, mean, std = VIDEO_BACKBONES[backbone]
        if weights is None:
            raise ModelError(f"video backbone {backbone} needs weights: a local torchvision state dict (.pth), e.g. "
                             f"~/.cache/torch/hub/checkpoints/{backbone}*.pth; nothing is downloaded")
        import torchvision
        from torchvision.models.feature_extraction import create_feature_extractor

        net = getattr(torchvision.models.video, backbone)(weights=None).eval()
        load_strict(net, weights, f"video backbone {backbone}")
        self.layer = layer or default
        if self.layer not in dict(net.named_modules()):
            raise ModelError(f"video backbone {backbone} has no layer {self.layer!r}; its layers: "
                             f"{', '.join(_nodes(net))}")
        self.net = create_feature_extractor(net, return_nodes=[self.layer]).eval()
        self.channels_last = backbone.startswith("swin3d")
        self.mean = torch.tensor(mean).view(1, 3, 1, 1, 1) * 255
        self.std = torch.tensor(std).view(1, 3, 1, 1, 1) * 255
        self.pool = pool
        probe = self._map(torch.zeros(1, 3, 2, 64, 64))
        self.channels = int(probe.shape[-1])
        self.cell = 64 // int(probe.shape[2]) * pool  # cell side in input pixels

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        """``(1, 3, T, H, W)`` normalised -> ``(T', h, w, C)`` unpooled."""
        with torch.inference_mode():
            out = self.net(x)[self.layer]
        return out[0] if self.channels_last else out[0].permute(1, 2, 3, 0)

    def clip(self, frames: np.ndarray) -> np.ndarray:
        """See the class doc."""
        if frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"video clip features need (T, H, W, 3) uint8 RGB frames, got shape {frames.shape}")
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None].float()
        fmap = self._map((x - self.mean) / self.std)  # (T', h, w, C)
        if self.pool > 1:
            if min(fmap.shape[1:3]) < self.pool:
                raise ValueError(f"frames {frames.shape[2]}x{frames.shape[1]} give a {tuple(fmap.shape[1:3])} map, "
                                 f"smaller than pooling_kernel_size {self.pool}")
            fmap = F.avg_pool2d(fmap.permute(0, 3, 1, 2), self.pool).permute(0, 2, 3, 1)
        return fmap.contiguous().numpy()
