"""``annotated_video`` sink: one MP4 per stream with the scored regions, the frame score and open alerts drawn on
the frames (a streamad step, for reviewing what the model saw; anomalib draws anomaly maps on images only).

Each scored frame that carries pixels (:attr:`streamad.frames.Scores.image`) becomes one video frame, drawn with
OpenCV and encoded with PyAV (``libx264``, else ``mpeg4``; ``yuv420p``):

* every region's box, coloured by its score (:func:`score_color`: green below the threshold, yellow at it, red at
  the top of the scale), with a short label: the normalised region score and the region's reasons
  (:func:`streamad.explain.region_reasons`, i.e. the feature streams that drove it, else the top one);
* the frame score (normalised, 0-1) and the threshold as text, and a score bar along the bottom edge with a white
  tick at the threshold;
* a red border while an alert event is open on the stream (from its ``start`` to its ``end`` message) or the frame
  is anomalous.

The colour scale: on the normalised scale (``Scores.normalized`` set, i.e. after the ``threshold`` operator, which
normalises region scores too) a region score ``s`` maps to ``p = 0.5 * s / t`` below the threshold ``t`` and
``p = 0.5 + 0.5 * (s - t) / (1 - t)`` above it (clipped to 0-1), and ``p`` runs green (0) -> yellow (0.5, the
threshold) -> red (1). Without normalisation (raw model units have no threshold) ``p`` is the region score divided by
the frame's highest region score, so the highest region is red.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import cv2
import numpy as np
from pydantic import Field, field_validator

from streamad.errors import ConfigError
from streamad.explain import DEFAULT_THRESHOLD, region_reasons
from streamad.frames import EndOfStream, Scores
from streamad.parts import BuildContext, Sink, SinkConfig
from streamad.registry import SINKS

__all__ = ["AnnotatedVideoSink", "annotate", "score_color", "color_position", "safe_file_name", "pick_codec"]

log = logging.getLogger("streamad.sinks.annotated_video")

_CODECS = ("libx264", "mpeg4")
_FALLBACK_FPS = 10.0
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE, _BLACK, _RED = (255, 255, 255), (0, 0, 0), (255, 0, 0)


def pick_codec(preferred: str = "auto") -> str:
    """The encoder to use: ``preferred``, or with ``"auto"`` the first of ``libx264``, ``mpeg4`` that PyAV's
    bundled FFmpeg can encode with.

    Raises:
        ConfigError: the named encoder (or, with ``auto``, neither) is available.
    """
    names = _CODECS if preferred == "auto" else (preferred,)
    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # av.codec.codec.UnknownCodecError: not compiled into this FFmpeg
            continue
    raise ConfigError(f"annotated_video sink: codec {preferred!r}: no encoder among {list(names)} in PyAV's FFmpeg "
                      f"{av.__version__}")


def safe_file_name(stream_id: str) -> str:
    """``stream_id`` as one file-name component: characters other than letters, digits, ``.``, ``_``, ``-``
    become ``_`` (``UCSDped2/Test001`` -> ``UCSDped2_Test001``); leading dots are dropped; empty -> ``stream``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", stream_id).lstrip(".")
    return name or "stream"


def color_position(score: float, threshold: float | None, top: float = 1.0) -> float:
    """Where a region score sits on the green -> yellow -> red scale, in ``[0, 1]`` (see the module doc).

    Args:
        score: region score (normalised when ``threshold`` is given, else raw).
        threshold: the normalised decision threshold (``0 < threshold < 1``, mapped to 0.5); ``None``: raw
            scores, placed relative to ``top`` (the frame's highest region score).
        top: highest raw region score of the frame (used only without ``threshold``).
    """
    if not np.isfinite(score):
        return 1.0
    if threshold is None:
        p = score / top if top > 0 else 0.0
    elif score <= threshold:
        p = 0.5 * score / threshold if threshold > 0 else 0.5
    else:
        p = 0.5 + 0.5 * (score - threshold) / (1.0 - threshold) if threshold < 1 else 1.0
    return float(min(1.0, max(0.0, p)))


