"""WinCLIP (Jeong et al., "WinCLIP: Zero-/Few-Shot Anomaly Classification and Segmentation", CVPR 2023,
arXiv 2303.14814), following anomalib's ``WinClip`` / ``WinClipModel``: training-free zero-shot (CLIP and a
compositional prompt ensemble) or few-shot (plus the first ``k_shot`` normal training images as references) anomaly
scores from window embeddings of a CLIP ViT. See ``README.md`` beside this file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from streamad.errors import ModelError
from streamad.models.image.base import ImageModel, ImageModelConfig, file_sha256
from streamad.models.image.image_set import ImageSet
from streamad.models.image.winclip.clip_loader import DEFAULT_ARCHITECTURE, clip_geometry, import_open_clip, load_clip
from streamad.models.image.winclip.encoder import ClipWindowEncoder
from streamad.models.image.winclip.network import WinclipNetwork
from streamad.models.image.winclip.prompts import text_embeddings
from streamad.models.image.winclip.windows import coverage, window_masks
from streamad.registry import IMAGE_MODELS

__all__ = ["Winclip"]


@IMAGE_MODELS.register("winclip")
class Winclip(ImageModel):
    """WinCLIP with anomalib's parameters (see the module doc and ``README.md`` beside this file).

    Config:
        backbone: the open_clip CLIP architecture (a plain ViT), default ``ViT-B-16-plus-240`` (anomalib's).
        weights: the local open_clip checkpoint of that architecture (required: nothing is downloaded).
        class_name: the object named in the prompts (anomalib: the dataset category, else ``"object"``).
        k_shot: 0 = zero-shot; k > 0 = few-shot with the first k training images as normal references.
        scales: window sides in patches (anomalib ``(2, 3)``).
        input_size: the architecture's input size (240 x 240 for ViT-B-16-plus-240); any other is a config error.
        layers: ignored (the windows are taken from the ViT's input tokens).
    """

    version = "1"
    score_meaning = "CLIP anomalous-prompt probability (zero-shot), averaged with the nearest-reference cosine " \
                    "distance / 2 (few-shot)"

    class Config(ImageModelConfig):
        kind: Literal["winclip"] = "winclip"
        backbone: str = DEFAULT_ARCHITECTURE
        class_name: str = Field("object", min_length=1)
        k_shot: int = Field(0, ge=0)
        scales: tuple[int, ...] = Field((2, 3), min_length=1)
        input_size: tuple[int, int] = (240, 240)

        @field_validator("scales")
        @classmethod
        def _scales(cls, v: tuple[int, ...]) -> tuple[int, ...]:
            if any(s < 1 for s in v) or len(set(v)) != len(v):
                raise ValueError(f"scales must be distinct window sides >= 1 (patches), got {list(v)}")
            return v

        def model_post_init(self, __context: Any) -> None:
            side, grid = clip_geometry(self.backbone)
            if tuple(self.input_size) != (side, side):
                raise ValueError(f"input_size must be [{side}, {side}], the input size of CLIP {self.backbone} "
                                 f"(got {list(self.input_size)})")
            if max(self.scales) > min(grid):
                raise ValueError(f"scales {list(self.scales)}: a window cannot be larger than the {grid[0]}x{grid[1]} "
                                 f"patch grid of {self.backbone}")

    def __init__(self, config: ImageModelConfig) -> None:
        super().__init__(config)
        self._visual: nn.Module | None = None

    @property
    def grid(self) -> tuple[int, int]:
        """``(gh, gw)`` the ViT's patch grid."""
        return clip_geometry(self.config.backbone)[1]

    def backbone_identity(self) -> dict[str, str]:
        """``{"backbone": "open_clip/<architecture>", "weights_sha256"}`` of the CLIP weights file.

        Raises:
            ModelError: no weights configured, or the file is missing (the message says what to give).
        """
        c = self.config
        if c.weights is None or not Path(c.weights).is_file():
            load_clip(c.backbone, c.weights)  # raises the error that names the path and the file to give
        return {"backbone": f"open_clip/{c.backbone}", "weights_sha256": file_sha256(c.weights)}

    def _encoder(self) -> ClipWindowEncoder:
        if self._visual is None:
            self._visual = load_clip(self.config.backbone, self.config.weights).visual
        return ClipWindowEncoder(self._visual, [window_masks(self.grid, s) for s in self.config.scales])

    def _network(self, text: torch.Tensor, patches: torch.Tensor | None,
                 windows: list[torch.Tensor] | None) -> WinclipNetwork:
        grid = self.grid
        covers = [coverage(window_masks(grid, s), grid[0] * grid[1]) for s in self.config.scales]
        return WinclipNetwork(self.input_size, self._encoder(), grid, covers, text, patches, windows).eval()

    def fit(self, train: ImageSet, validation: ImageSet | None = None, progress: bool = False) -> dict[str, Any]:
        """Encode the prompt ensemble and, few-shot, the first ``k_shot`` images of ``train``; no optimisation.

        Raises:
            ValueError: fewer training images than ``k_shot``.
            ModelError: the CLIP weights are missing or do not match ``backbone``.
        """
        c = self.config
        if len(train) < c.k_shot:
            raise ValueError(f"winclip: k_shot is {c.k_shot} but only {len(train)} training images were given")
        t0 = time.perf_counter()
        clip = load_clip(c.backbone, c.weights)
        self._visual = clip.visual
        text = text_embeddings(clip, import_open_clip().tokenize, c.class_name)
        del clip
        patches = windows = None
        if c.k_shot:
            probe = self._network(text, None, None)
            refs = next(train.batches(c.k_shot)).images
            with torch.inference_mode():
                x = (probe.preprocess(torch.from_numpy(refs)) - probe.mean) / probe.std
                _, windows, patches = probe.extractor(x)
        self.network = self._network(text, patches, windows)
        return {"images": len(train), "k_shot": c.k_shot, "class_name": c.class_name,
                "seconds": round(time.perf_counter() - t0, 2)}

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        net: WinclipNetwork = self.require_network()
        arrays = {"text_embeddings": net.text_embeddings.numpy()}
        if net.few_shot:
            arrays["patch_embeddings"] = net.patch_embeddings.numpy()
            arrays.update({f"window_embeddings{i}": getattr(net, f"window_embeddings{i}").numpy()
                           for i in range(net.scales)})
        return {"k_shot": self.config.k_shot}, arrays

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        text = torch.from_numpy(np.asarray(arrays["text_embeddings"], np.float32))
        patches = windows = None
        if self.config.k_shot:
            patches = torch.from_numpy(np.asarray(arrays["patch_embeddings"], np.float32))
            windows = [torch.from_numpy(np.asarray(arrays[f"window_embeddings{i}"], np.float32))
                       for i in range(len(self.config.scales))]
        try:
            return self._network(text, patches, windows)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"image model winclip: weights.npz arrays do not fit the config: {exc}") from None
