"""``foreground_regions``: AI-VAD's foreground boxes from the pixel difference of a clip's first and last frame.

Defaults follow anomalib ``RegionExtractor`` (AI-VAD) exactly. streamad extensions, all off by default: mask
dilation and closing (join the fragments of one moving object) and motion regions from the optical-flow magnitude
instead of the frame difference.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from streamad.frames import Clip, Regions
from streamad.parts import Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["ForegroundRegions", "RegionFilterConfig", "foreground_mask", "flow_motion_mask", "mask_boxes",
           "foreground_boxes", "filter_boxes", "box_area"]


class RegionFilterConfig(PartConfig):
    """The region filters of anomalib's ``RegionExtractor`` (minimum area, overlap), shared by the region
    operators, with the minimum area in pixels (anomalib) or as a fraction of the frame (streamad extension)."""

    kind: str
    min_bbox_area: float = Field(
        100, ge=0, description="Boxes of this area or less (square pixels) are dropped (anomalib).")
    min_bbox_area_fraction: float | None = Field(
        None, gt=0, lt=1, description="streamad extension: the minimum box area as a fraction of the frame's area "
                                      "instead of min_bbox_area (0.00116 = 100 px at 360x240 = 2,400 px at "
                                      "1920x1080): one setting for any camera resolution.")
    max_bbox_overlap: float = Field(
        0.65, ge=0, le=1, description="A box whose intersection with a larger box, divided by its own area, "
                                      "exceeds this fraction is dropped (anomalib).")

    @model_validator(mode="after")
    def _one_minimum(self) -> "RegionFilterConfig":
        if self.min_bbox_area_fraction is not None and "min_bbox_area" in self.model_fields_set:
            raise ValueError(f"{self.kind}: set min_bbox_area (pixels) or min_bbox_area_fraction (of the frame's "
                             "area), not both")
        return self

    def min_area(self, frame_shape: tuple[int, ...]) -> float:
        """The minimum box area in square pixels for a frame of ``frame_shape`` ``(H, W, ...)``."""
        if self.min_bbox_area_fraction is None:
            return self.min_bbox_area
        return self.min_bbox_area_fraction * float(frame_shape[0]) * float(frame_shape[1])


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of ``(M, 4)`` xyxy boxes in square pixels, ``(x2 - x1) * (y2 - y1)`` as torchvision ``box_area``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def foreground_mask(first: np.ndarray, last: np.ndarray, kernel_size: int = 3,
                    binary_threshold: int = 18) -> np.ndarray:
    """AI-VAD's foreground pixels: thresholded grayscale difference of the blurred frames.

    Follows anomalib ``RegionExtractor.add_foreground_boxes``: Gaussian blur of both frames with a
    ``kernel_size`` x ``kernel_size`` kernel (sigma from the kernel size, as torchvision/OpenCV), absolute
    difference, grayscale (ITU-R 601 weights), ``> binary_threshold`` on the 0-255 scale.

    Args:
        first, last: ``(H, W, 3) uint8 RGB`` frames of the same size.
        kernel_size: odd Gaussian kernel size in pixels.
        binary_threshold: threshold on the 0-255 grayscale difference.

    Returns:
        ``(H, W) uint8`` mask, 1 = foreground.

    Raises:
        ValueError: the frames differ in shape or are not ``(H, W, 3)``.
    """
    if first.shape != last.shape or first.ndim != 3 or first.shape[2] != 3:
        raise ValueError(f"foreground_mask: first and last frame must both be (H, W, 3) RGB, got {first.shape} "
                         f"and {last.shape}")
    k = (kernel_size, kernel_size)
    a = cv2.GaussianBlur(first, k, 0).astype(np.int16)
    b = cv2.GaussianBlur(last, k, 0).astype(np.int16)
    diff = np.abs(a - b).astype(np.float32)
    gray = diff[..., 0] * 0.2989 + diff[..., 1] * 0.587 + diff[..., 2] * 0.114
    return (gray > binary_threshold).astype(np.uint8)


def flow_motion_mask(flow: np.ndarray, magnitude_threshold: float) -> np.ndarray:
    """Moving pixels from a dense flow: ``(H, W) uint8`` mask of ``|flow| > magnitude_threshold`` (pixels over the
    clip). A streamad extension (AI-VAD uses the frame difference, :func:`foreground_mask`).

    Args:
        flow: ``(H, W, 2) float32`` flow in pixels.
        magnitude_threshold: pixels of displacement between the clip's first and last frame.
    """
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow_motion_mask: flow must be (H, W, 2), got {flow.shape}")
    mag = cv2.magnitude(flow[..., 0], flow[..., 1])
    return (mag > magnitude_threshold).astype(np.uint8)


def mask_boxes(mask: np.ndarray, exclude: np.ndarray | None = None, dilate: int = 0, close: int = 0) -> np.ndarray:
    """One box per 8-connected component of a foreground mask (torchvision ``masks_to_boxes`` convention:
    inclusive pixel extents, x2 = max x, y2 = max y).

    Pixels inside ``exclude`` boxes (grown by 2 px, as anomalib) are cleared first. The two morphology options are
    streamad extensions (0 = off = anomalib behaviour); both join the fragments of one moving object (a person's
    frame difference is often only its edges):

    * ``close``: morphological closing (dilate then erode) with a ``close`` x ``close`` square; joins fragments
      without growing the boxes.
    * ``dilate``: dilation with a ``dilate`` x ``dilate`` square; joins fragments and grows every box by about
      ``dilate / 2`` pixels on each side.

    Args:
        mask: ``(H, W)`` mask, non-zero = foreground.
        exclude: ``(K, 4)`` xyxy boxes in pixels already found by a detector, or ``None``.
        dilate, close: square kernel sizes in pixels.

    Returns:
        ``(M, 4) float32`` xyxy boxes in pixels.
    """
    fg = (np.asarray(mask) > 0).astype(np.uint8)
    if exclude is not None and len(exclude):
        h, w = fg.shape
        for x1, y1, x2, y2 in np.asarray(exclude):
            fg[max(0, int(y1) - 2): min(h, int(y2) + 3), max(0, int(x1) - 2): min(w, int(x2) + 3)] = 0
    if close > 1:
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((close, close), np.uint8))
    if dilate > 0:
        fg = cv2.dilate(fg, np.ones((dilate, dilate), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return np.zeros((0, 4), np.float32)
    s = stats[1:]
    x1, y1 = s[:, cv2.CC_STAT_LEFT], s[:, cv2.CC_STAT_TOP]
    x2 = x1 + s[:, cv2.CC_STAT_WIDTH] - 1
    y2 = y1 + s[:, cv2.CC_STAT_HEIGHT] - 1
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)


def foreground_boxes(first: np.ndarray, last: np.ndarray, kernel_size: int = 3, binary_threshold: int = 18,
                     exclude: np.ndarray | None = None, dilate: int = 0, close: int = 0) -> np.ndarray:
    """Boxes around the connected components of the thresholded frame difference (anomalib
    ``RegionExtractor.add_foreground_boxes``): :func:`foreground_mask` then :func:`mask_boxes`.

    Args:
        first, last: ``(H, W, 3) uint8 RGB`` frames.
        kernel_size: odd Gaussian kernel size in pixels.
        binary_threshold: 0-255 threshold on the grayscale difference.
        exclude: ``(K, 4)`` xyxy boxes already found by a detector, or ``None``.
        dilate, close: streamad mask morphology in pixels (0 = off, anomalib behaviour), see :func:`mask_boxes`.

    Returns:
        ``(M, 4) float32`` xyxy boxes in pixels.
    """
    return mask_boxes(foreground_mask(first, last, kernel_size, binary_threshold), exclude, dilate, close)


def filter_boxes(regions: Regions, min_bbox_area: float = 100, max_bbox_overlap: float = 0.65,
                 persons_only: bool = False, person_label: int = 1) -> Regions:
    """Filter regions as anomalib ``RegionExtractor.post_process_bbox_detections``.

    Keeps persons only if asked (``labels == person_label``; foreground boxes have label 0), then boxes with
    ``area > min_bbox_area`` (square pixels, :func:`box_area`), then drops every box whose intersection with a
    larger kept box, divided by its own area, exceeds ``max_bbox_overlap``. The kept regions stay in input order.
    """
    keep = np.ones(len(regions), bool)
    if persons_only:
        keep &= regions.labels == person_label
    keep &= box_area(regions.boxes) > min_bbox_area
    r = _subset(regions, keep)
    if len(r) < 2:
        return r
    order = np.argsort(-box_area(r.boxes), kind="stable")
    b = r.boxes[order]
    areas = box_area(b)
    kept: list[int] = []
    for i in range(len(b)):
        if kept:
            k = b[kept]
            iw = np.clip(np.minimum(k[:, 2], b[i, 2]) - np.maximum(k[:, 0], b[i, 0]), 0, None)
            ih = np.clip(np.minimum(k[:, 3], b[i, 3]) - np.maximum(k[:, 1], b[i, 1]), 0, None)
            if np.any(iw * ih / max(areas[i], 1e-6) > max_bbox_overlap):
                continue
        kept.append(i)
    idx = np.sort(order[kept])
    return _subset(r, idx)


def _subset(r: Regions, idx: np.ndarray) -> Regions:
    return Regions(r.boxes[idx], r.scores[idx], r.labels[idx])


@OPERATORS.register("foreground_regions")
class ForegroundRegions(Operator):
    """Regions of a clip from AI-VAD's foreground detection (anomalib ``RegionExtractor`` with
    ``enable_foreground_detections`` and no detector): frame difference of the clip's first and last frame,
    connected components, then the area and overlap filters. Foreground boxes get label 0 and score 0.5.

    Regions already on the clip (from a detector operator that ran before) are kept, and the foreground boxes are
    added outside them, as in AI-VAD.

    With ``motion_source: flow_magnitude`` (streamad extension) the moving pixels come from the clip's optical
    flow instead (``optical_flow`` must run before this operator).

    Input/output: :class:`Clip`; sets ``clip.regions`` (boxes in the clip's frame pixels).
    """

    class Config(RegionFilterConfig):
        """Config of ``kind: foreground_regions`` (anomalib ``AiVadModel`` names and defaults, plus extensions)."""

        kind: Literal["foreground_regions"] = "foreground_regions"
        foreground_kernel_size: int = Field(
            3, ge=1, description="Gaussian blur kernel size in pixels before the frame difference (anomalib).")
        foreground_binary_threshold: int = Field(
            18, ge=0, le=255, description="Threshold on the 0-255 grayscale frame difference (anomalib).")
        dilate: int = Field(
            0, ge=0, description="streamad extension, not anomalib: dilate the motion mask with a square of this "
                                 "many pixels before connected components (joins fragments, grows boxes by about "
                                 "dilate/2 px per side). 0 = off.")
        close: int = Field(
            0, ge=0, description="streamad extension, not anomalib: morphological closing of the motion mask with a "
                                 "square of this many pixels (joins fragments without growing boxes). 0 = off.")
        motion_source: Literal["frame_difference", "flow_magnitude"] = Field(
            "frame_difference", description="streamad extension: 'frame_difference' = AI-VAD's thresholded pixel "
                                            "difference; 'flow_magnitude' = pixels whose optical-flow magnitude "
                                            "exceeds flow_magnitude_threshold (needs optical_flow before this "
                                            "operator).")
        flow_magnitude_threshold: float = Field(
            1.0, gt=0, description="streamad extension, used with motion_source: flow_magnitude: displacement in "
                                   "pixels between the clip's first and last frame above which a pixel moves.")

    def _mask(self, clip: Clip) -> np.ndarray:
        c = self.config
        if c.motion_source == "flow_magnitude":
            if clip.flow is None:
                raise ValueError(f"stream {self.stream_id}: foreground_regions with motion_source: flow_magnitude "
                                 "needs the optical_flow operator before it in the pipeline")
            return flow_motion_mask(clip.flow, c.flow_magnitude_threshold)
        return foreground_mask(clip.first.image, clip.last.image, c.foreground_kernel_size,
                               c.foreground_binary_threshold)

    def process(self, clip: Clip) -> list[Clip]:
        c = self.config
        prior = clip.regions if clip.regions is not None else Regions.empty()
        fg = mask_boxes(self._mask(clip), exclude=prior.boxes, dilate=c.dilate, close=c.close)
        regions = Regions(
            boxes=np.concatenate([prior.boxes, fg]).astype(np.float32),
            scores=np.concatenate([prior.scores, np.full(len(fg), 0.5, np.float32)]).astype(np.float32),
            labels=np.concatenate([prior.labels, np.zeros(len(fg), np.int64)]).astype(np.int64),
        )
        clip.regions = filter_boxes(regions, c.min_area(clip.last.image.shape), c.max_bbox_overlap)
        return [clip]
