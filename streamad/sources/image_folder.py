"""Image sequences: a folder of frames (``001.jpg``, ``002.jpg``, ...) played as a video.

:class:`ImageSequenceSource` plays any list of image files (with optional per-frame labels and ground-truth masks,
as dataset loaders need); the ``image_folder`` kind plays one folder. Images are read with OpenCV.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Iterator, Literal, Sequence

import cv2
import numpy as np
from pydantic import Field

from streamad.errors import ConfigError, SourceError
from streamad.frames import Frame
from streamad.parts import BuildContext, SourceConfig
from streamad.registry import SOURCES
from streamad.sources.pacing import FileSource, check_source_config, file_identity

__all__ = ["IMAGE_EXTENSIONS", "natural_key", "list_images", "read_rgb", "read_mask", "ImageSequenceSource",
           "ImageFolderSource"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff", ".jpg", ".jpeg", ".png", ".bmp")

_DIGITS = re.compile(r"(\d+)")
# OpenCV >= 4.11 decodes straight to RGB; older versions decode BGR and are converted.
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``2.jpg`` before ``10.jpg``, ``Test2`` before ``Test10``."""
    return tuple((0, int(part), part) if part.isdigit() else (1, 0, part.lower()) for part in _DIGITS.split(name))


def _normalise_extensions(extensions: Sequence[str]) -> set[str]:
    return {("." + e.lower().lstrip(".")) for e in extensions}


