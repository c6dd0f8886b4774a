"""``kind: video_file``: a video file (``.avi``, ``.mp4``, ``.mkv``, ...) decoded with PyAV or decord.

Corrupt and truncated files end the stream with a :class:`~streamad.errors.SourceError` after every frame that did
decode. FFmpeg often stops silently at the end of a truncated file, so the decoded length is compared with the length
the container declares (its frame count, else its duration; see :func:`probe_video`). Containers whose duration
FFmpeg only estimates from the file size (MPEG-TS) cannot be checked that way: a truncated one ends silently.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator, Iterator, Literal

import av
import cv2  # noqa: F401  (load OpenCV's libpng/zlib before decord's bundled zlib 1.2.3; see _open_decord)
from pydantic import Field

from streamad.errors import ConfigError, SourceError
from streamad.frames import Frame
from streamad.parts import BuildContext, SourceConfig
from streamad.registry import SOURCES
from streamad.sources.pacing import FileSource, check_source_config, file_identity

__all__ = ["VideoInfo", "probe_video", "VideoFileSource"]

# A file may legitimately decode a frame or two fewer than its header says (leading B-frames, an unused packet);
# more than that is reported as truncation.
_FRAME_SLACK = 2
# A container-level duration spans all streams (audio may outlast the video by a fraction of a second).
_CONTAINER_SLACK_S = 1.0


@dataclass(frozen=True)
class VideoInfo:
    """What a video file's header declares about its first video stream.

    Attributes:
        frames: declared number of frames (AVI/MP4 headers), or ``None`` when the container does not say (MKV, TS).
        duration: declared duration in seconds, or ``None``.
        duration_from_container: ``duration`` is the container's (all streams), not the video stream's.
        fps: average frame rate in frames per second, or ``None`` when unknown.
        width, height: frame size in pixels.
    """

    frames: int | None
    duration: float | None
    duration_from_container: bool
    fps: float | None
    width: int
    height: int


def _info(container: Any, stream: Any) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if stream.duration is not None and stream.time_base is not None:
        duration, from_container = float(stream.duration * stream.time_base), False
    elif container.duration is not None:
        duration, from_container = container.duration / av.time_base, True
    else:
        duration, from_container = None, False
    return VideoInfo(frames=int(stream.frames) or None, duration=duration, duration_from_container=from_container,
                     fps=float(rate) if rate else None, width=int(stream.codec_context.width),
                     height=int(stream.codec_context.height))


def _open_pyav(path: Path) -> tuple[Any, Any]:
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise SourceError(f"{path}: cannot open video: {exc}") from None
    if not container.streams.video:
        container.close()
        raise SourceError(f"{path}: no video stream in the file")
    return container, container.streams.video[0]


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video file's header (no decoding) with PyAV.

    Raises:
        SourceError: the file cannot be opened as a video or has no video stream (names the file).
    """
    container, stream = _open_pyav(Path(path))
    try:
        return _info(container, stream)
    finally:
        container.close()


def _pyav_frames(path: Path) -> Iterator[tuple[Any, float | None, VideoInfo]]:
    """PyAV decoding: ``(rgb (H, W, 3) uint8, pts seconds or None, header info)`` per frame."""
    container, stream = _open_pyav(path)
    try:
        stream.thread_type = "AUTO"
        info = _info(container, stream)
        yield None, None, info  # header first, so that an empty file is still checked
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24"), frame.time, info
    except av.error.FFmpegError as exc:
        raise SourceError(f"{path}: decoding failed: {exc}") from None
    finally:
        container.close()


def _open_decord(path: Path) -> Any:
    # decord bundles zlib 1.2.3; when it is loaded before OpenCV, OpenCV's libpng binds to it and every PNG read
    # fails ("libpng error: bad parameters to zlib"). This module imports cv2 first, so decord is imported lazily.
    import decord

    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0))
    except Exception as exc:  # decord raises DECORDError / RuntimeError with the FFmpeg message
        raise SourceError(f"{path}: cannot open video with decord: {exc}") from None


def _decord_frames(path: Path) -> Iterator[tuple[Any, float | None, VideoInfo]]:
    """decord decoding; decord indexes what it can read, so the declared length comes from :func:`probe_video`."""
    info = probe_video(path)
    reader = _open_decord(path)
    yield None, None, info
    try:
        for i in range(len(reader)):
            try:
                image = reader.next().asnumpy()
            except StopIteration:
                return
            yield image, float(reader.get_frame_timestamp(i)[0]), info
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(f"{path}: decoding failed: {exc}") from None
    finally:
        del reader


_BACKENDS = {"pyav": _pyav_frames, "decord": _decord_frames}


def _check_complete(path: Path, decoded: int, end: float | None, info: VideoInfo) -> None:
    """Raise when the file decoded to fewer frames (or less time) than its header declares."""
    if info.frames is not None:
        if decoded < info.frames - _FRAME_SLACK:
            raise SourceError(f"{path}: truncated: decoded {decoded} of {info.frames} frames")
        return
    if info.duration is None or not info.duration > 0:
        return
    frame_s = 1.0 / info.fps if info.fps else 0.0
    slack = max(_FRAME_SLACK * frame_s, _CONTAINER_SLACK_S if info.duration_from_container else 0.0)
    got = end if end is not None else 0.0
    if got < info.duration - slack:
        raise SourceError(f"{path}: truncated: decoded {decoded} frames ({got:.2f} s) of a declared "
                          f"{info.duration:.2f} s")


