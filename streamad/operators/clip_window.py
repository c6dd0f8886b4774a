"""``clip_window``: sliding clips over a stream, with anomalib's clip indexing semantics."""

from __future__ import annotations

from collections import deque
from typing import Literal

from pydantic import Field

from streamad.frames import Clip, Frame, TargetFrame
from streamad.parts import Operator, PartConfig
from streamad.registry import OPERATORS

__all__ = ["ClipWindow"]


MAX_CLIP_LENGTH = 1000
"""Longest clip (frames); a clip holds its decoded frames in memory (AI-VAD uses 2, anomalib's video datasets 2-16)."""


@OPERATORS.register("clip_window")
class ClipWindow(Operator):
    """Cut a frame stream into clips (anomalib ``ClipsIndexer`` / torchvision ``VideoClips`` unfold semantics).

    Clip ``k`` holds frames ``[k * frames_between_clips, k * frames_between_clips + clip_length_in_frames)``; it is
    emitted as soon as its last frame arrives. ``target_frame`` picks the frame the clip's result stands for
    (anomalib ``VideoTargetFrame``: ``first`` index 0, ``last`` index L-1, ``mid`` ``int(L / 2)``, ``all``).

    Streaming addition (not in anomalib, which scores only clip targets): with ``pad_edges`` the frames at the start
    of a stream that precede the first target (and at the end, those after the last target) are attributed to the
    nearest clip through ``Clip.extra_targets``, so that every frame of a stream gets a score. A stream shorter than
    one clip is padded by repeating its last frame.

    Input: :class:`Frame`. Output: :class:`Clip` (0 or 1 per frame; 1 more at end of stream with ``pad_edges``).
    """

    class Config(PartConfig):
        kind: Literal["clip_window"] = "clip_window"
        clip_length_in_frames: int = Field(2, ge=1, le=MAX_CLIP_LENGTH)
        frames_between_clips: int = Field(1, ge=1, le=100_000)
        target_frame: Literal["first", "last", "mid", "all"] = "last"
        pad_edges: bool = True

    def __init__(self, config: "ClipWindow.Config", shared: object, stream_id: str) -> None:
        super().__init__(config, shared, stream_id)
        self.length = config.clip_length_in_frames
        self.stride = config.frames_between_clips
        self.buffer: deque[Frame] = deque(maxlen=self.length)
        self.seen = 0
        self.last_target: int = -1  # stream position of the last frame given a result

    def _clip(self, frames: list[Frame], start_pos: int) -> Clip:
        offsets = TargetFrame.offsets(self.config.target_frame, self.length)
        targets = [frames[o] for o in offsets]
        extra = targets[1:]
        if self.config.pad_edges and self.last_target < 0:
            # frames before the first target of the stream
            extra = [f for f in frames[: offsets[0]]] + extra
        clip = Clip(stream_id=self.stream_id, frames=list(frames), target=targets[0], extra_targets=extra)
        self.last_target = start_pos + offsets[-1]
        return clip

    def process(self, frame: Frame) -> list[Clip]:
        self.buffer.append(frame)
        self.seen += 1
        start = self.seen - self.length  # stream position of the clip's first frame
        if start < 0 or start % self.stride != 0:
            return []
        return [self._clip(list(self.buffer), start)]

    def flush(self) -> list[Clip]:
        if not self.config.pad_edges or not self.buffer:
            return []
        frames = list(self.buffer)
        if self.seen < self.length:
            frames = frames + [frames[-1]] * (self.length - len(frames))
        tail_start = self.seen - len(self.buffer)
        untargeted = [f for i, f in enumerate(self.buffer) if tail_start + i > self.last_target]
        if not untargeted:
            return []
        return [Clip(stream_id=self.stream_id, frames=frames, target=untargeted[0], extra_targets=untargeted[1:])]
