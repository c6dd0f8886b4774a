"""Per-frame ground truth attached to a file source: what the video datasets (Avenue, ShanghaiTech) share.

A dataset video is a plain file source (a video file through :class:`~streamad.sources.video_file.VideoFileSource`,
or a folder of frames through :class:`~streamad.sources.image_folder.ImageSequenceSource`) plus labels and masks
read from the dataset's own ground-truth files (``.mat`` cells, ``.npy`` arrays). :class:`GroundTruthSource` wraps
the one with the other, checking that both have the same number of frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence, TypeVar

import numpy as np

from streamad.errors import ConfigError, SourceError
from streamad.frames import Frame
from streamad.sources.pacing import FileSource

__all__ = ["MaskLoader", "GroundTruthSource", "select_videos"]

#: Returns the ``N`` ground-truth masks of a video, indexable by frame: ``masks[i]`` is ``(H, W)`` of any numeric
#: dtype (non-zero = anomalous pixel). Called once per playback, when the first frame is decoded.
MaskLoader = Callable[[], Sequence[np.ndarray]]


class GroundTruthSource(FileSource):
    """Plays ``inner`` and attaches each frame's ground truth: ``label``, ``mask`` ``(H, W) bool`` and ``video``.

    Args:
        inner: the file source that decodes the frames (played without its own pacing; this source paces).
        labels: ``(N,)`` frame labels (0 normal, 1 anomalous) read from ``truth_file``; ``None`` for a normal
            (training) video, whose every frame gets label 0 whatever its length.
        masks: loads the ``N`` masks (see :data:`MaskLoader`), or ``None`` (``Frame.mask`` stays ``None``).
        truth_file: the ground-truth file the labels and masks come from (named in errors).
        video: ``Frame.video``, the dataset's video name (the group of grouped density estimation).
        realtime, max_frames: see :class:`~streamad.sources.pacing.FileSource`.

    Raises:
        ValueError: ``masks`` without ``labels``.
    """

    def __init__(self, inner: FileSource, labels: np.ndarray | None, *, masks: MaskLoader | None = None,
                 truth_file: Path | None = None, video: str, realtime: bool = False,
                 max_frames: int | None = None) -> None:
        super().__init__(inner.stream_id, realtime=realtime, max_frames=max_frames)
        if masks is not None and labels is None:
            raise ValueError(f"{inner.stream_id}: masks need labels (a normal video has neither)")
        self.inner = inner
        self.labels = None if labels is None else [int(x) for x in labels]
        self.masks = masks
        self.truth_file = truth_file
        self.video = video

    def __len__(self) -> int:
        """Number of labelled frames (``0`` for a normal video, whose length is known once decoded)."""
        return 0 if self.labels is None else len(self.labels)

    def decode(self) -> Iterator[Frame]:
        """The inner source's frames with ground truth.

        Raises:
            SourceError: the video has more or fewer frames than ``truth_file`` labels, the mask file holds another
                number of masks, or a mask's size differs from its frame (names the files and both counts or
                sizes); raised after the frames before it were yielded. Errors of the inner source pass through.
        """
        frames = self.inner.decode()
        masks: Sequence[np.ndarray] | None = None
        count = 0
        try:
            for frame in frames:
                i = count
                if self.labels is None:
                    frame.label = 0
                else:
                    if i >= len(self.labels):
                        raise SourceError(f"{self._what()}: the video has more than {len(self.labels)} frames but "
                                          f"{self.truth_file} labels {len(self.labels)}")
                    frame.label = self.labels[i]
                    if self.masks is not None:
                        if masks is None:
                            masks = self._load_masks(self.masks, len(self.labels))
                        frame.mask = self._mask(masks[i], frame)
                frame.video = self.video
                count += 1
                yield frame
        finally:
            frames.close()
        if self.labels is not None and count != len(self.labels):
            raise SourceError(f"{self._what()}: the video has {count} frames but {self.truth_file} labels "
                              f"{len(self.labels)}")

    def _what(self) -> str:
        """The stream and where its frames come from (the video file, or the folder of frames)."""
        paths = getattr(self.inner, "paths", None)
        media = getattr(self.inner, "path", None) or (paths[0].parent if paths else None)
        return f"{self.stream_id} ({media})"

    def _load_masks(self, loader: MaskLoader, n: int) -> Sequence[np.ndarray]:
        masks = loader()
        if len(masks) != n:
            raise SourceError(f"{self._what()}: {len(masks)} masks for {n} labelled frames in {self.truth_file}")
        return masks

    def _mask(self, mask: np.ndarray, frame: Frame) -> np.ndarray:
        out = np.asarray(mask) > 0
        h, w = frame.image.shape[:2]
        if out.shape != (h, w):
            raise SourceError(f"{self.truth_file}: mask of frame {frame.index} is {out.shape[1]}x{out.shape[0]} "
                              f"pixels but the frame of {self.stream_id} is {w}x{h}")
        return out


class _Named(Protocol):
    name: str


V = TypeVar("V", bound=_Named)


def select_videos(listed: list[V], names: Sequence[str] | None, where: str, what: str) -> list[V]:
    """The videos of ``listed`` named in ``names``, in that order (``None`` = all of ``listed``).

    Args:
        listed: the split's videos (each with a ``name``), non-empty.
        names: the config's ``videos`` list. where: the config key path (``streams[0]``). what: the split, for
            messages (``Avenue test``).

    Raises:
        ConfigError: a name is not in ``listed`` or is listed twice (names ``<where>.videos``).
    """
    if names is None:
        return listed
    by_name = {v.name: v for v in listed}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"{where}.videos: unknown {what} video(s) {', '.join(unknown)}; available: "
                          f"{listed[0].name} .. {listed[-1].name}")
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ConfigError(f"{where}.videos: video(s) listed twice: {', '.join(repeated)}")
    return [by_name[n] for n in names]
