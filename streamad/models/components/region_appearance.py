"""Appearance (deep) features of image regions from a pretrained CNN backbone: AI-VAD's deep attribute on a CPU,
standing in for anomalib's CLIP ``DeepExtractor`` (no CLIP weights can be had offline here).

Two ways to get a region's vector, both with ``torchvision.ops.roi_align``:

* ``crop``: the region is cut out of the frame and resized to ``crop_size`` x ``crop_size`` (as AI-VAD feeds CLIP
  ``roi_align(frame, box, 224 x 224)``), the backbone runs on the batch of crops, and each requested layer's map is
  averaged over space.
* ``roi_align``: the backbone runs once on the whole frame and each layer's map is pooled inside the box
  (``roi_align`` with ``spatial_scale = 1 / stride``, ``roi_output`` x ``roi_output`` bins, then averaged).

The layer vectors are concatenated (``D`` = sum of the layers' channels) and, with ``normalize``, scaled to unit L2
norm (so that nearest-neighbour distances compare directions, as CLIP embeddings are usually compared).

``backbone="clip_vit_b16"`` (``crop`` only) is anomalib's CLIP ViT-B/16 image encoder from a local weights file
(:class:`~streamad.models.components.clip_image.ClipImageEncoder`): each crop's 512-d CLIP embedding; ``layers``
do not apply and ``crop_size`` is the crop cut before CLIP's own resize to 224.

With ``runtime="openvino"`` (``crop`` only) the backbone, pooling and normalisation are converted once to an
OpenVINO model with a dynamic batch and run there (one CPU thread per call): the same vectors within float32
rounding, several times faster than torch for the small batches of one frame's regions.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from streamad.errors import ModelError
from streamad.models.components.backbone import build_feature_extractor
from streamad.models.components.clip_image import CLIP_BACKBONES, ClipImageEncoder

__all__ = ["RegionAppearance", "pool_regions"]


def pool_regions(maps: dict[str, torch.Tensor], rois: torch.Tensor, strides: dict[str, int],
                 roi_output: int = 2) -> torch.Tensor:
    """Each layer's feature map pooled inside each region, the layers concatenated (the ``roi_align`` method).

    Args:
        maps: ``{layer: (N, C_l, h_l, w_l) float32}`` backbone maps of a batch of images.
        rois: ``(M, 5) float32`` rows ``(batch index, x1, y1, x2, y2)`` in input pixels (exclusive right/bottom
            edges: ``roi_align(aligned=True)`` samples pixel centres).
        strides: ``{layer: stride}`` in input pixels.
        roi_output: bins per side; the bins are averaged.

    Returns:
        ``(M, sum of C_l) float32``.
    """
    from torchvision.ops import roi_align  # on use: it imports torch._dynamo (2 s)

    parts = [roi_align(m, rois, (roi_output, roi_output), spatial_scale=1.0 / strides[layer], sampling_ratio=2,
                       aligned=True).mean(dim=(2, 3)) for layer, m in maps.items()]
    return torch.cat(parts, dim=1)


class _CropHead(torch.nn.Module):
    """Backbone + spatial mean per layer + concatenation (+ L2 normalisation): ``(N, 3, s, s)`` 0-255 -> ``(N, D)``."""

    def __init__(self, net: torch.nn.Module, layers: Sequence[str], normalize: bool) -> None:
        super().__init__()
        self.net, self.layers, self.normalize = net, list(layers), normalize

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        maps = self.net(crops)
        vec = torch.cat([maps[layer].mean(dim=(2, 3)) for layer in self.layers], dim=1)
        return torch.nn.functional.normalize(vec, dim=1) if self.normalize else vec


class RegionAppearance:
    """Deep feature vector of each region of a frame.

    Args:
        backbone: backbone name (:func:`~streamad.models.components.backbone.build_feature_extractor`).
        layers: backbone layers to pool (e.g. ``["layer3", "layer4"]``: 112 + 320 = 432 values for
            EfficientNet-Lite0).
        method: ``crop`` or ``roi_align`` (module doc).
        crop_size: side of the region crops in pixels (``crop``).
        roi_output: bins per side of the feature-map pooling (``roi_align``).
        normalize: scale each vector to unit L2 norm.
        context: each box is grown about its centre by this factor (clipped to the image) before its vector is
            taken: 1.5 gives the region's surroundings (a bicycle's rider and wheels, a cart's pusher) too.
        weights: local weights file of the backbone (``None``: the packaged EfficientNet-Lite0 ImageNet weights).
        runtime: ``torch`` or ``openvino`` (``crop`` only; module doc).

    Raises:
        ModelError: unknown backbone or layer, missing weights, ``openvino`` or a CLIP backbone with ``roi_align``.
    """

    def __init__(self, backbone: str = "efficientnet_lite0", layers: Sequence[str] = ("layer3", "layer4"),
                 method: Literal["crop", "roi_align"] = "crop", crop_size: int = 64, roi_output: int = 2,
                 normalize: bool = True, weights: str | Path | None = None, context: float = 1.0,
                 runtime: Literal["torch", "openvino"] = "torch") -> None:
        importlib.import_module("torchvision.ops")  # for roi_align, here where the pipeline is built: the first
                                                    # frame does not wait the 2 s its import takes
        self.head: torch.nn.Module
        if backbone in CLIP_BACKBONES:
            if method != "crop":
                raise ModelError(f"region appearance: backbone {backbone} needs method 'crop'")
            self.head = ClipImageEncoder(backbone, weights, normalize)
            self.dims = ClipImageEncoder.dims
        else:
            self.net = build_feature_extractor(backbone, layers, weights)
            self.head = _CropHead(self.net, self.net.layers, normalize)
            self.dims = int(sum(self.net.channels[layer] for layer in self.net.layers))
        self.ov = None
        if runtime == "openvino":
            if method != "crop":
                raise ModelError("region appearance: runtime 'openvino' needs method 'crop'")
            import openvino as ov

            with warnings.catch_warnings():  # torch.jit tracing warnings of the conversion, not the user's concern
                warnings.simplefilter("ignore")
                model = ov.convert_model(self.head, example_input=torch.zeros(2, 3, crop_size, crop_size),
                                         input=[(-1, 3, crop_size, crop_size)])
            self.ov = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1,
                                                               "INFERENCE_PRECISION_HINT": "f32"})
            self._local = threading.local()
        self.method = method
        self.crop_size = crop_size
        self.roi_output = roi_output
        self.normalize = normalize
        self.context = context

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Vectors of the ``(M, 4)`` xyxy boxes (pixels) of ``image`` (``(H, W, 3) uint8 RGB``).

        Returns:
            ``(M, D) float32``; ``(0, D)`` without boxes.
        """
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if not len(boxes):
            return np.zeros((0, self.dims), np.float32)
        if self.context != 1.0:
            h, w = image.shape[:2]
            centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) * self.context / 2
            boxes = np.clip(np.concatenate([centre - half, centre + half], axis=1), 0,
                            [w - 1, h - 1, w - 1, h - 1]).astype(np.float32)
        frame = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        rois = torch.cat([torch.zeros(len(boxes), 1), torch.from_numpy(boxes)], dim=1)
        rois[:, 3:] += 1.0  # boxes hold inclusive pixel extents; roi_align(aligned=True) samples pixel centres
        from torchvision.ops import roi_align  # on use: it imports torch._dynamo (2 s)

        if self.method == "crop":
            crops = roi_align(frame, rois, (self.crop_size, self.crop_size), spatial_scale=1.0, sampling_ratio=2,
                              aligned=True)
            if self.ov is not None:
                req = getattr(self._local, "request", None)
                if req is None:
                    req = self._local.request = self.ov.create_infer_request()
                return np.array(req.infer({0: crops.numpy()})[self.ov.outputs[0]], np.float32)
            return self.head(crops).numpy().astype(np.float32)
        vec = pool_regions(self.net(frame), rois, self.net.strides, self.roi_output)
        if self.normalize:
            vec = torch.nn.functional.normalize(vec, dim=1)
        return vec.numpy().astype(np.float32)