@SOURCES.register("video_file")
class VideoFileSource(FileSource):
    """One video file as a stream (lossless, ``live = False``).

    Frames are ``(H, W, 3) uint8`` RGB. ``pts`` is the frame's presentation timestamp (``pts x time_base``) in
    seconds from the first frame; with ``fps`` set, or when a frame has no timestamp, ``pts = index / fps``.

    Args:
        stream_id: the stream's id.
        path: the video file.
        backend: ``"pyav"`` (FFmpeg via PyAV, threaded decoding) or ``"decord"``.
        fps: frame-rate override in frames per second (``None`` = the file's timestamps).
        realtime, max_frames: see :class:`~streamad.sources.pacing.FileSource`.
        loop: replay the file from its start each time it ends, forever (until closed or ``max_frames``):
            frame indices and ``pts`` keep increasing across replays, as a camera's would.
    """

    class Config(SourceConfig):
        """Config of ``kind: video_file``.

        Attributes:
            path: the video file (relative paths resolve against the data root).
            backend: ``pyav`` (default) or ``decord``.
            fps: frame-rate override (frames per second); timestamps become ``index / fps``.
            id: stream id; defaults to the file name without its extension.
            loop: replay the file forever (a camera stand-in for demos and tests; indices and timestamps keep
                increasing; ``max_frames`` still bounds it).
        """

        kind: Literal["video_file"] = "video_file"
        path: str
        backend: Literal["pyav", "decord"] = "pyav"
        fps: float | None = Field(None, gt=0)
        loop: bool = False

        def build(self, ctx: BuildContext, where: str) -> list["VideoFileSource"]:
            """One stream of the file.

            Raises:
                ConfigError: the file does not exist or is a folder (names ``<where>.path`` and the path).
            """
            check_source_config(self, where)
            path = ctx.resolve(self.path)
            if not path.exists():
                raise ConfigError(f"{where}.path: file not found: {path}")
            if path.is_dir():
                raise ConfigError(f"{where}.path: {path} is a folder, expected a video file "
                                  f"(use kind: image_folder for a folder of frames)")
            return [VideoFileSource(self.id or path.stem, path, backend=self.backend, fps=self.fps,
                                    realtime=self.realtime, max_frames=self.max_frames, loop=self.loop)]

    def __init__(self, stream_id: str, path: str | Path, *, backend: str = "pyav", fps: float | None = None,
                 realtime: bool = False, max_frames: int | None = None, loop: bool = False) -> None:
        super().__init__(stream_id, realtime=realtime, max_frames=max_frames)
        if backend not in _BACKENDS:
            raise ValueError(f"{stream_id}: backend must be one of {sorted(_BACKENDS)}, got {backend!r}")
        self.path = Path(path)
        self.backend = backend
        self.fps = fps
        self.loop = loop

    def identity(self) -> str | None:
        """:func:`~streamad.sources.pacing.file_identity` of the video file."""
        return file_identity([self.path])

    def decode(self) -> Iterator[Frame]:
        """Decode the file in order (with ``loop``, again and again; a replay continues the indices and ``pts``
        of the one before).

        Raises:
            SourceError: the file cannot be opened, a frame cannot be decoded, the frame rate is unknown while a
                frame lacks a timestamp, or the file ends before its declared length ("truncated: decoded N of M
                frames"); always naming the file, and raised after the frames that decoded were yielded. A looped
                file that decodes no frame ends its stream with "no frame to loop".
        """
        first_index, pts_offset = 0, 0.0
        while True:
            decoded, end = yield from self._decode_once(first_index, pts_offset)
            if not self.loop:
                return
            if decoded == 0:
                raise SourceError(f"{self.path}: no frame to loop (the file decoded to no frame)")
            first_index += decoded
            pts_offset += end if end is not None else 0.0

    def _decode_once(self, first_index: int, pts_offset: float) -> Generator[Frame, None, tuple[int, float | None]]:
        """One pass over the file; returns ``(frames decoded, pts at the end of the pass from its start)``."""
        frames = _BACKENDS[self.backend](self.path)
        try:
            _, _, info = next(frames)
            rate = self.fps or info.fps
            index, origin, end = 0, None, None
            for image, t, _ in frames:
                if self.fps is None and t is not None:
                    origin = t if origin is None else origin
                    pts = t - origin
                elif rate:
                    pts = index / rate
                else:
                    raise SourceError(f"{self.path}: frame {index} has no timestamp and the frame rate is unknown; "
                                      f"set fps in the config")
                yield Frame(stream_id=self.stream_id, index=first_index + index, pts=pts_offset + pts,
                            wall_time=time.time(), image=image, video=self.stream_id)
                index += 1
                end = pts + (1.0 / rate if rate else 0.0)
        finally:
            frames.close()
        _check_complete(self.path, index, end, info)
        return index, end
