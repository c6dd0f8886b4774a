"""WinCLIP's inference network: decoded frames -> anomaly map and image score (anomalib ``WinClipModel.forward``,
``_compute_zero_shot_scores``, ``_compute_few_shot_scores``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamad.models.components.clip_image import CLIP_MEAN, CLIP_STD
from streamad.models.image.base import ImageNetwork
from streamad.models.image.winclip.encoder import ClipWindowEncoder
from streamad.models.image.winclip.windows import class_scores, harmonic_aggregation, visual_association_score

__all__ = ["WinclipNetwork", "TEMPERATURE"]

#: CLIP's softmax temperature (anomalib ``TEMPERATURE``).
TEMPERATURE = 0.07


class WinclipNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 RGB -> (anomaly_map (N, 1, S, S) float32, score (N,) float32)``.

    1. Resize to ``S x S`` (:class:`~streamad.models.image.preprocess.Preprocess`), scale to 0-1, CLIP's mean / std.
    2. :class:`~streamad.models.image.winclip.encoder.ClipWindowEncoder`: image, window and patch embeddings.
    3. Zero-shot: the image's and each window's anomalous-class probability against ``text_embeddings``
       (:func:`~streamad.models.image.winclip.windows.class_scores`, temperature 0.07); per scale, the windows'
       scores harmonically averaged onto the patches they cover; the patch map is the harmonic mean over the image
       score (the whole-image scale) and the scales' maps.
    4. Few-shot (reference embeddings given): per patch, the visual association score of the patch embeddings
       and, per scale, of the window embeddings (harmonically averaged onto patches), arithmetic mean over these;
       map = (zero-shot map + few-shot map) / 2, score = (zero-shot image score + max of the few-shot map) / 2.
    5. The ``(gh, gw)`` patch map resized bilinearly to ``S x S``. No blur (anomalib's WinCLIP has none).

    Scores are probabilities / half cosine distances, in [0, 1].

    Raises:
        ValueError: embeddings whose shapes do not fit the tower, the grid or the scales.

    Args:
        size: ``(S, S)`` the CLIP input size in pixels.
        extractor: the encoder (named ``extractor`` so that an int8 export quantises it and not the head).
        grid: ``(gh, gw)`` patch grid.
        covers: per scale, ``(gh*gw, n_windows)`` coverage matrix (:func:`~.windows.coverage`).
        text_embeddings: ``(2, E)`` normal / anomalous prompt-ensemble embeddings.
        patch_embeddings: ``(K, gh*gw, width)`` of the K reference images, or ``None`` (zero-shot).
        window_embeddings: per scale ``(K, n_windows, E)`` of the reference images, or ``None``.
    """

    def __init__(self, size: tuple[int, int], extractor: ClipWindowEncoder, grid: tuple[int, int],
                 covers: list[torch.Tensor], text_embeddings: torch.Tensor, patch_embeddings: torch.Tensor | None,
                 window_embeddings: list[torch.Tensor] | None) -> None:
        super().__init__(size)
        self.extractor = extractor
        self.grid = (int(grid[0]), int(grid[1]))
        self.scales = len(covers)
        self.few_shot = patch_embeddings is not None
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        n_patches = self.grid[0] * self.grid[1]
        dim, width = extractor.visual.proj.shape[1], extractor.visual.proj.shape[0]
        if tuple(text_embeddings.shape) != (2, dim):
            raise ValueError(f"text_embeddings {tuple(text_embeddings.shape)}, expected (2, {dim})")
        self.register_buffer("text_embeddings", text_embeddings.float())
        for i, cov in enumerate(covers):
            self.register_buffer(f"cover{i}", cov.float(), persistent=False)
        if self.few_shot:
            if window_embeddings is None or len(window_embeddings) != self.scales:
                raise ValueError("few-shot WinCLIP needs the reference window embeddings of every scale")
            k = patch_embeddings.shape[0]
            if tuple(patch_embeddings.shape) != (k, n_patches, width):
                raise ValueError(f"patch_embeddings {tuple(patch_embeddings.shape)}, expected (K, {n_patches}, {width})")
            for i, (ref, cov) in enumerate(zip(window_embeddings, covers)):
                if tuple(ref.shape) != (k, cov.shape[1], dim):
                    raise ValueError(f"window_embeddings{i} {tuple(ref.shape)}, expected ({k}, {cov.shape[1]}, {dim})")
            self.register_buffer("patch_embeddings", patch_embeddings.float())
            for i, ref in enumerate(window_embeddings):
                self.register_buffer(f"window_embeddings{i}", ref.float())

    def covers(self) -> list[torch.Tensor]:
        """The per-scale coverage matrices."""
        return [getattr(self, f"cover{i}") for i in range(self.scales)]

    def zero_shot(self, image_scores: torch.Tensor, windows: list[torch.Tensor]) -> torch.Tensor:
        """``(N, gh*gw)`` zero-shot patch scores (anomalib ``_compute_zero_shot_scores``)."""
        maps = [image_scores[:, None].expand(-1, self.grid[0] * self.grid[1])]
        for emb, cov in zip(windows, self.covers()):
            maps.append(harmonic_aggregation(class_scores(emb, self.text_embeddings, TEMPERATURE), cov))
        return (self.scales + 1) / (1.0 / torch.stack(maps)).sum(dim=0)

    def few_shot_scores(self, patches: torch.Tensor, windows: list[torch.Tensor]) -> torch.Tensor:
        """``(N, gh*gw)`` few-shot patch scores (anomalib ``_compute_few_shot_scores``)."""
        maps = [visual_association_score(patches, self.patch_embeddings)]
        for i, (emb, cov) in enumerate(zip(windows, self.covers())):
            ref = getattr(self, f"window_embeddings{i}")
            maps.append(harmonic_aggregation(visual_association_score(emb, ref), cov))
        return torch.stack(maps).mean(dim=0)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (self.preprocess(images) - self.mean) / self.std
        image, windows, patches = self.extractor(x)
        score = class_scores(image, self.text_embeddings, TEMPERATURE)
        patch_map = self.zero_shot(score, windows)
        if self.few_shot:
            few = self.few_shot_scores(patches, windows)
            patch_map = (patch_map + few) / 2
            score = (score + few.amax(dim=1)) / 2
        amap = patch_map.reshape(-1, 1, *self.grid)
        return F.interpolate(amap, size=self.size, mode="bilinear", align_corners=False), score
