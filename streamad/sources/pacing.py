"""Playback of file sources: real-time pacing, ``max_frames`` and a thread-safe ``close()``.

Every file-backed source (video files, image folders, dataset videos) derives from :class:`FileSource` and only
implements :meth:`FileSource.decode`; pacing to the presentation timestamps (``realtime: true``, as a camera would
deliver the frames) and stopping after ``max_frames`` live here, once.
"""

from __future__ import annotations

import abc
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from streamad.errors import ConfigError
from streamad.frames import Frame
from streamad.parts import Source, SourceConfig

__all__ = ["paced", "FileSource", "check_source_config", "file_identity"]


def paced(frames: Iterable[Frame], *, realtime: bool = False, max_frames: int | None = None,
          stop: threading.Event | None = None, clock: Callable[[], float] = time.monotonic) -> Iterator[Frame]:
    """Re-yield ``frames``, optionally at the pace of their timestamps, at most ``max_frames`` of them.

    Args:
        frames: frames in stream order (their ``pts`` in seconds).
        realtime: when true, frame ``i`` is released no earlier than ``start + (pts_i - pts_0)`` seconds, where
            ``start`` is the time the first frame was released; a consumer that falls behind is never made to wait
            (files are lossless: late frames are delivered at once, none is dropped). ``wall_time`` of each released
            frame is set to the release time (Unix seconds).
        max_frames: stop after this many frames without pulling the next one from ``frames`` (``None`` = all).
        stop: when set (e.g. by :meth:`FileSource.close` from another thread), the iteration ends at once, also in
            the middle of a pacing wait.
        clock: monotonic clock in seconds (injectable for tests).

    Yields:
        The frames of ``frames``, unchanged apart from ``wall_time`` when ``realtime``.
    """
    if max_frames is not None and max_frames <= 0:
        return
    stop = stop if stop is not None else threading.Event()
    it = iter(frames)
    t0: float | None = None
    pts0 = 0.0
    count = 0
    for frame in it:
        if stop.is_set():
            return
        if realtime:
            now = clock()
            if t0 is None:
                t0, pts0 = now, frame.pts
            delay = t0 + (frame.pts - pts0) - now
            if delay > 0 and stop.wait(delay):
                return
            frame.wall_time = time.time()
        yield frame
        count += 1
        if max_frames is not None and count >= max_frames:
            return


def check_source_config(config: SourceConfig, where: str) -> None:
    """Check the fields every source shares.

    Raises:
        ConfigError: ``max_frames`` is given and below 1 (names ``<where>.max_frames``).
    """
    if config.max_frames is not None and config.max_frames < 1:
        raise ConfigError(f"{where}.max_frames: must be >= 1 (or left out for all frames), got {config.max_frames}")


def file_identity(paths: Sequence[str | Path]) -> str | None:
    """SHA-256 (hex) over the resolved path, size (bytes) and modification time (ns) of each file, in order: the
    same unchanged files give the same value on every run (see :meth:`FileSource.identity`); ``None`` when a file
    cannot be stat'ed (reading it will fail and name it)."""
    h = hashlib.sha256()
    try:
        for p in paths:
            st = os.stat(p)
            h.update(f"{Path(p).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    except OSError:
        return None
    return h.hexdigest()


class FileSource(Source):
    """Base of file-backed (non-live) sources: subclasses implement :meth:`decode`.

    :meth:`frames` applies :func:`paced` (``realtime``, ``max_frames``) to :meth:`decode`; :meth:`close` may be
    called from any thread: it ends a running :meth:`frames` iteration at its next frame (or pacing wait) and
    releases the decoder. Each call of :meth:`frames` reads the stream from its start; after :meth:`close` it
    yields nothing.

    Args:
        stream_id: the stream's stable id.
        realtime: pace frames to their ``pts`` (seconds) as a camera would deliver them.
        max_frames: stop after this many frames (``None`` = all).
    """

    live = False

    def __init__(self, stream_id: str, *, realtime: bool = False, max_frames: int | None = None) -> None:
        self.stream_id = stream_id
        self.realtime = realtime
        self.max_frames = max_frames
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._active: set[Iterator[Frame]] = set()

    @abc.abstractmethod
    def decode(self) -> Iterator[Frame]:
        """Yield every frame of the file in order, as fast as possible, with ``wall_time`` = decode time.

        Implementations release their file in a ``finally`` block (the generator is closed when playback ends).

        Raises:
            SourceError: the file cannot be opened or decoded, or ends before its declared length; raised after
                the frames that did decode were yielded.
        """

    def identity(self) -> str | None:
        """What this stream reads, as a string that is the same on every run over the same unchanged input
        (e.g. a hash of the file's resolved path, size and modification time) and differs when the input
        changed; set as :attr:`Frame.origin` of every frame, it makes alert event ids reproducible. ``None``
        (the default) when the source cannot tell: its event ids are then random."""
        return None

    def frames(self) -> Iterator[Frame]:
        """Frames ``(H, W, 3) uint8 RGB`` in order, paced and limited as configured, each with
        ``origin`` = :meth:`identity` (looked up once, when reading starts).

        Raises:
            SourceError: see :meth:`decode`.
        """
        origin = self.identity()
        gen = paced(self.decode(), realtime=self.realtime, max_frames=self.max_frames, stop=self._stop)
        with self._lock:
            if self._stop.is_set():
                return
            self._active.add(gen)
        try:
            while True:
                with self._lock:
                    if self._stop.is_set():
                        return
                    try:
                        frame = next(gen)
                    except StopIteration:
                        return
                frame.origin = origin
                yield frame
        finally:
            with self._lock:
                self._active.discard(gen)
                gen.close()

    def close(self) -> None:
        """End playback and release the file; safe to call twice and from another thread."""
        self._stop.set()
        with self._lock:
            for gen in list(self._active):
                gen.close()
            self._active.clear()
