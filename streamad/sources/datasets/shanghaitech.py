"""ShanghaiTech Campus, official layout, as streams with ground truth.

Layout (Liu, Luo, Lian, Gao, "Future Frame Prediction for Anomaly Detection -- A New Baseline", CVPR 2018;
anomalib ``make_shanghaitech_dataset``)::

    <root>/training/videos/01_001.avi ...                 normal training videos (13 scenes)
    <root>/testing/frames/01_0014/000.jpg ...             test videos as folders of frames (12 scenes)
    <root>/testing/test_frame_mask/01_0014.npy            (N,) 0/1 frame labels
    <root>/testing/test_pixel_mask/01_0014.npy            (N, H, W) 0/1 pixel masks (optional)

``<root>`` is the ``shanghaitech`` folder. Video names are ``<scene>_<clip>``; ``scenes`` selects scenes by number.
Training videos are decoded by :class:`~streamad.sources.video_file.VideoFileSource` (PyAV or decord), test frames
are read by :class:`~streamad.sources.image_folder.ImageSequenceSource`; both play at ``fps`` (default 24, the
videos' rate), ``pts = index / fps``. Label files are read with ``np.load(allow_pickle=False)``; pixel masks are
memory-mapped, one frame read at a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from pydantic import Field

from streamad.errors import ConfigError, DataNotFoundError, SourceError
from streamad.parts import BuildContext, SourceConfig
from streamad.registry import SOURCES
from streamad.sources.datasets.ground_truth import GroundTruthSource, select_videos
from streamad.sources.datasets.holdout import HoldoutConfig, apply_holdout
from streamad.sources.datasets.missing import DatasetHelp
from streamad.sources.image_folder import ImageSequenceSource, list_images, natural_key
from streamad.sources.pacing import FileSource, check_source_config
from streamad.sources.video_file import VideoFileSource, probe_video

__all__ = ["SHANGHAITECH_URL", "ShanghaiTechVideo", "shanghaitech_videos", "read_frame_labels",
           "ShanghaiTechSource"]

SHANGHAITECH_URL = "https://svip-lab.github.io/dataset/campus_dataset.html"
_HELP = DatasetHelp("ShanghaiTech Campus", "unpack the dataset there so that <data root>/shanghaitech/testing/frames/"
                    "01_0014/ exists (or set the source's root to the shanghaitech folder). Get it from "
                    f"{SHANGHAITECH_URL}.")
_TRAIN_DIR = Path("training") / "videos"
_TEST_DIR = Path("testing") / "frames"
_FRAME_MASK_DIR = Path("testing") / "test_frame_mask"
_PIXEL_MASK_DIR = Path("testing") / "test_pixel_mask"
_VIDEO = re.compile(r"(\d+)_\d+")


@dataclass(frozen=True, eq=False)
class ShanghaiTechVideo:
    """One video of the dataset, listed without decoding.

    Attributes:
        split: ``train`` or ``test``.
        name: ``<scene>_<clip>`` (``01_0014``). scene: the scene number (``1``).
        video_path: the ``.avi`` file of a training video, else ``None``.
        frame_paths: the frames of a test video in order (natural sort), else ``None``.
        num_frames: ``N``, the frames in the folder, or the count the training video's header declares.
        labels: ``(N,) uint8`` frame labels (1 anomalous) from ``label_path``; all 0 for training videos.
        label_path: ``test_frame_mask/<name>.npy`` of a test video, else ``None``.
        mask_path: ``test_pixel_mask/<name>.npy`` ``(N, H, W)`` of a test video when present, else ``None``.
    """

    split: str
    name: str
    scene: int
    video_path: Path | None
    frame_paths: tuple[Path, ...] | None
    num_frames: int
    labels: np.ndarray
    label_path: Path | None
    mask_path: Path | None


def read_frame_labels(path: Path) -> np.ndarray:
    """A ``test_frame_mask`` file as ``(N,) uint8`` 0/1 labels.

    Raises:
        DataNotFoundError: the file cannot be read without pickle, is not 1-D, or holds values other than 0 and 1
            (names the file).
    """
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataNotFoundError(f"{path}: cannot read ShanghaiTech frame labels: {exc}") from None
    if labels.ndim != 1 or not np.isin(labels, (0, 1)).all():
        raise DataNotFoundError(f"{path}: expected (N,) 0/1 frame labels, got a {labels.dtype} array of shape "
                                f"{labels.shape}")
    return labels.astype(np.uint8)


def _pixel_masks(path: Path) -> np.ndarray:
    """``(N, H, W)`` masks of a ``test_pixel_mask`` file, memory-mapped (read per frame when indexed)."""
    try:
        masks = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataNotFoundError(f"{path}: cannot read ShanghaiTech pixel masks: {exc}") from None
    if masks.ndim != 3:
        raise DataNotFoundError(f"{path}: expected (N, H, W) pixel masks, got shape {masks.shape}")
    return masks


def _scene(name: str) -> int:
    return int(name.split("_", 1)[0])


def _test_video(folder: Path, root: Path) -> ShanghaiTechVideo:
    frames = tuple(list_images(folder))
    if not frames:
        raise DataNotFoundError(f"{folder}: no frame images (.jpg) in this ShanghaiTech test folder; re-extract the "
                                f"dataset from {SHANGHAITECH_URL}")
    label_path = root / _FRAME_MASK_DIR / f"{folder.name}.npy"
    if not label_path.is_file():
        raise DataNotFoundError(f"{label_path}: frame labels of {folder} not found; re-extract the dataset from "
                                f"{SHANGHAITECH_URL}")
    labels = read_frame_labels(label_path)
    if labels.size != len(frames):
        raise DataNotFoundError(f"{label_path}: holds {labels.size} frame labels but {folder} has {len(frames)} "
                                f"frames")
    mask_path: Path | None = root / _PIXEL_MASK_DIR / f"{folder.name}.npy"
    if mask_path.is_file():
        n = _pixel_masks(mask_path).shape[0]
        if n != len(frames):
            raise DataNotFoundError(f"{mask_path}: holds {n} masks but {folder} has {len(frames)} frames")
    else:
        mask_path = None
    return ShanghaiTechVideo("test", folder.name, _scene(folder.name), None, frames, len(frames), labels, label_path,
                             mask_path)


def _train_video(path: Path) -> ShanghaiTechVideo:
    info = probe_video(path)
    if info.frames is None:
        raise DataNotFoundError(f"{path}: the file does not declare its frame count; expected the official "
                                f"ShanghaiTech .avi (get it from {SHANGHAITECH_URL})")
    return ShanghaiTechVideo("train", path.stem, _scene(path.stem), path, None, info.frames,
                             np.zeros(info.frames, np.uint8), None, None)


def shanghaitech_videos(root: str | Path, split: str = "test",
                        scenes: Sequence[int] | None = None) -> list[ShanghaiTechVideo]:
    """List the videos of one split, with frames, frame labels and mask files.

    Args:
        root: the ``shanghaitech`` folder.
        split: ``train`` (``training/videos/*.avi``) or ``test`` (``testing/frames/<name>/``).
        scenes: keep only these scene numbers (``[1, 3]`` keeps ``01_*`` and ``03_*``); ``None`` = all.

    Returns:
        The videos in natural order (``01_0014``, ``01_0015``, ...).

    Raises:
        ValueError: unknown ``split``, or ``scenes`` selects no video (names the scenes the split has).
        DataNotFoundError: the split folder is missing or holds no ``<scene>_<clip>`` video, a test video has no
            frames or no label file (names the expected file), or a label or mask file's frame count differs from
            the video's (names the file and both counts).
        SourceError: a training video cannot be opened (names the file).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be one of ['test', 'train'], got {split!r}")
    base = Path(root)
    split_dir = base / (_TRAIN_DIR if split == "train" else _TEST_DIR)
    if not split_dir.is_dir():
        raise _HELP.missing(split_dir, f"no {split_dir.relative_to(base)} folder")
    if split == "train":
        named = {p.stem: p for p in split_dir.iterdir() if p.is_file() and p.suffix.lower() == ".avi"}
    else:
        named = {p.name: p for p in split_dir.iterdir() if p.is_dir()}
    names = sorted((n for n in named if _VIDEO.fullmatch(n)), key=natural_key)
    if not names:
        what = "<scene>_<clip>.avi video" if split == "train" else "<scene>_<clip> frame folder"
        raise _HELP.missing(split_dir, f"no {what} in {split_dir.relative_to(base)}")
    if scenes is not None:
        have = sorted({_scene(n) for n in names})
        names = [n for n in names if _scene(n) in set(scenes)]
        if not names:
            raise ValueError(f"no {split} video of scene(s) {', '.join(str(s) for s in scenes)}; the {split} split "
                             f"has scenes {', '.join(str(s) for s in have)}")
    entries = [named[n] for n in names]
    return [_train_video(p) if split == "train" else _test_video(p, base) for p in entries]


@SOURCES.register("shanghaitech")
class ShanghaiTechSource(GroundTruthSource):
    """``kind: shanghaitech``: one stream per video of a ShanghaiTech Campus split, with labels and masks on test
    frames.

    Stream ids are ``"{id or 'shanghaitech'}/{video}"`` (``shanghaitech/01_0014``); ``Frame.video`` is the video
    name. Follows anomalib ``ShanghaiTech`` / ``make_shanghaitech_dataset`` (layout, ``test_frame_mask`` labels,
    ``test_pixel_mask`` masks).
    """

    class Config(SourceConfig):
        """Config of ``kind: shanghaitech``.

        Attributes:
            root: the ``shanghaitech`` folder, relative to the data root (``$STREAMAD_DATA`` / ``data_root``).
            split: ``train`` (the ``.avi`` videos; labels 0, no masks) or ``test`` (frame folders; labels from
                ``test_frame_mask``, masks from ``test_pixel_mask``).
            scenes: play only these scenes (``[1, 3]`` = ``01_*`` and ``03_*``); ``None`` = all.
            videos: play only these videos (quoted names: ``["01_0014"]``), in this order; ``None`` = all (of
                ``scenes``).
            holdout: play only the fitting part or the held-out part of the videos (after ``scenes`` and
                ``videos``), see :mod:`streamad.sources.datasets.holdout`; ``None`` = all.
            fps: frame rate in frames per second for ``pts`` and ``realtime`` (default 24, the videos' rate).
            masks: attach ground-truth masks ``(H, W) bool`` to test frames (when ``test_pixel_mask`` exists).
            backend: decoder of the training videos, ``pyav`` or ``decord``.
            id: stream id prefix; defaults to ``shanghaitech``.
        """

        kind: Literal["shanghaitech"] = "shanghaitech"
        root: str = "shanghaitech"
        split: Literal["train", "test"]
        scenes: list[int] | None = Field(None, min_length=1)
        videos: list[str] | None = None
        holdout: HoldoutConfig | None = None
        fps: float = Field(24.0, gt=0)
        masks: bool = True
        backend: Literal["pyav", "decord"] = "pyav"

        def build(self, ctx: BuildContext, where: str) -> list["ShanghaiTechSource"]:
            """One stream per video.

            Raises:
                DataNotFoundError: the dataset or a label file is missing, or a label or mask file's frame count
                    differs from its video's (names ``where`` and the file).
                ConfigError: ``scenes`` selects no video, or ``videos`` names a video the split (or the scenes) does
                    not have (names ``<where>.scenes`` / ``<where>.videos``).
            """
            check_source_config(self, where)
            root = ctx.resolve(self.root)
            try:
                listed = shanghaitech_videos(root, self.split, self.scenes)
            except ValueError as exc:
                raise ConfigError(f"{where}.scenes: {exc}") from None
            except (DataNotFoundError, SourceError) as exc:
                raise type(exc)(f"{where}: {exc}") from None
            prefix = self.id or "shanghaitech"
            chosen = select_videos(listed, self.videos, where, f"ShanghaiTech {self.split}")
            return [self._source(v, prefix) for v in apply_holdout(chosen, self.holdout, where)]

        def _source(self, v: ShanghaiTechVideo, prefix: str) -> "ShanghaiTechSource":
            sid = f"{prefix}/{v.name}"
            inner: FileSource
            if v.video_path is not None:
                inner = VideoFileSource(sid, v.video_path, backend=self.backend, fps=self.fps)
            else:
                inner = ImageSequenceSource(sid, v.frame_paths or (), self.fps)
            masks = (lambda p=v.mask_path: _pixel_masks(p)) if self.masks and v.mask_path is not None else None
            return ShanghaiTechSource(inner, v.labels if v.label_path is not None else None, masks=masks,
                                      truth_file=v.label_path, video=v.name, realtime=self.realtime,
                                      max_frames=self.max_frames)