def list_images(folder: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files directly in ``folder`` whose suffix is in ``extensions`` (case-insensitive), natural-sorted.

    Hidden files (``.DS_Store``, macOS ``._001.tif`` forks) are skipped.
    """
    exts = _normalise_extensions(extensions)
    files = [p for p in folder.iterdir()
             if p.suffix.lower() in exts and not p.name.startswith(".") and p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))


def read_rgb(path: Path) -> np.ndarray:
    """Read an image as ``(H, W, 3) uint8`` RGB.

    Grayscale images become 3 identical channels, an alpha channel is dropped, 16-bit images are scaled to 8 bit
    (OpenCV ``IMREAD_COLOR`` semantics).

    Raises:
        SourceError: the file is missing, not a readable image, or a JPEG cut short (no end-of-image marker:
            OpenCV would decode it with the missing rows grey); the message names the file.
    """
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read image ({exc.strerror or exc})") from None
    if Path(path).suffix.lower() in (".jpg", ".jpeg") and not _jpeg_complete(data):
        raise SourceError(f"{path}: truncated JPEG (no end-of-image marker): the file was cut short")
    if _IMREAD_RGB is not None:
        image = cv2.imdecode(data, _IMREAD_RGB)
    else:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if image is not None:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image is None:
        raise SourceError(f"{path}: cannot read image (missing, unsupported format or corrupt)")
    return image


def _jpeg_complete(data: np.ndarray) -> bool:
    """The JPEG bytes end with the end-of-image marker ``FF D9`` (padding NUL / whitespace bytes after it are
    allowed)."""
    tail = data[-4096:].tobytes().rstrip(b"\x00\r\n ")
    return tail.endswith(b"\xff\xd9")


def read_mask(path: Path) -> np.ndarray:
    """Read a ground-truth mask as ``(H, W) bool`` (any non-zero pixel is anomalous; 0/255 and 0/1 masks both work).

    Raises:
        SourceError: the file is missing or not a readable image (names the file).
    """
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise SourceError(f"{path}: cannot read mask image (missing, unsupported format or corrupt)")
    return mask > 0


class ImageSequenceSource(FileSource):
    """Plays a list of image files as a stream at ``fps``: frame ``i`` has ``pts = i / fps`` seconds.

    Args:
        stream_id: the stream's id.
        paths: the frames' image files, in play order.
        fps: frame rate (frames per second) that sets ``pts`` and the ``realtime`` pace.
        labels: per-frame ground truth (0 normal, 1 anomalous), same length as ``paths``, or ``None``.
        mask_paths: per-frame ground-truth mask files, same length as ``paths``, or ``None``; read lazily, one per
            frame, into ``Frame.mask`` ``(H, W) bool``.
        video: ``Frame.video`` (dataset video name); defaults to ``stream_id``.
        realtime, max_frames: see :class:`~streamad.sources.pacing.FileSource`.

    Raises:
        ValueError: ``fps`` is not positive, or ``labels`` / ``mask_paths`` differ in length from ``paths``.
    """

    def __init__(self, stream_id: str, paths: Sequence[Path], fps: float, *,
                 labels: Sequence[int] | np.ndarray | None = None, mask_paths: Sequence[Path] | None = None,
                 video: str | None = None, realtime: bool = False, max_frames: int | None = None) -> None:
        super().__init__(stream_id, realtime=realtime, max_frames=max_frames)
        if fps <= 0:
            raise ValueError(f"{stream_id}: fps must be > 0, got {fps}")
        for name, seq in (("labels", labels), ("mask_paths", mask_paths)):
            if seq is not None and len(seq) != len(paths):
                raise ValueError(f"{stream_id}: {len(seq)} {name} for {len(paths)} frames")
        self.paths = list(paths)
        self.fps = float(fps)
        self.labels = None if labels is None else [int(x) for x in labels]
        self.mask_paths = None if mask_paths is None else list(mask_paths)
        self.video = video or stream_id

    def __len__(self) -> int:
        """Number of frames in the sequence (before ``max_frames``)."""
        return len(self.paths)

    def identity(self) -> str | None:
        """:func:`~streamad.sources.pacing.file_identity` of the images (in order)."""
        return file_identity(self.paths)

    def decode(self) -> Iterator[Frame]:
        """Read the images in order.

        Raises:
            SourceError: an image or mask cannot be read, or a mask's size differs from its frame (names the file);
                raised after the frames before it were yielded.
        """
        for i, path in enumerate(self.paths):
            image = read_rgb(path)
            mask = None
            if self.mask_paths is not None:
                mask = read_mask(self.mask_paths[i])
                if mask.shape != image.shape[:2]:
                    raise SourceError(f"{self.mask_paths[i]}: mask is {mask.shape[1]}x{mask.shape[0]} pixels but "
                                      f"its frame {path} is {image.shape[1]}x{image.shape[0]}")
            yield Frame(stream_id=self.stream_id, index=i, pts=i / self.fps, wall_time=time.time(), image=image,
                        label=None if self.labels is None else self.labels[i], mask=mask, video=self.video)


@SOURCES.register("image_folder")
class ImageFolderSource(ImageSequenceSource):
    """``kind: image_folder``: one folder of image files, natural-sorted (``2.jpg`` before ``10.jpg``)."""

    class Config(SourceConfig):
        """Config of ``kind: image_folder``.

        Attributes:
            path: the folder (relative paths resolve against the data root).
            fps: frame rate in frames per second (sets ``pts = index / fps`` and the ``realtime`` pace).
            extensions: file suffixes that count as frames (case-insensitive).
            id: stream id; defaults to the folder's name.
        """

        kind: Literal["image_folder"] = "image_folder"
        path: str
        fps: float = Field(10.0, gt=0)
        extensions: list[str] = Field(default_factory=lambda: list(IMAGE_EXTENSIONS), min_length=1)

        def build(self, ctx: BuildContext, where: str) -> list["ImageFolderSource"]:
            """One stream of the folder's images.

            Raises:
                ConfigError: the folder is missing, not a folder, or holds no image (names ``<where>.path``).
            """
            check_source_config(self, where)
            folder = ctx.resolve(self.path)
            if not folder.exists():
                raise ConfigError(f"{where}.path: folder not found: {folder}")
            if not folder.is_dir():
                raise ConfigError(f"{where}.path: {folder} is not a folder (expected a folder of images)")
            paths = list_images(folder, self.extensions)
            if not paths:
                raise ConfigError(f"{where}.path: no images ({', '.join(self.extensions)}) in {folder}")
            stream_id = self.id or folder.name
            return [ImageFolderSource(stream_id, paths, self.fps, realtime=self.realtime, max_frames=self.max_frames)]
