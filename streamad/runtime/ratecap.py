"""Per-stream frame-rate cap: keep every Nth frame and/or at most F frames per second of stream time.

The cap runs in the stream's own source thread, before the frame enters the pipeline, so a capped camera costs
only its decoding. Dropped frames are counted by the runtime as ``streamad_frames_dropped_total{reason="rate_cap"}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamad.frames import Frame

__all__ = ["RateCap"]

# a frame may arrive this fraction of a period early and still be kept (timestamps of real cameras jitter)
_EARLY_TOLERANCE = 0.05


@dataclass
class RateCap:
    """Decides, frame by frame, which frames of one stream are processed.

    Args:
        every_nth: keep frames 0, N, 2N, ... of what the source delivers (``None`` or 1 = all).
        max_fps: keep at most this many frames per second of presentation time (``Frame.pts``, seconds):
            a frame is kept when at least ``1 / max_fps`` seconds (less 5% for timestamp jitter) passed since the
            last kept frame. When the timestamps go backwards (a camera that restarted its clock) the cap starts
            over from that frame. ``None`` = no limit.

    Raises:
        ValueError: ``every_nth < 1`` or ``max_fps <= 0``.
    """

    every_nth: int | None = None
    max_fps: float | None = None
    _seen: int = field(default=0, init=False)
    _last_pts: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.every_nth is not None and self.every_nth < 1:
            raise ValueError(f"every_nth must be >= 1, got {self.every_nth}")
        if self.max_fps is not None and not self.max_fps > 0:
            raise ValueError(f"max_fps must be > 0, got {self.max_fps}")

    @classmethod
    def of(cls, config: object) -> "RateCap | None":
        """The cap of a stream config (its ``every_nth`` and ``max_fps`` fields), or ``None`` when it sets none."""
        every_nth = getattr(config, "every_nth", None)
        max_fps = getattr(config, "max_fps", None)
        if (every_nth is None or every_nth == 1) and max_fps is None:
            return None
        return cls(every_nth, max_fps)

    def keep(self, frame: Frame) -> bool:
        """``True`` when ``frame`` is to be processed; ``False`` when the cap drops it."""
        n = self._seen
        self._seen += 1
        if self.every_nth is not None and n % self.every_nth:
            return False
        if self.max_fps is None:
            return True
        last = self._last_pts
        if last is not None and last <= frame.pts < last + (1.0 - _EARLY_TOLERANCE) / self.max_fps:
            return False
        self._last_pts = frame.pts
        return True
