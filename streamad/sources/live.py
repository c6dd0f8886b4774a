"""``kind: live``: a live video source through PyAV: RTSP cameras (``rtsp://``, ``rtsps://``), HTTP(S) video URLs
and capture devices (``/dev/videoN``, FFmpeg's ``v4l2`` input), all by one class.

A live stream never ends by itself. A clean end of stream (camera rebooted, server closed the socket), a read
timeout (camera frozen), a refused connection, a missing device or a decode error is a *disconnect*: the source
reconnects with capped exponential backoff and jitter (:func:`streamad.backoff.backoff_delay`), forever unless
``max_reconnects`` is set. Status (``connecting``, ``live``, ``backoff``; ``failed`` when it gives up) and reconnects
go to the pipeline metrics (``streamad_source_status``, ``streamad_source_reconnects_total``) and from there to the
health endpoint.

Timestamps: ``Frame.pts`` is the stream's presentation time in seconds from the first frame, continued across
reconnects (a new session resumes at the previous ``pts`` plus the wall-clock time the stream was away), so it
never goes backwards; ``Frame.wall_time`` is the Unix time the frame was decoded. ``Frame.index`` counts frames
delivered by this source, across reconnects.

Credentials in the URL (``rtsp://user:password@host/...``) never leave this module unmasked: the password is
registered with :func:`streamad.redact.register_secret`, the default stream id is ``host[:port]/path``, and every
message is passed through :func:`streamad.redact.redact`.

FFmpeg behaviour behind the defaults (../shared/docs/infra.md): over TCP a frozen server raises
``av.error.InvalidDataError`` after the read timeout; over UDP ``av.error.TimeoutError``; a killed server ends the
decode loop cleanly; a server that is down refuses at once.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator, Literal

import av
from pydantic import Field

from streamad.backoff import backoff_delay
from streamad.errors import ConfigError, SourceError
from streamad.frames import Frame
from streamad.metrics import Metrics
from streamad.parts import BuildContext, Source, SourceConfig
from streamad.redact import redact, register_secret
from streamad.registry import SOURCES

__all__ = ["LiveSource", "live_stream_id", "StreamClock"]

log = logging.getLogger(__name__)

_URL_SCHEMES = ("rtsp", "rtsps", "http", "https")
_DEFAULT_DT = 1.0 / 25.0  # frame period assumed when a stream declares no rate (seconds)
_REPEAT_WARNING_S = 60.0  # a camera that stays down is logged at WARNING once a minute (DEBUG in between)


def live_stream_id(url: str) -> str:
    """A stable stream id for a live URL that never contains credentials.

    ``rtsp://user:pw@10.0.0.5:554/live/ch1?token=x`` -> ``10.0.0.5:554/live/ch1``; ``/dev/video0`` -> ``video0``.
    The query string and fragment (where tokens live) are left out.
    """
    if url.startswith("/dev/"):
        return Path(url).name
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    path = parts.path.rstrip("/")
    return redact(f"{host}{path}" if host else path.lstrip("/") or url)


def _register_url_secrets(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        register_secret(parts.password)
        register_secret(urllib.parse.unquote(parts.password))
    for key, value in urllib.parse.parse_qsl(parts.query):
        if any(k in key.lower() for k in ("password", "passwd", "pwd", "secret", "token", "key", "auth")):
            register_secret(value)


def _reason(exc: BaseException) -> str:
    """A one-line, credential-free reason for a disconnect (PyAV errors carry the URL as ``filename``)."""
    strerror = getattr(exc, "strerror", None)  # OSError and av.error.FFmpegError: the message without the URL
    return redact(f"{type(exc).__name__}: {strerror or exc}")


class StreamClock:
    """Presentation timestamps of a live stream, continuous across reconnects (seconds, strictly increasing).

    Call :meth:`new_session` after every (re)connect with the stream's frame period, then :meth:`pts` per decoded
    frame with its raw timestamp (``av.VideoFrame.time``, seconds, may be ``None``) and its wall-clock time.
    """

    def __init__(self) -> None:
        self.last_pts: float | None = None
        self._last_wall = 0.0
        self._offset = 0.0
        self._base: float | None = None
        self._n = 0
        self._dt = _DEFAULT_DT

    def new_session(self, dt: float, now: float | None = None) -> None:
        """A new connection begins (``dt``: its frame period, seconds; ``now``: Unix time, default the clock);
        its first frame comes ``max(dt, time away)`` seconds after the last one."""
        self._dt = dt if dt > 0 else _DEFAULT_DT
        if self.last_pts is not None:
            now = time.time() if now is None else now
            self._offset = self.last_pts + max(self._dt, now - self._last_wall)
        self._base, self._n = None, 0

    def pts(self, raw: float | None, wall: float) -> float:
        """The frame's stream time in seconds (raw timestamps relative to the session's first frame, shifted by
        the session offset; frames without a timestamp, or with one that goes backwards, get ``previous + dt``)."""
        if raw is None:
            p = self._offset + self._n * self._dt if self._base is None else (self.last_pts or 0.0) + self._dt
        else:
            if self._base is None:
                self._base = raw - self._n * self._dt
            p = self._offset + raw - self._base
            if self.last_pts is not None and p <= self.last_pts:  # the camera's clock jumped back: re-anchor
                p = self.last_pts + self._dt
                self._base = raw - (p - self._offset)
        self._n += 1
        self.last_pts, self._last_wall = p, wall
        return p


@SOURCES.register("live")
class LiveSource(Source):
    """A live camera or video URL (``live = True``: the runtime applies ``runtime.live_policy`` to it).

    Args:
        stream_id: the stream's id (free of credentials).
        url: ``rtsp://``, ``rtsps://``, ``http://``, ``https://`` URL or a ``/dev/videoN`` device.
        transport: RTSP lower transport, ``tcp`` (default) or ``udp``.
        open_timeout_s: seconds to wait for the connection and the stream header.
        read_timeout_s: seconds without data after which a connected stream counts as disconnected.
        probe_s: seconds of stream FFmpeg analyses before the first frame (``analyzeduration``).
        reconnect_initial_s, reconnect_max_s: first and largest pause between reconnect attempts (seconds).
        max_reconnects: give up (``SourceError``, status ``failed``) after this many reconnects in a row without
            a frame; ``None`` = never give up.
        input_format: FFmpeg input format (``v4l2`` for devices by default), ``None`` = guess.
        options: more FFmpeg input options (``{"video_size": "640x480", "framerate": "30"}`` for a device).
        max_frames: end after this many frames (``None`` = never).
        duration_s: end cleanly before the first frame at or after this much stream time (seconds of ``pts``,
            from the first frame; ``None`` = never).
        metrics: the pipeline metrics that status and reconnects go to (``None`` = not reported).
    """

    live = True

    class Config(SourceConfig):
        """Config of ``kind: live``.

        Attributes:
            url: ``rtsp://[user:password@]host[:port]/path``, ``rtsps://...``, ``http(s)://...`` (a video served
                over HTTP, e.g. MPEG-TS or HLS) or ``/dev/videoN``. Put passwords in the environment:
                ``rtsp://admin:${CAM_PASSWORD}@10.0.0.5/stream1``.
            id: stream id; defaults to ``host[:port]/path`` of the URL (never its credentials or query string),
                or ``videoN`` for a device.
            transport: RTSP transport, ``tcp`` (default) or ``udp``.
            open_timeout_s, read_timeout_s: connection and read timeouts (seconds).
            probe_s: stream analysis before the first frame (seconds; FFmpeg ``analyzeduration``).
            reconnect_initial_s, reconnect_max_s: reconnect backoff (seconds, doubling with jitter up to the max).
            max_reconnects: give up after this many reconnects without a frame (default: never).
            format: FFmpeg input format (``v4l2`` is the default for ``/dev/video*``).
            options: extra FFmpeg input options, strings (``video_size``, ``framerate``, ``input_format`` ...).
            duration_s: end the stream cleanly after this many seconds of stream time (> 0; with or instead of
                ``max_frames``). ``streamad fit`` needs one of the two to fit on a live stream.
        """

        kind: Literal["live"] = "live"
        url: str = Field(min_length=1)
        transport: Literal["tcp", "udp"] = "tcp"
        open_timeout_s: float = Field(5.0, gt=0)
        read_timeout_s: float = Field(3.0, gt=0)
        probe_s: float = Field(0.5, gt=0)
        reconnect_initial_s: float = Field(0.5, gt=0)
        reconnect_max_s: float = Field(2.0, gt=0)
        max_reconnects: int | None = Field(None, ge=0)
        format: str | None = None
        options: dict[str, str] = Field(default_factory=dict)
        duration_s: float | None = Field(None, gt=0)

        def build(self, ctx: BuildContext, where: str) -> list["LiveSource"]:
            """One live stream.

            Raises:
                ConfigError: the URL is neither ``rtsp(s)://``, ``http(s)://`` nor ``/dev/...``, ``realtime`` is
                    set (a live source is real time already), ``max_frames`` < 1 or ``reconnect_max_s`` <
                    ``reconnect_initial_s``. Messages never show the URL's password.
            """
            _register_url_secrets(self.url)
            scheme = urllib.parse.urlsplit(self.url).scheme.lower()
            if not (self.url.startswith("/dev/") or scheme in _URL_SCHEMES):
                raise ConfigError(f"{where}.url: expected rtsp://, rtsps://, http://, https:// or /dev/videoN, "
                                  f"got {redact(self.url)!r}")
            if self.realtime:
                raise ConfigError(f"{where}.realtime: a live source is paced by the camera; remove realtime")
            if self.max_frames is not None and self.max_frames < 1:
                raise ConfigError(f"{where}.max_frames: must be >= 1 (or left out), got {self.max_frames}")
            if self.reconnect_max_s < self.reconnect_initial_s:
                raise ConfigError(f"{where}.reconnect_max_s: must be >= reconnect_initial_s "
                                  f"({self.reconnect_initial_s}), got {self.reconnect_max_s}")
            fmt = self.format or ("v4l2" if self.url.startswith("/dev/") else None)
            stream_id = redact(self.id) if self.id else live_stream_id(self.url)
            return [LiveSource(stream_id, self.url, transport=self.transport, open_timeout_s=self.open_timeout_s,
                               read_timeout_s=self.read_timeout_s, probe_s=self.probe_s,
                               reconnect_initial_s=self.reconnect_initial_s, reconnect_max_s=self.reconnect_max_s,
                               max_reconnects=self.max_reconnects, input_format=fmt, options=self.options,
                               max_frames=self.max_frames, duration_s=self.duration_s, metrics=ctx.metrics)]

    def __init__(self, stream_id: str, url: str, *, transport: str = "tcp", open_timeout_s: float = 5.0,
                 read_timeout_s: float = 3.0, probe_s: float = 0.5, reconnect_initial_s: float = 0.5,
                 reconnect_max_s: float = 2.0, max_reconnects: int | None = None, input_format: str | None = None,
                 options: dict[str, str] | None = None, max_frames: int | None = None,
                 metrics: Metrics | None = None, duration_s: float | None = None) -> None:
        self.stream_id = stream_id
        self.url = url
        self.transport = transport
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.probe_s = probe_s
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.max_reconnects = max_reconnects
        self.input_format = input_format
        self.options = dict(options or {})
        self.max_frames = max_frames
        self.duration_s = duration_s
        self.fps: float | None = None  # the frame rate the stream declared at its last connection (frames/s)
        self.metrics = metrics
        self.status = "connecting"
        self.reconnects = 0
        self._stop = threading.Event()
        self._rng = random.Random()
        self._last_warning = -_REPEAT_WARNING_S

    @property
    def where(self) -> str:
        """The URL with its password masked, for messages."""
        return redact(self.url)

    def expected_frames(self) -> int | None:
        """Frames this stream will deliver before its bound: ``max_frames``, or ``duration_s x fps`` once the
        frame rate is known (the smaller of the two); ``None`` when unbounded or not yet known."""
        bounds = [self.max_frames] if self.max_frames is not None else []
        if self.duration_s is not None and self.fps:
            bounds.append(max(1, int(math.ceil(self.duration_s * self.fps - 1e-6))))
        return min(bounds) if bounds else None

    def _set_status(self, status: str) -> None:
        self.status = status
        if self.metrics is not None:
            self.metrics.set_status(self.stream_id, status)

    def _open(self) -> Any:
        """Open the URL or device (raises what PyAV raises: ``av.error.*``, all ``FFmpegError``/``OSError``)."""
        options = {"analyzeduration": str(int(self.probe_s * 1e6))}
        scheme = urllib.parse.urlsplit(self.url).scheme.lower()
        if scheme in ("rtsp", "rtsps"):
            options["rtsp_transport"] = self.transport
            options["timeout"] = str(int(self.read_timeout_s * 1e6))  # socket I/O timeout, microseconds
        elif scheme in ("http", "https"):
            options["rw_timeout"] = str(int(self.read_timeout_s * 1e6))
        options.update(self.options)
        return av.open(self.url, format=self.input_format, options=options,
                       timeout=(self.open_timeout_s, self.read_timeout_s))

    def frames(self) -> Iterator[Frame]:
        """Frames ``(H, W, 3) uint8 RGB`` for as long as the stream runs, reconnecting after every disconnect.

        Ends when :meth:`close` is called (from any thread; a blocked read returns within ``read_timeout_s``),
        after ``max_frames`` frames, or before the first frame whose ``pts`` is ``>= duration_s``.

        Raises:
            SourceError: ``max_reconnects`` reconnects in a row brought no frame (message without credentials).
        """
        clock = StreamClock()
        index = 0
        failures = 0  # connections in a row that brought no frame
        while not self._stop.is_set():
            self._set_status("connecting")
            container = None
            got = 0
            try:
                container = self._open()
                if not container.streams.video:
                    raise SourceError("no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                self.fps = float(rate) if rate else self.fps
                clock.new_session(1.0 / float(rate) if rate else _DEFAULT_DT)
                for av_frame in container.decode(stream):
                    if self._stop.is_set():
                        return
                    image = av_frame.to_ndarray(format="rgb24")
                    wall = time.time()
                    if not got:
                        failures = 0
                        self._set_status("live")
                        log.info("stream %s: live from %s (%dx%d)", self.stream_id, self.where, image.shape[1],
                                 image.shape[0])
                    got += 1
                    pts = clock.pts(av_frame.time, wall)
                    if self.duration_s is not None and pts >= self.duration_s:
                        return
                    yield Frame(stream_id=self.stream_id, index=index, pts=pts, wall_time=wall, image=image,
                                video=self.stream_id)
                    index += 1
                    if self.max_frames is not None and index >= self.max_frames:
                        return
                reason = "the stream ended"
            except Exception as exc:  # every failure of a live stream is a disconnect, never the end
                reason = _reason(exc)
            finally:
                if container is not None:
                    try:
                        container.close()
                    except Exception as exc:
                        log.debug("stream %s: closing the connection: %s", self.stream_id, _reason(exc))
            if self._stop.is_set():
                return
            failures += 0 if got else 1
            if self.max_reconnects is not None and failures > self.max_reconnects:
                self._set_status("failed")
                raise SourceError(f"{self.where}: {reason}; gave up after {self.max_reconnects} reconnects "
                                  f"without a frame (max_reconnects)")
            delay = backoff_delay(max(1, failures), self.reconnect_initial_s, self.reconnect_max_s, self._rng)
            self._set_status("backoff")
            now = time.monotonic()
            loud = failures <= 1 or now - self._last_warning >= _REPEAT_WARNING_S
            if loud:
                self._last_warning = now
            log.log(logging.WARNING if loud else logging.DEBUG,
                    "stream %s: disconnected from %s after %d frames: %s; reconnecting in %.1f s (attempt %d)",
                    self.stream_id, self.where, got, reason, delay, failures + 1)
            if self._stop.wait(delay):
                return
            self.reconnects += 1
            if self.metrics is not None:
                self.metrics.reconnects.labels(self.stream_id).inc()

    def close(self) -> None:
        """Stop reconnecting and end :meth:`frames` (safe from any thread, idempotent)."""
        self._stop.set()
