"""The messages that flow through a pipeline.

Every message carries ``stream_id``, a frame index and the presentation (``pts``, seconds from the start of the
stream) and wall-clock (``wall_time``, Unix seconds when the source produced the frame) timestamps, so that
per-stage and end-to-end latency are measured rather than guessed.

Message types, in pipeline order:

* :class:`Frame`   one decoded frame, ``(H, W, 3) uint8 RGB``.
* :class:`Clip`    ``clip_length_in_frames`` consecutive frames and a target frame (anomalib's video clip).
                   Region, flow and feature operators attach their results to the clip.
* :class:`Scores`  the model's verdict on a clip's target frame: raw, smoothed and normalised frame score,
                   per-region scores, and any alert events the frame caused.
* :class:`Event`   one alert message (``start`` / ``update`` / ``end``).
* :class:`EndOfStream`  marks that a stream ended; stages flush that stream's state when they see it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Frame", "Clip", "Regions", "Scores", "Event", "EndOfStream", "TargetFrame", "ready_time", "scale_boxes"]


class TargetFrame:
    """Which frame of a clip a clip's result is attributed to (anomalib ``VideoTargetFrame``).

    ``first`` = index 0, ``last`` = index L-1 (anomalib's default), ``mid`` = ``int(L / 2)``,
    ``all`` = every frame of the clip.
    """

    FIRST = "first"
    LAST = "last"
    MID = "mid"
    ALL = "all"
    CHOICES = (FIRST, LAST, MID, ALL)

    @staticmethod
    def offsets(target: str, length: int) -> list[int]:
        """Offsets inside a clip of ``length`` frames that ``target`` selects.

        Raises:
            ValueError: ``target`` is not one of :attr:`CHOICES`.
        """
        if target == TargetFrame.FIRST:
            return [0]
        if target == TargetFrame.LAST:
            return [length - 1]
        if target == TargetFrame.MID:
            return [int(length / 2)]
        if target == TargetFrame.ALL:
            return list(range(length))
        raise ValueError(f"target_frame must be one of {TargetFrame.CHOICES}, got {target!r}")


@dataclass
class Frame:
    """One decoded video frame.

    Attributes:
        stream_id: stable id of the stream the frame belongs to (e.g. ``ped2/Test001``).
        index: 0-based frame index within the stream.
        pts: presentation time in seconds from the start of the stream.
        wall_time: Unix time (seconds) at which the source produced the frame.
        image: ``(H, W, 3) uint8`` RGB pixels.
        label: ground-truth frame label (0 normal, 1 anomalous) when the source knows it, else ``None``.
        mask: ground-truth ``(H, W) bool`` pixel mask when the source knows it, else ``None``.
        video: name of the video / clip within a dataset (e.g. ``Test001``), used as the group for
            grouped density estimation; defaults to ``stream_id``.
        timings: seconds spent per stage on this frame, filled in by the runtime.
        source_size: ``(width, height)`` of the frame as the source delivered it, before any resize (pixels);
            ``None`` means ``image`` is at source size. Alerts report boxes in source pixels.
        origin: identity of what a file stream reads (a hash of the file's path, size and modification time, see
            :meth:`~streamad.sources.pacing.FileSource.identity`): the same file gives the same ``origin`` on every
            run, so alert event ids are reproducible; ``None`` for live streams (their event ids are random).
        ready_time: see :func:`ready_time` (set by the runtime).
    """

    stream_id: str
    index: int
    pts: float
    wall_time: float
    image: np.ndarray
    label: int | None = None
    mask: np.ndarray | None = None
    video: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    source_size: tuple[int, int] | None = None
    origin: str | None = None
    ready_time: float | None = None

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass
class Regions:
    """Regions of interest in a frame (anomalib's region-extractor output).

    Attributes:
        boxes: ``(M, 4) float32`` boxes ``x1, y1, x2, y2`` in pixels of the frame the clip carries.
        scores: ``(M,) float32`` detector confidence (foreground boxes get 0.5, as in AI-VAD).
        labels: ``(M,) int64`` class ids (COCO ids for detections, 0 for foreground boxes).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    @staticmethod
    def empty() -> "Regions":
        """No regions."""
        return Regions(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class Clip:
    """``clip_length_in_frames`` consecutive frames of one stream (anomalib video clip semantics).

    Attributes:
        stream_id: the stream.
        frames: the clip's frames, oldest first (length L).
        target: the frame whose ground truth and result this clip stands for.
        regions: regions found on the clip (set by a region operator), boxes in ``target``-frame pixels.
        flow: ``(H, W, 2) float32`` optical flow from the first to the last frame in pixels (set by a flow operator).
        features: per-stream region features, e.g. ``{"velocity": (M, D) float32}`` (set by feature operators).
        keypoints: ``(M, 17, 3) float32`` COCO-17 keypoints of each region (x, y pixels, score), set by
            ``pose_features``; ``None`` without it.
        extra_targets: further frames this clip's result is attributed to: the frames at a stream's edges that no
            clip targets (``clip_window`` with ``pad_edges``), or every frame with ``target_frame: all``.
        ready_time: see :func:`ready_time` (set by the runtime).
    """

    stream_id: str
    frames: list[Frame]
    target: Frame
    regions: Regions | None = None
    flow: np.ndarray | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict)
    keypoints: np.ndarray | None = None
    extra_targets: list[Frame] = field(default_factory=list)
    ready_time: float | None = None

    @property
    def index(self) -> int:
        return self.target.index

    @property
    def pts(self) -> float:
        return self.target.pts

    @property
    def wall_time(self) -> float:
        return self.target.wall_time

    @property
    def timings(self) -> dict[str, float]:
        return self.target.timings

    @property
    def scored_frames(self) -> list[Frame]:
        """The target and the extra targets in stream order (ascending ``index``): the frames this clip's result is
        emitted for, so that the scores of a stream's first clip (target last, the frames before it extra) reach
        the sinks in order."""
        return sorted([self.target, *self.extra_targets], key=lambda f: f.index)

    @property
    def first(self) -> Frame:
        return self.frames[0]

    @property
    def last(self) -> Frame:
        return self.frames[-1]


@dataclass
class Scores:
    """A model's verdict on one frame.

    Attributes:
        stream_id, index, pts, wall_time: as in :class:`Frame` (of the scored target frame).
        raw_score: the model's raw frame score (meaning depends on the model, higher = more anomalous).
        score: the frame score after temporal smoothing (equals ``raw_score`` without a smoothing operator).
        normalized: min-max normalised score in ``[0, 1]``; 0.5 is the image threshold. ``None`` before the
            ``normalize`` operator.
        anomalous: ``normalized >= 0.5`` (``None`` before ``normalize``).
        boxes: ``(M, 4) float32`` regions scored, ``x1, y1, x2, y2`` source pixels.
        region_scores: ``(M,) float32`` raw per-region scores.
        contributions: per-region contribution of each feature stream, e.g. ``{"velocity": (M,) float32}``.
        label: ground-truth label of the frame when known.
        video: dataset video name (see :class:`Frame`).
        timings: seconds per stage.
        events: alert events that this frame caused (set by the ``alert`` operator).
        model: ``{"name": ..., "version": ..., "dir": ...}`` of the model that scored the frame (``dir``: its model
            directory, when loaded from one).
        postprocess: the fitted post-processing of that model (the ``threshold`` operator normalises with it, so
            each stream is normalised by its own model's statistics); ``None`` while fitting.
        origin: the scored frame's :attr:`Frame.origin` (``None`` for live streams).
        width, height: size of the source frame in pixels.
        image: ``(H, W, 3) uint8 RGB`` pixels of the scored target frame at the pipeline's frame size (after any
            ``resize``), a reference to the frame's array, not a copy; ``None`` when the producer had none.
            ``boxes`` are in source pixels (``width`` x ``height``): scale them by ``W / width`` and
            ``H / height`` to draw on it. For drawing sinks only: never serialised (alerts are
            :class:`Event` objects, whose JSON holds no pixels).
        ready_time: see :func:`ready_time` (set by the runtime).
    """

    stream_id: str
    index: int
    pts: float
    wall_time: float
    raw_score: float
    score: float
    boxes: np.ndarray
    region_scores: np.ndarray
    contributions: dict[str, np.ndarray] = field(default_factory=dict)
    normalized: float | None = None
    anomalous: bool | None = None
    label: int | None = None
    video: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    events: list["Event"] = field(default_factory=list)
    model: dict[str, str] = field(default_factory=dict)
    width: int = 0
    height: int = 0
    image: np.ndarray | None = field(default=None, repr=False)
    origin: str | None = None
    postprocess: Any = field(default=None, repr=False)
    ready_time: float | None = None


@dataclass
class Event:
    """One alert message of an event's lifecycle (``start``, ``update``, ``end``).

    The JSON form (:meth:`to_json`) is the alert schema documented in README.md. ``regions`` are dicts with
    ``box``, ``score``, ``contributions`` and ``reasons``; ``reasons`` is their union in words
    (:mod:`streamad.explain`), largest contribution first.
    """

    event_id: str
    stream_id: str
    type: str
    seq: int
    start_time: str
    time: str
    start_pts: float
    pts: float
    start_frame: int
    frame: int
    end_frame: int | None
    peak_score: float
    mean_score: float
    threshold: float
    model: dict[str, str]
    regions: list[dict[str, Any]]
    frames: int
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The alert as a JSON-serialisable dict (field order fixed)."""
        return dataclasses.asdict(self)


@dataclass
class EndOfStream:
    """Marks the end of ``stream_id``; ``error`` is set when the stream ended because of a failure.

    ``events`` are alert events raised by the end itself, after the stream's last frame was passed on: the ``end``
    of an event still open when the stream ended (see :meth:`streamad.parts.Operator.end_events`). Sinks deliver
    them in :meth:`streamad.parts.Sink.end_stream`.
    """

    stream_id: str
    error: str | None = None
    wall_time: float = 0.0
    events: list[Event] = field(default_factory=list)


def ready_time(msg: Frame | Clip | Scores) -> float:
    """Unix time (seconds) of the newest frame ``msg`` had to wait for: its ``ready_time`` once the runtime has set
    it, else its own ``wall_time``.

    A stage that emits an older message when a newer one arrives (centred smoothing passes frame ``t`` on when frame
    ``t + 3 sigma`` comes in; a clip targeting its first frame waits for its last) holds it by design. The runtime
    stamps each message a stage emits with the latest ``ready_time`` of the input that released it (the stream's
    end for what a flush releases), so ``delivery time - ready_time`` is the pipeline's own processing latency,
    free of those designed waits, while ``delivery time - wall_time`` stays the end-to-end latency.
    """
    r = msg.ready_time
    return msg.wall_time if r is None else max(r, msg.wall_time)


def scale_boxes(boxes: np.ndarray, frame_size: tuple[int, int], source_size: tuple[int, int] | None) -> np.ndarray:
    """``(M, 4)`` xyxy boxes from frame pixels (``(w, h)``) to source pixels (``source_size`` ``(W, H)``)."""
    if source_size is None or tuple(source_size) == tuple(frame_size):
        return boxes.astype(np.float32, copy=False)
    sx = source_size[0] / frame_size[0]
    sy = source_size[1] / frame_size[1]
    return (boxes * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)
