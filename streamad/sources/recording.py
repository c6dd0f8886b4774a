"""Recordings of live streams: a :class:`Recorder` writes the frames a source yields to one MP4 file, atomically.

Layout (``fit.record_dir``, :func:`recording_path`)::

    <record_dir>/<split>/<stream id made a file name>/<UTC start time>.mp4
    e.g. runs/cam/recordings/train/10.0.0.5_554_stream1/20261205T043512.123456Z.mp4

The names sort by time, so the newest recording of a stream is the last name (:func:`newest_recording`). A file is
written under a hidden temporary name (``.<name>.part``) and renamed into place only once complete and fsync'd: a
crash leaves no half file under a final name (a ``.part`` file is never picked up).

Encoding: PyAV (a dependency of streamad), H.264 (``libx264``, CRF 18) else MPEG-4 Part 2, ``yuv420p``, at the
stream's frame rate; frames are placed by their ``pts`` so gaps (reconnects) keep their length. Odd frame sizes are
cropped by one row/column (``yuv420p`` needs even sizes).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from streamad.fsync import fsync_path

__all__ = ["Recorder", "recording_path", "recording_folder", "newest_recording", "safe_name", "SPLITS"]

SPLITS = ("train", "validation")
"""The sub-folders of ``fit.record_dir``: one per fit section."""
_CODECS = ("libx264", "mpeg4")
_SUFFIX = ".mp4"


def safe_name(stream_id: str) -> str:
    """``stream_id`` as one file-name component: characters other than letters, digits, ``.``, ``_``, ``-``
    become ``_`` (``10.0.0.5:554/stream1`` -> ``10.0.0.5_554_stream1``); leading dots dropped; empty -> ``stream``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", stream_id).lstrip(".") or "stream"


def recording_folder(record_dir: str | Path, split: str, stream_id: str) -> Path:
    """``<record_dir>/<split>/<safe_name(stream_id)>``: where the recordings of one stream of one fit section go.

    Raises:
        ValueError: ``split`` is not ``train`` or ``validation``.
    """
    if split not in SPLITS:
        raise ValueError(f"recording split must be one of {SPLITS}, got {split!r}")
    return Path(record_dir) / split / safe_name(stream_id)


def recording_path(record_dir: str | Path, split: str, stream_id: str, when: _dt.datetime | None = None) -> Path:
    """The file a recording started at ``when`` (UTC; default now) gets:
    ``<recording_folder>/<YYYYmmddTHHMMSS.ffffffZ>.mp4``."""
    when = when or _dt.datetime.now(_dt.timezone.utc)
    stamp = when.astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return recording_folder(record_dir, split, stream_id) / f"{stamp}{_SUFFIX}"


def newest_recording(folder: str | Path) -> Path | None:
    """The newest complete recording in ``folder`` (the last ``*.mp4`` name; temporary ``.part`` files and hidden
    names are ignored), or ``None`` when there is none or the folder does not exist."""
    p = Path(folder)
    if not p.is_dir():
        return None
    names = sorted(f.name for f in p.iterdir() if f.is_file() and f.suffix == _SUFFIX and not f.name.startswith("."))
    return p / names[-1] if names else None


def _codec() -> str:
    for name in _CODECS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # not compiled into PyAV's FFmpeg
            continue
    raise RuntimeError(f"no video encoder among {list(_CODECS)} in PyAV's FFmpeg {av.__version__}")


class Recorder:
    """Writes frames to ``path`` (an MP4), atomically: under ``.<name>.part`` until :meth:`close` renames it.

    Args:
        path: the final file (its folder is created).
        fps: frame rate to encode at (frames per second; the source's declared rate; 10 when unknown or <= 0).

    Use: ``add(image, pts)`` per frame, then ``close()`` (returns the final path) or ``abort()`` (removes the
    temporary file). A context manager: leaving the block with an exception aborts, otherwise closes.
    """

    def __init__(self, path: str | Path, fps: float | None) -> None:
        self.path = Path(path)
        self.part = self.path.with_name(f".{self.path.name}.part")
        self.rate = Fraction(fps if fps and fps > 0 else 10.0).limit_denominator(1001)
        self.frames = 0
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None
        self._first_pts = 0.0
        self._last_index = -1

    def _open(self, h: int, w: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        codec = _codec()
        self._container = av.open(str(self.part), mode="w", format="mp4")
        opts = {"crf": "18", "preset": "veryfast"} if codec == "libx264" else {}
        self._stream = self._container.add_stream(codec, rate=self.rate, options=opts)
        self._stream.width, self._stream.height = w, h
        self._stream.pix_fmt = "yuv420p"
        if codec != "libx264":
            self._stream.bit_rate = max(1_000_000, int(w * h * float(self.rate) * 0.6))
        self._size = (w, h)

    def add(self, image: np.ndarray, pts: float) -> None:
        """Append one frame: ``image`` ``(H, W, 3) uint8`` RGB, ``pts`` its presentation time (seconds). A frame
        whose time falls on an already written slot takes the next one (the file never goes backwards)."""
        if self._container is None:
            self._open(image.shape[0] - image.shape[0] % 2, image.shape[1] - image.shape[1] % 2)
            self._first_pts = pts
        w, h = self._size  # type: ignore[misc]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="rgb24")
        index = max(self._last_index + 1, int(round((pts - self._first_pts) * float(self.rate))))
        frame.pts = index
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._last_index = index
        self.frames += 1

    def close(self) -> Path | None:
        """Flush the encoder, fsync the file, rename it to :attr:`path` and fsync the folder. Returns the path, or
        ``None`` when no frame was added (then no file is left)."""
        if self._container is None:
            return None
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
        except BaseException:
            self.abort()
            raise
        self._container = None
        fsync_path(self.part)
        os.replace(self.part, self.path)
        fsync_path(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Drop the recording: close and delete the temporary file (idempotent)."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None
        self.part.unlink(missing_ok=True)

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
