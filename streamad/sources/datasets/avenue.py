"""CUHK Avenue, official layout, as streams with ground truth.

Layout (Lu, Shi, Jia, "Abnormal Event Detection at 150 FPS in MATLAB", ICCV 2013; anomalib ``make_avenue_dataset``)::

    <root>/Avenue Dataset/training_videos/01.avi .. 16.avi      normal training videos
    <root>/Avenue Dataset/testing_videos/01.avi .. 21.avi       test videos
    <root>/Avenue Dataset/testing_label_mask/1_label.mat ..     ground truth, one file per test video

The dataset folder's name is configurable (``folder``: ``Avenue Dataset`` as the release unpacks, or ``avenue``).
The ground-truth files may also lie in ``ground_truth_demo/testing_label_mask/`` (how ``ground_truth_demo.zip``
unpacks), inside the dataset folder or beside it. Each is a MATLAB v5 file whose variable ``volLabel`` is a
``1 x N`` cell of ``(H, W)`` masks, one per frame of the video; a frame is anomalous iff its mask has a non-zero
pixel. Videos are decoded by :class:`~streamad.sources.video_file.VideoFileSource` (PyAV or decord); the videos are
25 frames/s and ``pts = index / fps``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.io
from pydantic import Field

from streamad.errors import DataNotFoundError, SourceError
from streamad.parts import BuildContext, SourceConfig
from streamad.registry import SOURCES
from streamad.sources.datasets.ground_truth import GroundTruthSource, select_videos
from streamad.sources.datasets.holdout import HoldoutConfig, apply_holdout
from streamad.sources.datasets.missing import DatasetHelp
from streamad.sources.image_folder import natural_key
from streamad.sources.pacing import check_source_config
from streamad.sources.video_file import VideoFileSource, probe_video

__all__ = ["AVENUE_URL", "AvenueVideo", "avenue_videos", "read_vol_label", "AvenueSource"]

AVENUE_URL = "http://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/dataset.html"
DEFAULT_FOLDER = "Avenue Dataset"
_HELP = DatasetHelp("CUHK Avenue", "unpack 'Avenue Dataset.zip' there so that <data root>/{folder}/testing_videos/"
                    "01.avi exists (or set the source's root and folder), and unpack ground_truth_demo.zip for the test "
                    f"labels. Get both from {AVENUE_URL}.")
_SPLIT_DIRS = {"train": "training_videos", "test": "testing_videos"}
_LABEL_DIR = "testing_label_mask"
_DEMO_DIR = "ground_truth_demo"
_VIDEO = re.compile(r"\d+")


@dataclass(frozen=True, eq=False)
class AvenueVideo:
    """One video of the dataset, listed without decoding.

    Attributes:
        split: ``train`` or ``test``.
        name: the file name without ``.avi`` (``01``).
        path: the video file.
        num_frames: the frame count the file's header declares.
        labels: ``(N,) uint8`` frame labels (1 anomalous) from ``label_path`` for test videos; all 0 (``N`` from the
            header) for training videos.
        label_path: the ``<n>_label.mat`` file of a test video (its ``volLabel`` masks), ``None`` for training.
    """

    split: str
    name: str
    path: Path
    num_frames: int
    labels: np.ndarray
    label_path: Path | None


def read_vol_label(mat_path: Path) -> list[np.ndarray]:
    """The masks of an Avenue ground-truth file: its ``volLabel`` cell, one ``(H, W) bool`` mask per frame.

    Raises:
        DataNotFoundError: the file cannot be read as a MATLAB v5 file, lacks ``volLabel``, or ``volLabel`` is not
            a cell of 2-D masks (names the file).
    """
    try:
        mat = scipy.io.loadmat(str(mat_path), variable_names=["volLabel"])
    except NotImplementedError:
        raise DataNotFoundError(f"{mat_path}: MATLAB v7.3 (HDF5) files are not supported; the official Avenue "
                                f"ground truth is MATLAB v5 (get it again from {AVENUE_URL})") from None
    except (OSError, ValueError, TypeError, scipy.io.matlab.MatReadError) as exc:
        raise DataNotFoundError(f"{mat_path}: cannot read Avenue ground truth: {exc}") from None
    cell = mat.get("volLabel")
    if cell is None:
        found = sorted(name for name, _, _ in scipy.io.whosmat(str(mat_path)))
        raise DataNotFoundError(f"{mat_path}: no variable 'volLabel' (found {found or 'none'}); expected the "
                                f"Avenue ground truth, a 1xN cell of masks")
    if not (isinstance(cell, np.ndarray) and cell.dtype == object):
        raise DataNotFoundError(f"{mat_path}: 'volLabel' is a {getattr(cell, 'dtype', type(cell))} array, expected "
                                f"a 1xN cell of masks")
    masks = []
    for i, m in enumerate(cell.ravel()):
        m = np.asarray(m)
        if m.ndim != 2 or not (np.issubdtype(m.dtype, np.number) or m.dtype == bool):
            raise DataNotFoundError(f"{mat_path}: volLabel{{{i + 1}}} is a {m.dtype} array of shape {m.shape}, "
                                    f"expected a 2-D mask")
        masks.append(m > 0)
    return masks


def _label_dirs(dataset: Path) -> list[Path]:
    return [dataset / _LABEL_DIR, dataset / _DEMO_DIR / _LABEL_DIR, dataset.parent / _DEMO_DIR / _LABEL_DIR]


def avenue_videos(root: str | Path, split: str = "test", folder: str = DEFAULT_FOLDER) -> list[AvenueVideo]:
    """List the videos of one split, with frame counts, frame labels and ground-truth files.

    Test labels are read from the ``.mat`` files (every mask is loaded once and reduced to ``any``).

    Args:
        root: the folder holding the dataset folder.
        split: ``train`` or ``test``.
        folder: the dataset folder's name (``Avenue Dataset`` or ``avenue``).

    Returns:
        The videos in natural order (``01``, ``02``, ...).

    Raises:
        ValueError: unknown ``split``.
        DataNotFoundError: the split folder is missing or holds no ``NN.avi``, a test video has no ``<n>_label.mat``
            (names the expected files), a ground-truth file cannot be read, or its frame count differs from the
            video's (names the file and both counts).
        SourceError: a video file cannot be opened (names the file).
    """
    if split not in _SPLIT_DIRS:
        raise ValueError(f"split must be one of {sorted(_SPLIT_DIRS)}, got {split!r}")
    dataset = Path(root) / folder
    split_dir = dataset / _SPLIT_DIRS[split]
    if not split_dir.is_dir():
        raise _HELP.missing(split_dir, f"no {_SPLIT_DIRS[split]} folder", folder=folder)
    files = sorted((p for p in split_dir.iterdir() if p.suffix.lower() == ".avi" and _VIDEO.fullmatch(p.stem)
                    and p.is_file()), key=lambda p: natural_key(p.name))
    if not files:
        raise _HELP.missing(split_dir, f"no NN.avi video in {_SPLIT_DIRS[split]}", folder=folder)
    label_dir = next((d for d in _label_dirs(dataset) if d.is_dir()), None) if split == "test" else None
    if split == "test" and label_dir is None:
        raise _HELP.missing(dataset, "no ground-truth folder (" + ", ".join(str(d) for d in _label_dirs(dataset))
                            + ")", folder=folder)
    videos = []
    for path in files:
        info = probe_video(path)
        if info.frames is None:
            raise DataNotFoundError(f"{path}: the file does not declare its frame count; expected the official "
                                    f"Avenue .avi (get it from {AVENUE_URL})")
        if label_dir is None:
            videos.append(AvenueVideo(split, path.stem, path, info.frames, np.zeros(info.frames, np.uint8), None))
            continue
        mat = label_dir / f"{int(path.stem)}_label.mat"
        if not mat.is_file():
            raise DataNotFoundError(f"{mat}: ground truth of {path} not found; unpack ground_truth_demo.zip from "
                                    f"{AVENUE_URL}")
        labels = np.array([m.any() for m in read_vol_label(mat)], np.uint8)
        if labels.size != info.frames:
            raise DataNotFoundError(f"{mat}: volLabel holds {labels.size} frame masks but {path} has "
                                    f"{info.frames} frames")
        videos.append(AvenueVideo(split, path.stem, path, info.frames, labels, mat))
    return videos


def _video_name(value: int | str) -> str:
    return f"{value:02d}" if isinstance(value, int) else value


@SOURCES.register("avenue")
class AvenueSource(GroundTruthSource):
    """``kind: avenue``: one stream per video of a CUHK Avenue split, with labels and masks on test frames.

    Stream ids are ``"{id or 'avenue'}/{video}"`` (``avenue/01``); ``Frame.video`` is the video name.
    Follows anomalib ``Avenue`` / ``make_avenue_dataset`` (layout, ``volLabel`` masks).
    """

    class Config(SourceConfig):
        """Config of ``kind: avenue``.

        Attributes:
            root: the folder holding the dataset folder, relative to the data root (``$STREAMAD_DATA`` /
                ``data_root``); default the data root itself.
            folder: the dataset folder's name (``Avenue Dataset`` or ``avenue``).
            split: ``train`` (labels 0, no masks) or ``test`` (labels and masks from ``volLabel``).
            videos: play only these videos (``[1, 3]`` or ``["01", "03"]``), in this order; ``None`` = all.
            holdout: play only the fitting part or the held-out part of the videos (after ``videos``), see
                :mod:`streamad.sources.datasets.holdout`; ``None`` = all.
            fps: frame rate in frames per second for ``pts`` and ``realtime`` (default 25, the videos' rate).
            masks: attach ground-truth masks ``(H, W) bool`` to test frames.
            backend: video decoder, ``pyav`` or ``decord``.
            id: stream id prefix; defaults to ``avenue``.
        """

        kind: Literal["avenue"] = "avenue"
        root: str = "."
        folder: str = DEFAULT_FOLDER
        split: Literal["train", "test"]
        videos: list[int | str] | None = None
        holdout: HoldoutConfig | None = None
        fps: float = Field(25.0, gt=0)
        masks: bool = True
        backend: Literal["pyav", "decord"] = "pyav"

        def build(self, ctx: BuildContext, where: str) -> list["AvenueSource"]:
            """One stream per video.

            Raises:
                DataNotFoundError: the dataset or a ground-truth file is missing, or a ground-truth file's frame
                    count differs from its video's (names ``where`` and the file).
                ConfigError: ``videos`` names a video the split does not have (names ``<where>.videos``).
            """
            check_source_config(self, where)
            try:
                listed = avenue_videos(ctx.resolve(self.root), self.split, self.folder)
            except (DataNotFoundError, SourceError) as exc:
                raise type(exc)(f"{where}: {exc}") from None
            names = None if self.videos is None else [_video_name(v) for v in self.videos]
            prefix = self.id or "avenue"
            return [AvenueSource(
                VideoFileSource(f"{prefix}/{v.name}", v.path, backend=self.backend, fps=self.fps),
                v.labels if v.label_path is not None else None,
                masks=(lambda p=v.label_path: read_vol_label(p)) if self.masks and v.label_path else None,
                truth_file=v.label_path, video=v.name, realtime=self.realtime, max_frames=self.max_frames)
                for v in apply_holdout(select_videos(listed, names, where, f"Avenue {self.split}"), self.holdout, where)]
