"""UCSD Anomaly Detection Dataset (Ped1 / Ped2), official v1p2 layout, as streams with ground truth.

Layout (anomalib ``make_ucsd_dataset``; Mahadevan, Li, Bhalodia, Vasconcelos, "Anomaly Detection in Crowded Scenes",
CVPR 2010)::

    <root>/UCSDpedN/Train/Train001/001.tif ...        normal training clips
    <root>/UCSDpedN/Test/Test001/001.tif ...          test clips
    <root>/UCSDpedN/Test/Test001_gt/001.bmp ...       pixel masks, one per frame (Ped1: only some clips)
    <root>/UCSDpedN/Test/UCSDpedN.m                   frame labels: ``TestVideoFile{end+1}.gt_frame = [61:180];``

Frames may be ``.tif`` / ``.jpg`` / ``.png``, masks ``.bmp`` / ``.png``. Frame labels come from the ``.m`` file
(1-based inclusive ranges; Ped1 has entries with several ranges such as ``[5:90, 140:200]``); without it, a frame is
anomalous iff its mask has an anomalous pixel. The dataset has no frame rate; ``fps`` (default 10) sets ``pts``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from streamad.errors import ConfigError, DataNotFoundError
from streamad.parts import BuildContext, SourceConfig
from streamad.registry import SOURCES
from streamad.sources.datasets.ground_truth import select_videos
from streamad.sources.datasets.holdout import HoldoutConfig, apply_holdout
from streamad.sources.datasets.missing import DatasetHelp
from streamad.sources.image_folder import ImageSequenceSource, list_images, natural_key, read_mask
from streamad.sources.pacing import check_source_config

__all__ = ["UCSD_URL", "UcsdVideo", "ucsd_videos", "parse_gt_frames", "UcsdPedSource"]

UCSD_URL = "http://www.svcl.ucsd.edu/projects/anomaly/UCSD_Anomaly_Dataset.tar.gz"
_RELEASE_FOLDER = "UCSD_Anomaly_Dataset.v1p2"
_HELP = DatasetHelp("UCSD Anomaly Dataset", f"extract the release there so that <data root>/{_RELEASE_FOLDER}/"
                    "{category}/Test/Test001/ exists (or set the source's root to the extracted "
                    f"{_RELEASE_FOLDER} folder). Get it from {UCSD_URL} (tar xzf UCSD_Anomaly_Dataset.tar.gz).")
_SPLIT_DIRS = {"train": "Train", "test": "Test"}
_GT_LINE = re.compile(r"gt_frame\s*=\s*\[([^\]]*)\]")
_RANGE = re.compile(r"(\d+)\s*(?::\s*(\d+))?")


@dataclass(frozen=True, eq=False)
class UcsdVideo:
    """One clip of the dataset, listed without decoding.

    Attributes:
        category: ``UCSDped1`` or ``UCSDped2``.
        split: ``train`` or ``test``.
        name: clip folder name (``Test001``).
        frame_paths: the clip's frames in order (natural sort of the file names).
        labels: ``(N,) uint8`` frame labels (1 anomalous) for ``N`` frames; all 0 for training clips; ``None`` for
            a test clip with neither a ``.m`` entry nor masks.
        mask_paths: ``N`` mask files (``<name>_gt/``), or ``None`` when the clip has no masks.
    """

    category: str
    split: str
    name: str
    frame_paths: tuple[Path, ...]
    labels: np.ndarray | None
    mask_paths: tuple[Path, ...] | None

    @property
    def num_frames(self) -> int:
        """Number of frames of the clip."""
        return len(self.frame_paths)


def parse_gt_frames(m_path: Path) -> list[list[tuple[int, int]]]:
    """Parse a UCSD ``.m`` label file: per ``gt_frame`` line (line ``k`` is clip ``Test{k:03d}``), the anomalous
    frame ranges as 1-based inclusive ``(first, last)`` pairs (``[5:90, 140:200]`` gives two; ``[7]`` one frame).

    Raises:
        DataNotFoundError: the file cannot be read or a ``gt_frame`` entry is not a list of ranges (names the file).
    """
    try:
        text = m_path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataNotFoundError(f"{m_path}: cannot read UCSD label file: {exc}") from None
    out: list[list[tuple[int, int]]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _GT_LINE.search(line.split("%", 1)[0])
        if m is None:
            continue
        ranges = []
        for part in filter(None, (p.strip() for p in m.group(1).replace(";", ",").split(","))):
            r = _RANGE.fullmatch(part)
            if r is None:
                raise DataNotFoundError(f"{m_path}:{lineno}: expected frame ranges like [61:180] or "
                                        f"[5:90, 140:200], got {m.group(0)!r}")
            first = int(r.group(1))
            ranges.append((first, int(r.group(2)) if r.group(2) else first))
        out.append(ranges)
    return out


def _labels_from_ranges(n: int, ranges: list[tuple[int, int]]) -> np.ndarray:
    labels = np.zeros(n, np.uint8)
    for first, last in ranges:
        labels[max(first, 1) - 1:min(last, n)] = 1
    return labels


def ucsd_videos(root: str | Path, category: str = "UCSDped2", split: str = "test") -> list[UcsdVideo]:
    """List the clips of one category and split, with frame paths, frame labels and mask paths.

    Args:
        root: the extracted release folder (``.../UCSD_Anomaly_Dataset.v1p2``).
        category: ``UCSDped1`` or ``UCSDped2``.
        split: ``train`` or ``test``.

    Returns:
        The clips in natural order (``Test001``, ``Test002``, ...).

    Raises:
        ValueError: unknown ``split``.
        DataNotFoundError: the split folder is missing or holds no clip, a clip has no frame, or a clip's mask
            count differs from its frame count (the message says where it looked and how to get the dataset).
    """
    if split not in _SPLIT_DIRS:
        raise ValueError(f"split must be one of {sorted(_SPLIT_DIRS)}, got {split!r}")
    split_dir = Path(root) / category / _SPLIT_DIRS[split]
    if not split_dir.is_dir():
        raise _HELP.missing(split_dir, f"no {category} {split} folder", category=category)
    prefix = _SPLIT_DIRS[split]
    clip_re = re.compile(rf"{prefix}\d+")
    clips = sorted((d for d in split_dir.iterdir() if d.is_dir() and clip_re.fullmatch(d.name)),
                   key=lambda d: natural_key(d.name))
    if not clips:
        raise _HELP.missing(split_dir, f"no {prefix}NNN clip folder in the {category} {split} folder",
                            category=category)
    gt: list[list[tuple[int, int]]] | None = None
    if split == "test":
        m_path = split_dir / f"{category}.m"
        gt = parse_gt_frames(m_path) if m_path.is_file() else None
    videos = []
    for clip in clips:
        frames = tuple(list_images(clip))
        if not frames:
            raise DataNotFoundError(f"{clip}: no frame images (.tif/.jpg/.png/.bmp) in this UCSD clip folder; "
                                    f"re-extract the dataset from {UCSD_URL}")
        masks = None
        gt_dir = split_dir / f"{clip.name}_gt"
        if split == "test" and gt_dir.is_dir():
            masks = tuple(list_images(gt_dir))
            if len(masks) != len(frames):
                raise DataNotFoundError(f"{gt_dir}: {len(masks)} masks for {len(frames)} frames in {clip}; "
                                        f"re-extract the dataset from {UCSD_URL}")
        videos.append(UcsdVideo(category, split, clip.name, frames, _clip_labels(clip.name, split, frames, masks, gt),
                                masks))
    return videos


def _clip_labels(name: str, split: str, frames: tuple[Path, ...], masks: tuple[Path, ...] | None,
                 gt: list[list[tuple[int, int]]] | None) -> np.ndarray | None:
    if split == "train":
        return np.zeros(len(frames), np.uint8)
    number = int(re.sub(r"\D", "", name))
    if gt is not None and 1 <= number <= len(gt):
        return _labels_from_ranges(len(frames), gt[number - 1])
    if masks is not None:
        return np.array([read_mask(p).any() for p in masks], np.uint8)
    return None


@SOURCES.register("ucsd_ped")
class UcsdPedSource(ImageSequenceSource):
    """``kind: ucsd_ped``: one stream per clip of a UCSD Ped1/Ped2 split, with labels and masks on test frames.

    Stream ids are ``"{id or category}/{video}"`` (``UCSDped2/Test001``); ``Frame.video`` is the clip name.
    Follows anomalib ``UCSDped`` / ``make_ucsd_dataset`` (layout, ``_gt`` masks).
    """

    class Config(SourceConfig):
        """Config of ``kind: ucsd_ped``.

        Attributes:
            root: the extracted release folder, relative to the data root (``$STREAMAD_DATA`` / ``data_root``).
            category: ``UCSDped1`` or ``UCSDped2``.
            split: ``train`` (labels 0, no masks) or ``test`` (labels from the ``.m`` file, masks from ``_gt``).
            videos: play only these clips (e.g. ``[Test001]``), in this order; ``None`` = all.
            holdout: play only the fitting part or the held-out part of the clips (after ``videos``), see
                :mod:`streamad.sources.datasets.holdout`; ``None`` = all.
            fps: frame rate in frames per second for ``pts`` and ``realtime`` (the dataset has none; 10 by default).
            masks: attach ground-truth masks ``(H, W) bool`` to test frames.
            id: stream id prefix; defaults to ``category``.
        """

        kind: Literal["ucsd_ped"] = "ucsd_ped"
        root: str = _RELEASE_FOLDER
        category: Literal["UCSDped1", "UCSDped2"] = "UCSDped2"
        split: Literal["train", "test"]
        videos: list[str] | None = None
        holdout: HoldoutConfig | None = None
        fps: float = Field(10.0, gt=0)
        masks: bool = True

        def build(self, ctx: BuildContext, where: str) -> list["UcsdPedSource"]:
            """One stream per clip.

            Raises:
                DataNotFoundError: the dataset is not under the data root (the message says how to get it).
                ConfigError: ``videos`` names a clip the split does not have (names ``<where>.videos``).
            """
            check_source_config(self, where)
            try:
                listed = ucsd_videos(ctx.resolve(self.root), self.category, self.split)
            except DataNotFoundError as exc:
                raise DataNotFoundError(f"{where}: {exc}") from None
            listed = apply_holdout(select_videos(listed, self.videos, where, f"{self.category} {self.split}"),
                                   self.holdout, where)
            prefix = self.id or self.category
            return [UcsdPedSource(f"{prefix}/{v.name}", list(v.frame_paths), self.fps, labels=v.labels,
                                  mask_paths=list(v.mask_paths) if self.masks and v.mask_paths else None,
                                  video=v.name, realtime=self.realtime, max_frames=self.max_frames)
                    for v in listed]
