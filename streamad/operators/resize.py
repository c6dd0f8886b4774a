"""``resize``: frame conversion and resizing before the clip stages."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from streamad.frames import Frame
from streamad.parts import Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["Resize"]


@OPERATORS.register("resize")
class Resize(Operator):
    """Resize each frame (OpenCV ``INTER_AREA``) and optionally make it grayscale (3 equal channels).

    Input and output: :class:`~streamad.frames.Frame` with ``image`` ``(H, W, 3) uint8 RGB``. The source size is
    kept in ``Frame.source_size`` so that alerts report boxes in source pixels.

    Config:
        width, height: target size in pixels; give one of them to keep the aspect ratio.
        scale: alternatively, a factor (0.5 halves both sides).
        grayscale: convert to gray (replicated to 3 channels).
    """

    class Config(PartConfig):
        kind: Literal["resize"] = "resize"
        width: int | None = Field(None, gt=0)
        height: int | None = Field(None, gt=0)
        scale: float | None = Field(None, gt=0)
        grayscale: bool = False

        @model_validator(mode="after")
        def _one_size(self) -> "Resize.Config":
            if self.scale is not None and (self.width or self.height):
                raise ValueError("give either scale or width/height, not both")
            return self

    def _size(self, w: int, h: int) -> tuple[int, int]:
        c = self.config
        if c.scale is not None:
            return max(1, round(w * c.scale)), max(1, round(h * c.scale))
        if c.width and c.height:
            return c.width, c.height
        if c.width:
            return c.width, max(1, round(h * c.width / w))
        if c.height:
            return max(1, round(w * c.height / h)), c.height
        return w, h

    def process(self, frame: Frame) -> list[Frame]:
        img = frame.image
        h, w = img.shape[:2]
        nw, nh = self._size(w, h)
        if (nw, nh) != (w, h):
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
            if frame.source_size is None:
                frame.source_size = (w, h)
        if self.config.grayscale:
            g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
            img = np.repeat(g[:, :, None], 3, axis=2)
        frame.image = img
        return [frame]
