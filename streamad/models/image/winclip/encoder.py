"""CLIP image, window and patch embeddings in one pass (anomalib ``WinClipModel.encode_image`` /
``_get_window_embeddings``).

The ViT's input tokens (class token and patch tokens, positional embeddings added, ``ln_pre`` applied) are computed
once. The image embedding and the patch embeddings come from the whole sequence through the transformer; each
window's embedding from the class token followed by only that window's patch tokens through the same transformer
(the positional embeddings keep where each patch was), ``ln_post`` and the projection.

Differs from anomalib: the tokens are selected after ``ln_pre`` (anomalib selects them before it, from a forward
hook on ``patch_dropout``): a per-token LayerNorm, so the same numbers, without a hook, which does not export.
An earlier anomalib version selected token ``i`` for patch ``i`` (so patch ``i - 1``: the class token at index 0 was
not skipped); the current one adds 1 to the indices, as here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["ClipWindowEncoder"]


class ClipWindowEncoder(nn.Module):
    """open_clip's ViT image tower, encoding whole images and windows of patches.

    Args:
        visual: the ``visual`` tower of an open_clip ``CLIP`` (a plain ViT: class-token pooling, ``ln_pre``,
            projection; see :func:`~streamad.models.image.winclip.clip_loader.clip_geometry`).
        masks: per scale, ``(s*s, n_windows) int64`` patch indices of each window
            (:func:`~streamad.models.image.winclip.windows.window_masks`).

    ``forward(x (N, 3, S, S) float32, CLIP-normalised) -> (image (N, E), windows [(N, n_windows, E) per scale],
    patches (N, gh*gw, width))``; ``E`` is the joint embedding size (640 for ViT-B-16-plus-240), ``width`` the
    tower's (896); the patch embeddings are the last layer's tokens after ``ln_post``, before the projection (as
    anomalib's ``output_tokens``).
    """

    def __init__(self, visual: Any, masks: list[torch.Tensor]) -> None:
        super().__init__()
        self.visual = visual.requires_grad_(False)  # frozen: also one attention path whenever it is traced
        self.scales = len(masks)
        for i, m in enumerate(masks):  # (n_windows, 1 + s*s): the class token (0), then the window's patches
            index = torch.cat([torch.zeros(1, m.shape[1], dtype=torch.long), m.long() + 1]).T.contiguous()
            self.register_buffer(f"window_index{i}", index, persistent=False)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` -> ``(N, 1 + gh*gw, width)`` input tokens of the transformer (after ``ln_pre``)."""
        v = self.visual
        x = v.conv1(x).flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).reshape(1, 1, -1).expand(x.shape[0], 1, -1)
        return v.ln_pre(torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype))

    def _finish(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Transformer, ``ln_post``: ``(projected class embedding (B, E), other tokens (B, L - 1, width))``."""
        v = self.visual
        x = v.ln_post(v.transformer(tokens))
        return x[:, 0] @ v.proj, x[:, 1:]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        tokens = self.tokens(x)
        image, patches = self._finish(tokens)
        n, _, width = tokens.shape
        windows = []
        for i in range(self.scales):
            index: torch.Tensor = getattr(self, f"window_index{i}")
            picked = tokens[:, index]  # (N, n_windows, 1 + s*s, width)
            emb, _ = self._finish(picked.reshape(-1, index.shape[1], width))
            windows.append(emb.reshape(n, index.shape[0], -1))
        return image, windows, patches
