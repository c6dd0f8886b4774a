"""``deep_features``: AI-VAD's deep (appearance) attribute of every region, from a pretrained CNN
(:class:`~streamad.models.components.region_appearance.RegionAppearance`; EfficientNet-Lite0 ImageNet weights by
default), standing in for anomalib's CLIP ``DeepExtractor``, whose weights cannot be had offline. Where a user has
CLIP weights, ``backbone: clip_vit_b16`` with ``weights: <file>`` gives anomalib's CLIP ViT-B/16 embeddings (512
values a region)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from streamad.frames import Clip
from streamad.models.components.region_appearance import RegionAppearance
from streamad.operators.box_reuse import BoxReuse
from streamad.parts import BuildContext, Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["DeepFeatures"]


@OPERATORS.register("deep_features")
class DeepFeatures(Operator):
    """Appearance vectors of the clip's regions. Needs ``clip.regions``; sets ``clip.features["deep"]``
    ``(M, D) float32`` (``D`` = the layers' channels summed: 432 for EfficientNet-Lite0 ``layer3`` + ``layer4``)."""

    class Config(PartConfig):
        """Config of ``kind: deep_features``."""

        kind: Literal["deep_features"] = "deep_features"
        backbone: str = Field("efficientnet_lite0", description="CNN backbone (the image models' names), or "
                                                                "'clip_vit_b16' (anomalib's CLIP image encoder; "
                                                                "needs weights, method crop).")
        weights: str | None = Field(None, description="Local backbone weights; None = packaged EfficientNet-Lite0. "
                                                      "CLIP: timm's layout, e.g. model.safetensors of "
                                                      "timm/vit_base_patch16_clip_224.openai.")
        layers: list[str] = Field(default_factory=lambda: ["layer3", "layer4"],
                                  description="Backbone layers pooled and concatenated per region.")
        method: Literal["crop", "roi_align"] = Field(
            "crop", description="'crop': backbone on each region's crop; 'roi_align': backbone once on the frame, "
                                "feature maps pooled inside each box.")
        crop_size: int = Field(64, ge=16, description="Crop side in pixels (method: crop).")
        roi_output: int = Field(2, ge=1, description="Pooling bins per side (method: roi_align).")
        normalize: bool = Field(True, description="Scale each vector to unit L2 norm.")
        context: float = Field(1.0, ge=1, description="Grow each box about its centre by this factor (clipped to "
                                                      "the frame) before taking its vector: surroundings included.")
        frame: Literal["first", "last"] = Field(
            "last", description="Frame the appearance is read from ('first' = anomalib; see pose_features).")
        runtime: Literal["torch", "openvino"] = Field(
            "torch", description="'openvino' (method crop only): the backbone and pooling converted once to "
                                 "OpenVINO at start-up; the same vectors within float32 rounding, faster.")
        reuse_unchanged_boxes: bool = Field(
            False, description="streamad extension: a box identical to one of the stream's previous clip (a "
                               "detection object_regions reused, detect_every > 1) keeps the vector computed for "
                               "it then, as pose_features keeps its keypoints: the backbone runs once per "
                               "detection. False (default, anomalib): every box of every clip is computed. Ped2: "
                               "+4 % frames/s, AUROC 0.9787 / 0.9345 against 0.9808 / 0.9410 (README Speed).")

    @classmethod
    def create_shared(cls, config: "DeepFeatures.Config", ctx: BuildContext) -> Any:
        return RegionAppearance(config.backbone, config.layers, config.method, config.crop_size, config.roi_output,
                                config.normalize, config.weights, config.context, config.runtime)

    def __init__(self, config: PartConfig, shared: Any, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        self._reuse = BoxReuse((shared.dims,)) if config.reuse_unchanged_boxes else None  # type: ignore[attr-defined]

    def process(self, clip: Clip) -> list[Clip]:
        if clip.regions is None:
            raise ValueError(f"stream {self.stream_id}: deep_features needs a region operator (object_regions) "
                             "before it in the pipeline")
        image = (clip.first if self.config.frame == "first" else clip.last).image
        boxes = clip.regions.boxes
        clip.features["deep"] = (self.shared(image, boxes) if self._reuse is None
                                 else self._reuse.reuse(boxes, lambda new: self.shared(image, new)))
        return [clip]
