"""STFPM's student: the teacher's architecture with fresh, seeded random weights, trained to reproduce the teacher's
feature pyramid (anomalib builds it as the same timm backbone with ``pre_trained=False``, ``requires_grad=True``).

The student is a copy of the teacher's body (:attr:`FeatureExtractor.body`, so every backbone the teacher supports
works) whose convolutions are re-initialised as timm / TensorFlow EfficientNet do (normal with standard deviation
``sqrt(2 / fan_out)``, ``fan_out = k_h * k_w * out_channels / groups``; for ResNets that is torchvision's Kaiming
fan-out init), BatchNorm to identity (weight 1, bias 0, fresh running statistics) and linear layers to PyTorch's
default. It normalises its input like the teacher, so both read the same ``(N, 3, H, W)`` 0-255 batch.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from streamad.models.components.backbone import FeatureExtractor

__all__ = ["Student"]


def _init_(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()  # weight 1, bias 0, running mean 0 / var 1, no batch tracked
        elif isinstance(m, nn.Linear):
            m.reset_parameters()


class Student(nn.Module):
    """A trainable copy of ``teacher``'s architecture with random weights drawn from ``seed``.

    ``forward(x (N, 3, H, W) float32 0-255) -> {layer: (N, C, H / s, W / s)}``, the layers of the teacher.

    Args:
        teacher: the frozen teacher extractor (its weights are not used, only its structure and normalisation).
        seed: seeds the initialisation (the global torch random state is left as it was).
    """

    def __init__(self, teacher: FeatureExtractor, seed: int) -> None:
        super().__init__()
        self.layers = list(teacher.layers)
        self.body = copy.deepcopy(teacher.body)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            with torch.no_grad():
                _init_(self.body)
        for p in self.body.parameters():
            p.requires_grad_(True)
        self.register_buffer("mean", teacher.mean.clone(), persistent=False)
        self.register_buffer("inv_std", teacher.inv_std.clone(), persistent=False)
        self.train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.body((x - self.mean) * self.inv_std)
        return {layer: feats[layer] for layer in self.layers}