def score_color(p: float) -> tuple[int, int, int]:
    """RGB colour of scale position ``p`` in ``[0, 1]``: green ``(0, 255, 0)`` at 0, yellow ``(255, 255, 0)`` at
    0.5, red ``(255, 0, 0)`` at 1 (linear in between)."""
    p = min(1.0, max(0.0, float(p)))
    return int(round(min(255.0, 510.0 * p))), int(round(min(255.0, 510.0 * (1.0 - p)))), 0


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int]) -> None:
    """``text`` with a dark outline so that it reads on any background (``org`` = bottom-left, pixels)."""
    thick = max(1, int(round(scale * 1.5)))
    cv2.putText(img, text, org, _FONT, scale, _BLACK, thick + 1, cv2.LINE_AA)
    cv2.putText(img, text, org, _FONT, scale, color, thick, cv2.LINE_AA)


def _region_label(s: Scores, i: int, explain_threshold: float) -> str:
    contributions = {k: float(v[i]) for k, v in s.contributions.items() if i < len(v)}
    words = region_reasons(contributions, explain_threshold)
    return " ".join([f"{float(s.region_scores[i]):.2f}", ", ".join(words)]).strip()


def annotate(s: Scores, threshold: float = 0.5, alert_open: bool = False,
             explain_threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Draw one scored frame (see the module doc) on a copy of its pixels.

    Args:
        s: the scored frame; ``s.image`` ``(H, W, 3) uint8 RGB`` (a ``(H, W)`` gray image is accepted), boxes in
            source pixels (``s.width`` x ``s.height``; scaled to the image here).
        threshold: normalised decision threshold, drawn as text and as the score bar's tick.
        alert_open: an alert event is open on the stream (draw the red border).
        explain_threshold: contribution from which a feature stream is named in a region's label.

    Returns:
        ``(H, W, 3) uint8 RGB``, a new array (``s.image`` is not modified).

    Raises:
        ValueError: ``s.image`` is ``None`` or not an ``(H, W)`` / ``(H, W, 3)`` uint8 image.
    """
    img = s.image
    if img is None or img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"stream {s.stream_id!r} frame {s.index}: Scores.image must be an (H, W, 3) uint8 RGB "
                         f"array, got {None if img is None else (img.shape, str(img.dtype))}")
    out = np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img.copy())
    h, w = out.shape[:2]
    unit = max(1.0, min(h, w) / 120.0)  # line widths and text scale follow the frame size (2 px at 240 rows)
    line = max(2, int(round(unit)))
    font = 0.19 * unit  # 0.38 at 240 rows, 1.7 at 1080
    sx = w / s.width if s.width > 0 else 1.0
    sy = h / s.height if s.height > 0 else 1.0
    normalised = s.normalized is not None
    rscores = np.asarray(s.region_scores, np.float64)
    top = float(rscores.max()) if len(rscores) else 0.0
    for i in np.argsort(rscores, kind="stable"):  # highest last, so it is drawn on top
        x1, y1, x2, y2 = (int(round(v)) for v in np.asarray(s.boxes[i], np.float64) * (sx, sy, sx, sy))
        color = score_color(color_position(float(rscores[i]), threshold if normalised else None, top))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, line, cv2.LINE_8)
        label = _region_label(s, int(i), explain_threshold)
        (tw, th), base = cv2.getTextSize(label, _FONT, font, 1)
        ty = y1 - line if y1 - th - base - line >= 0 else y2 + th + line  # above the box, else below it
        cv2.rectangle(out, (x1, ty - th - base // 2), (x1 + tw + 2, ty + base // 2), color, cv2.FILLED)
        cv2.putText(out, label, (x1 + 1, ty), _FONT, font, _BLACK, 1, cv2.LINE_AA)
    bar_h = max(4, int(round(3 * unit)))
    score_text = f"score {s.normalized:.2f}  thr {threshold:.2f}" if normalised else f"raw {s.score:.4g}"
    text_h = cv2.getTextSize("0", _FONT, font, 1)[0][1]
    _text(out, score_text, (2 * line + 2, 2 * line + 2 + text_h), font, _WHITE)
    _text(out, f"frame {s.index}  {s.pts:.2f} s", (2 * line + 2, 2 * line + 4 + 2 * text_h + text_h // 2), font,
          _WHITE)
    bx1, bx2, by2 = line + 4, w - line - 4, h - line - 4
    by1 = by2 - bar_h
    cv2.rectangle(out, (bx1, by1), (bx2, by2), (40, 40, 40), cv2.FILLED)
    if normalised:
        value = min(1.0, max(0.0, float(s.normalized)))  # type: ignore[arg-type]
        fill = bx1 + int(round((bx2 - bx1) * value))
        cv2.rectangle(out, (bx1, by1), (fill, by2), score_color(color_position(value, threshold)), cv2.FILLED)
        tick = bx1 + int(round((bx2 - bx1) * threshold))
        cv2.line(out, (tick, by1 - 2), (tick, by2 + 2), _WHITE, max(1, line // 2))
    if alert_open or bool(s.anomalous):
        cv2.rectangle(out, (0, 0), (w - 1, h - 1), _RED, 4 * line)  # centred on the edge: 2 * line inside
    return out


def _even(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``img`` padded with black on the right / bottom to even sides (``yuv420p`` needs them), then resized to the
    file's ``size`` ``(w, h)`` if it differs (a stream that changed resolution); ``size`` ``None``: no resize."""
    h, w = img.shape[:2]
    if w % 2 or h % 2:
        img = cv2.copyMakeBorder(img, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=_BLACK)
    if size is not None and (img.shape[1], img.shape[0]) != size:
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img


@dataclass
class _Pending:
    """A drawn frame waiting for the writer (which needs the frame rate from the next frame's pts)."""

    image: np.ndarray
    pts: float


class _StreamVideo:
    """The MP4 file of one stream: opened at the first frame it can place in time, closed at end of stream."""

    def __init__(self, path: Path, codec: str, fps: float | None) -> None:
        self.path = path
        self.codec = codec
        self.fps = fps
        self.pending: _Pending | None = None
        self.container: Any = None
        self.stream: Any = None
        self.size: tuple[int, int] | None = None
        self.first_pts = 0.0
        self.last_index = -1
        self.frames = 0
        self.alert_open = False

    def add(self, image: np.ndarray, pts: float) -> None:
        if self.container is None:
            if self.fps is None and self.pending is None:
                self.pending = _Pending(image, pts)
                return
            if self.fps is None:
                assert self.pending is not None
                dt = pts - self.pending.pts
                self.fps = 1.0 / dt if 0 < dt <= 1.0 else _FALLBACK_FPS
            self._open(self.pending.image if self.pending is not None else image)
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self._encode(pending.image, pending.pts)
        self._encode(image, pts)

    def _open(self, first: np.ndarray) -> None:
        first = _even(first, None)
        h, w = first.shape[:2]
        self.size = (w, h)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rate = Fraction(self.fps or _FALLBACK_FPS).limit_denominator(1001)
        # fragmented MP4: a stream that never ends (a camera) or a killed process still leaves a playable file
        self.container = av.open(str(self.path), mode="w", format="mp4",
                                 options={"movflags": "frag_keyframe+empty_moov+default_base_moof"})
        opts = {"crf": "20", "preset": "veryfast"} if self.codec == "libx264" else {}
        self.stream = self.container.add_stream(self.codec, rate=rate, options=opts)
        self.stream.width, self.stream.height = w, h
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.gop_size = max(1, int(round(2 * float(rate))))
        if self.codec != "libx264":
            self.stream.bit_rate = max(1_000_000, int(w * h * float(rate) * 0.6))

    def _encode(self, image: np.ndarray, pts: float) -> None:
        if self.frames == 0:
            self.first_pts = pts
        index = max(self.last_index + 1, int(round((pts - self.first_pts) * float(self.stream.codec_context.rate))))
        frame = av.VideoFrame.from_ndarray(_even(image, self.size), format="rgb24")
        frame.pts = index
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.last_index = index
        self.frames += 1

    def close(self) -> None:
        """Write what is pending, flush the encoder and close the file (idempotent)."""
        if self.pending is not None and self.container is None:
            self.fps = self.fps or _FALLBACK_FPS
            pending, self.pending = self.pending, None
            self._open(pending.image)
            self._encode(pending.image, pending.pts)
        if self.container is None:
            return
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
        finally:
            self.container.close()
            self.container = None


@SINKS.register("annotated_video")
class AnnotatedVideoSink(Sink):
    """Writes one annotated MP4 per stream (see the module doc for what is drawn and the colour scale).

    Frames are placed in time by their pts: file frame ``round((pts - first pts) * fps)`` (at least one after the
    previous), so frames a rate cap dropped leave their time in the video. Frames without pixels
    (``Scores.image`` ``None``) are skipped (logged once per stream). A stream whose frame size changes is resized
    to its first size; odd sides are padded with black to even ones. The file is closed at the stream's end or when
    the sink closes; a stream that starts again overwrites its file.
    """

    class Config(SinkConfig):
        """``path``: file template with a ``{stream}`` placeholder, replaced by the stream id made a safe file name
        (``runs/annotated/{stream}.mp4``; ``UCSDped2/Test001`` -> ``UCSDped2_Test001``); relative paths are
        relative to the working directory, parent folders are created. ``fps``: frame rate of the files
        (``None``: from the pts difference of a stream's first two frames, 10 when that is not in ``(0, 1]``
        seconds). ``threshold``: normalised decision threshold drawn (and the colour scale's midpoint).
        ``explain_threshold``: contribution from which a feature stream is named in a box label (as in
        ``alert``). ``codec``: ``auto`` (``libx264``, else ``mpeg4``), ``libx264`` or ``mpeg4``."""

        kind: Literal["annotated_video"] = "annotated_video"
        path: str
        fps: float | None = Field(None, gt=0)
        threshold: float = Field(0.5, gt=0, lt=1)
        explain_threshold: float = Field(DEFAULT_THRESHOLD, ge=0)
        codec: Literal["auto", "libx264", "mpeg4"] = "auto"

        @field_validator("path")
        @classmethod
        def _has_placeholder(cls, v: str) -> str:
            if "{stream}" not in v:
                raise ValueError(f"must contain the placeholder {{stream}} (one file per stream), got {v!r}")
            return v

    def __init__(self, config: Config, ctx: BuildContext) -> None:
        """Raises:
            ConfigError: no encoder for ``codec``, or the folder before ``{stream}`` cannot be created / written.
        """
        super().__init__(config, ctx)
        self.codec = pick_codec(config.codec)
        fixed = config.path.split("{stream}")[0]
        folder = Path(fixed).expanduser()  # the folder part before the placeholder
        if fixed and not fixed.endswith(("/", os.sep)):
            folder = folder.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"annotated_video sink: path {config.path}: cannot create folder {folder}: {e}") from e
        if not os.access(folder, os.W_OK):
            raise ConfigError(f"annotated_video sink: path {config.path}: folder {folder} is not writable")
        self._videos: dict[str, _StreamVideo] = {}
        self._names: dict[str, str] = {}  # file name -> the stream id that owns it
        self._no_image: set[str] = set()
        self._lock = threading.Lock()

    def path_for(self, stream_id: str) -> Path:
        """The file of ``stream_id``; a second stream whose safe name collides gets a hash suffix."""
        name = safe_file_name(stream_id)
        owner = self._names.setdefault(name, stream_id)
        if owner != stream_id:
            name = f"{name}-{hashlib.sha1(stream_id.encode()).hexdigest()[:8]}"
            self._names.setdefault(name, stream_id)
        return Path(self.config.path.replace("{stream}", name)).expanduser()

    def write(self, scores: Scores) -> None:
        """Draw and encode the frame (frames without ``image`` are skipped)."""
        with self._lock:
            video = self._videos.get(scores.stream_id)
            if video is None:
                video = _StreamVideo(self.path_for(scores.stream_id), self.codec, self.config.fps)
                self._videos[scores.stream_id] = video
            for event in scores.events:
                video.alert_open = event.type != "end"
            if scores.image is None:
                if scores.stream_id not in self._no_image:
                    self._no_image.add(scores.stream_id)
                    log.warning("annotated_video sink: stream %s: scored frames carry no pixels (Scores.image); "
                                "they are not written", scores.stream_id)
                return
            c = self.config
            video.add(annotate(scores, c.threshold, video.alert_open, c.explain_threshold), scores.pts)

    def end_stream(self, eos: EndOfStream) -> None:
        """Close the stream's file."""
        with self._lock:
            video = self._videos.pop(eos.stream_id, None)
            if video is not None:
                video.close()

    def close(self) -> None:
        """Close every file still open (idempotent)."""
        with self._lock:
            videos, self._videos = list(self._videos.values()), {}
            for video in videos:
                try:
                    video.close()
                except Exception as exc:  # one broken file must not keep the others open
                    log.error("annotated_video sink: closing %s failed: %s", video.path, exc)
