"""CLIP ViT-B/16 image encoder (Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision", ICML 2021) for AI-VAD's deep attribute, as anomalib's ``DeepExtractor`` uses it
(``clip.load("ViT-B/16")``, ``encode_image`` of each region resized to 224 x 224), built from timm's
``vit_base_patch16_clip_224.openai`` architecture and a **local** weights file: nothing is downloaded.

Weights: timm's layout of OpenAI's image tower with its 512-d projection as ``head``, e.g. the ``model.safetensors``
of the Hugging Face repository ``timm/vit_base_patch16_clip_224.openai``, loaded strictly
(:func:`~streamad.models.components.state_dict.load_strict`). Needs the ``timm`` package (``pip install
'streamad[timm]'``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from streamad.errors import ModelError
from streamad.models.components.backbone import import_timm
from streamad.models.components.state_dict import load_strict

__all__ = ["ClipImageEncoder", "CLIP_BACKBONES", "CLIP_MEAN", "CLIP_STD"]

#: streamad backbone name -> timm architecture (image tower + projection, 224 x 224 input, 512-d output).
CLIP_BACKBONES = {"clip_vit_b16": "vit_base_patch16_clip_224.openai"}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's normalisation (RGB, 0-1 scale)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipImageEncoder(nn.Module):
    """CLIP image embeddings of region crops.

    Input ``(N, 3, S, S) float32`` RGB 0-255 (any crop side ``S``); the crops are resized to 224 x 224 (bicubic),
    normalised with CLIP's mean and std and encoded. Output ``(N, 512) float32``, unit L2 norm when ``normalize``
    (CLIP's embeddings are compared by cosine).

    Args:
        backbone: a key of :data:`CLIP_BACKBONES`.
        weights: local weights file (``.safetensors`` or a ``weights_only`` ``.pth``) in timm's layout.
        normalize: scale each embedding to unit L2 norm.

    Raises:
        ModelError: unknown backbone, no ``weights``, timm missing, or a file that does not match the architecture.
    """

    input_size = 224
    dims = 512

    def __init__(self, backbone: str, weights: str | Path | None, normalize: bool = True) -> None:
        super().__init__()
        if backbone not in CLIP_BACKBONES:
            raise ModelError(f"unknown CLIP backbone {backbone!r}; known: {sorted(CLIP_BACKBONES)}")
        timm = import_timm(backbone, weights, f"a local file in timm's layout (e.g. model.safetensors of "
                                              f"timm/{CLIP_BACKBONES[backbone]})")
        self.net = timm.create_model(CLIP_BACKBONES[backbone], pretrained=False, num_classes=self.dims)
        load_strict(self.net, weights, f"backbone {backbone}")
        self.net.eval()
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """``(N, 512)`` embeddings of ``(N, 3, S, S)`` 0-255 RGB crops."""
        x = F.interpolate(crops, size=(self.input_size, self.input_size), mode="bicubic", align_corners=False)
        emb = self.net((x - self.mean) / self.std)
        return F.normalize(emb, dim=1) if self.normalize else emb
