"""``optical_flow``: dense optical flow between a clip's first and last frame (OpenCV DIS by default, or
torchvision RAFT from local weights as anomalib AI-VAD)."""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from streamad.frames import Clip
from streamad.parts import BuildContext, Operator, PartConfig
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

    By default stands in for AI-VAD's ``FlowExtractor`` (torchvision RAFT-large, whose weights must be downloaded)
    with OpenCV's DIS optical flow (Kroeger et al., "Fast Optical Flow using Dense Inverse Search", ECCV 2016) on
    grayscale frames; one DIS instance per stream (it is stateful and not thread-safe). ``method: raft`` runs
    anomalib's ``FlowExtractor`` itself (:class:`~streamad.models.components.raft.RaftFlow`) from a local state dict
    given as ``weights``, one network shared by all streams.

    Sets ``clip.flow``: ``(H, W, 2) float32``, channel 0 = x displacement, 1 = y displacement, in pixels of the
    clip's frames over the clip (first to last frame).

    The flow spans the whole clip, so ``clip_window.clip_length_in_frames`` sets the frame spacing: with L frames
    the displacement is about L - 1 times the per-frame motion (a better signal-to-noise ratio for slow objects).
    """

    class Config(PartConfig):
        """Config of ``kind: optical_flow`` (DIS: a streamad stand-in for AI-VAD's RAFT ``FlowExtractor``; raft:
        the ``FlowExtractor`` itself, from local weights)."""

        kind: Literal["optical_flow"] = "optical_flow"
        method: Literal["dis", "farneback", "raft"] = Field(
            "dis", description="'dis' = OpenCV DIS optical flow; 'farneback' = OpenCV Farneback (slower); 'raft' = "
                               "torchvision RAFT as anomalib AI-VAD (needs weights; slow on a CPU: raft_large took "
                               "0.5 s per flow field at raft_size [128, 192] on one core, and the cost grows "
                               "with raft_size's area).")
        preset: Literal["ultrafast", "fast", "medium"] = Field(
            "fast", description="DIS preset: speed/accuracy trade-off (on 360x240 on one core about 0.8, 1.6 and "
                                "9 ms per flow field).")
        scale: float = Field(
            1.0, gt=0, le=1, description="dis / farneback: compute the flow on frames resized by this factor (1 = "
                                         "full size); the flow is resized back and given in full-size pixels.")
        weights: str | None = Field(
            None, validate_default=True,
            description="raft: local torchvision state dict of raft_large (anomalib's Raft_Large_Weights file, "
                        "e.g. raft_large_C_T_SKHT_V2-ff5fadd5.pth) or of raft_small; nothing is downloaded.")
        raft_model: Literal["large", "small"] = Field(
            "large", description="raft: 'large' (anomalib) or 'small' (faster); must match the weights file.")
        raft_size: tuple[int, int] = Field(
            (520, 960), description="raft: (H, W) in pixels the frames are resized to, multiples of 8 (anomalib "
                                    "[520, 960]); the flow is resized back and given in frame pixels.")

        @field_validator("weights")
        @classmethod
        def _raft_needs_weights(cls, v: str | None, info: ValidationInfo) -> str | None:
            if v is None and info.data.get("method") == "raft":
                raise ValueError("method 'raft' needs weights: the path of a local raft_large (or raft_small) state "
                                 "dict (nothing is downloaded)")
            return v

        @field_validator("raft_size")
        @classmethod
        def _multiple_of_8(cls, v: tuple[int, int]) -> tuple[int, int]:
            if any(s <= 0 or s % 8 for s in v):
                raise ValueError(f"raft_size must be [H, W] positive multiples of 8 pixels, got {list(v)}")
            return v

    @classmethod
    def create_shared(cls, config: "OpticalFlow.Config", ctx: BuildContext) -> Any:
        if config.method != "raft":
            return None
        from streamad.models.components.raft import RaftFlow

        return RaftFlow(config.weights, config.raft_model, config.raft_size)  # type: ignore[arg-type]

    def __init__(self, config: "OpticalFlow.Config", shared: object, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        if config.method == "raft" and shared is None:
            raise ValueError(f"stream {stream_id}: optical_flow method 'raft' needs the shared RAFT network "
                             f"(OpticalFlow.create_shared)")
        self.dis = cv2.DISOpticalFlow_create(DIS_PRESETS[config.preset]) if config.method == "dis" else None

    def compute(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Flow ``(H, W, 2) float32`` in pixels from ``first`` to ``last`` (both ``(H, W, 3) uint8 RGB``)."""
        if self.config.method == "raft":
            return self.shared(first, last)
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
