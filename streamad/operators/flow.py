"""``optical_flow``: dense optical flow between a clip's first and last frame (OpenCV DIS)."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from streamad.frames import Clip
from streamad.parts import Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["OpticalFlow", "DIS_PRESETS"]

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@OPERATORS.register("optical_flow")
class OpticalFlow(Operator):
    """Dense optical flow from the clip's first to its last frame.

    Stands in for AI-VAD's ``FlowExtractor`` (torchvision RAFT-large, which needs downloaded weights) with OpenCV's
    DIS optical flow (Kroeger et al., "Fast Optical Flow using Dense Inverse Search", ECCV 2016) on grayscale
    frames. One DIS instance per stream (it is stateful and not thread-safe).

    Sets ``clip.flow``: ``(H, W, 2) float32``, channel 0 = x displacement, 1 = y displacement, in pixels of the
    clip's frames over the clip (first to last frame).

    The flow spans the whole clip, so ``clip_window.clip_length_in_frames`` sets the frame spacing: with L frames
    the displacement is about L - 1 times the per-frame motion (a better signal-to-noise ratio for slow objects).
    """

    class Config(PartConfig):
        """Config of ``kind: optical_flow`` (a streamad stand-in for AI-VAD's RAFT ``FlowExtractor``)."""

        kind: Literal["optical_flow"] = "optical_flow"
        method: Literal["dis", "farneback"] = Field(
            "dis", description="'dis' = OpenCV DIS optical flow; 'farneback' = OpenCV Farneback (slower).")
        preset: Literal["ultrafast", "fast", "medium"] = Field(
            "fast", description="DIS preset: speed/accuracy trade-off (on 360x240 on one core about 0.8, 1.6 and "
                                "9 ms per flow field).")
        scale: float = Field(
            1.0, gt=0, le=1, description="Compute the flow on frames resized by this factor (1 = full size); the "
                                         "flow is resized back and given in full-size pixels.")

    def __init__(self, config: "OpticalFlow.Config", shared: object, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        self.dis = cv2.DISOpticalFlow_create(DIS_PRESETS[config.preset]) if config.method == "dis" else None

    def compute(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Flow ``(H, W, 2) float32`` in pixels from ``first`` to ``last`` (both ``(H, W, 3) uint8 RGB``)."""
        a = cv2.cvtColor(first, cv2.COLOR_RGB2GRAY)
        b = cv2.cvtColor(last, cv2.COLOR_RGB2GRAY)
        h, w = a.shape
        s = self.config.scale
        if s != 1.0:
            size = (max(8, round(w * s)), max(8, round(h * s)))
            a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
            b = cv2.resize(b, size, interpolation=cv2.INTER_AREA)
        if self.dis is not None:
            flow = self.dis.calc(a, b, None)
        else:
            flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        if s != 1.0:
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / s
        return flow.astype(np.float32, copy=False)

    def process(self, clip: Clip) -> list[Clip]:
        clip.flow = self.compute(clip.first.image, clip.last.image)
        return [clip]
