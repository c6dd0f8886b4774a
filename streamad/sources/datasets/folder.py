"""Image anomaly datasets from folders: anomalib's ``Folder`` layout, MVTec AD, and the Magnetic Tile split.

Each image is one frame; a split is one stream per folder (a class), with the frame label (0 normal, 1 anomalous)
and the ground-truth mask (all False for normal images without one). Images may differ in size.

* ``kind: folder`` (anomalib ``Folder`` / ``make_folder_dataset``): ``normal_dir``, ``abnormal_dir``,
  ``normal_test_dir`` and ``mask_dir`` under ``root`` (each a folder or a list of folders). Masks are matched to
  abnormal images by file stem (``000.png`` or ``000_mask.png``). Without ``normal_test_dir``, a seeded
  ``normal_split_ratio`` of the normal images goes to the test split (anomalib's ``normal_split_ratio``).
* ``kind: mvtec`` (MVTec AD, Bergmann et al., CVPR 2019): ``<root>/<category>/train/good``,
  ``test/<defect>/*.png``, ``ground_truth/<defect>/*_mask.png``.
* ``kind: magnetic_tile`` (Huang, Qiu, Yuan, "Surface defect saliency of magnetic tile", The Visual Computer 2020;
  GitHub abin24/Magnetic-tile-defect-datasets): ``<root>/MT_<class>/Imgs/<name>.jpg`` with the mask ``<name>.png``
  beside it. Train = a fixed, seeded ``train_ratio`` (80 %) of ``MT_Free``. The rest of ``MT_Free`` and every image
  of the defect classes (``MT_Blowhole``, ``MT_Break``, ``MT_Crack``, ``MT_Fray``, ``MT_Uneven``) are held out and
  cut, class by class and seeded, into two halves: ``validation`` (for choosing settings, early stopping and
  thresholds) and ``test`` (for reporting once). The dataset ships no validation split of its own; this one is
  streamad's.

Sources of these kinds mark themselves as image datasets (``image_dataset``), so ``streamad eval`` reports
image- and pixel-level metrics for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Sequence

import numpy as np
from pydantic import Field

from streamad.errors import ConfigError, DataNotFoundError
from streamad.parts import BuildContext, SourceConfig
from streamad.registry import SOURCES
from streamad.sources.image_folder import IMAGE_EXTENSIONS, ImageSequenceSource, list_images
from streamad.sources.pacing import check_source_config

__all__ = ["ImageSample", "folder_samples", "mvtec_samples", "magnetic_tile_samples", "samples_to_sources",
           "MAGNETIC_TILE_URL", "MVTEC_URL", "FolderDatasetSource", "MvtecSource", "MagneticTileSource"]

MAGNETIC_TILE_URL = "https://github.com/abin24/Magnetic-tile-defect-datasets"
MVTEC_URL = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
_MT_DEFECTS = ("MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven")


@dataclass(frozen=True)
class ImageSample:
    """One image of a dataset, listed without decoding.

    Attributes:
        path: the image file. label: 0 normal, 1 anomalous. mask: the mask file or ``None`` (no mask: normal).
        group: the folder (class) it belongs to; streams are per group (``MT_Crack``, ``good``).
    """

    path: Path
    label: int
    mask: Path | None
    group: str


def _dirs(root: Path, value: str | Sequence[str] | None) -> list[Path]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [p if p.is_absolute() else root / p for p in (Path(v) for v in items)]


def _images(folder: Path, extensions: Sequence[str], where: str) -> list[Path]:
    if not folder.is_dir():
        raise DataNotFoundError(f"{where}: folder not found: {folder}")
    files = list_images(folder, extensions)
    if not files:
        raise DataNotFoundError(f"{where}: no images ({', '.join(extensions)}) in {folder}")
    return files


def _split_normals(files: list[Path], ratio: float, seed: int) -> tuple[list[Path], list[Path]]:
    """``(train, test)``: a seeded random ``ratio`` of ``files`` (rounded) goes to test; both keep file order."""
    perm = np.random.default_rng(seed).permutation(len(files))
    n_test = int(round(ratio * len(files)))
    test = set(perm[:n_test].tolist())
    return ([f for i, f in enumerate(files) if i not in test], [f for i, f in enumerate(files) if i in test])


def _mask_for(image: Path, mask_dirs: list[Path], where: str) -> Path:
    for d in mask_dirs:
        for stem in (image.stem, f"{image.stem}_mask"):
            for ext in IMAGE_EXTENSIONS:
                cand = d / f"{stem}{ext}"
                if cand.is_file():
                    return cand
    raise DataNotFoundError(f"{where}: no mask for {image.name} in {', '.join(str(d) for d in mask_dirs)} "
                            f"(expected {image.stem}.png or {image.stem}_mask.png)")


def folder_samples(root: str | Path, normal_dir: str | Sequence[str], split: str,
                   abnormal_dir: str | Sequence[str] | None = None, normal_test_dir: str | Sequence[str] | None = None,
                   mask_dir: str | Sequence[str] | None = None, normal_split_ratio: float = 0.2, seed: int = 0,
                   extensions: Sequence[str] = IMAGE_EXTENSIONS, where: str = "folder") -> list[ImageSample]:
    """The images of one split of an anomalib ``Folder`` dataset.

    Args:
        root: dataset folder; relative folder names are under it.
        normal_dir, abnormal_dir, normal_test_dir, mask_dir: folders (one or a list).
        split: ``train`` (normal images), ``test`` (held-out or ``normal_test_dir`` normals + abnormal images) or
            ``full`` (everything).
        normal_split_ratio: fraction of ``normal_dir`` images moved to test when ``normal_test_dir`` is not given.
        seed: seed of that split. extensions: image suffixes.
        where: config key path for error messages.

    Raises:
        DataNotFoundError: a folder is missing or empty, or an abnormal image has no mask while ``mask_dir`` is set.
        ValueError: unknown split.
    """
    if split not in ("train", "test", "full"):
        raise ValueError(f"{where}.split: must be train, test or full, got {split!r}")
    base = Path(root)
    normals = [f for d in _dirs(base, normal_dir) for f in _images(d, extensions, f"{where}.normal_dir")]
    if normal_test_dir is not None:
        train_n = normals
        test_n = [f for d in _dirs(base, normal_test_dir) for f in _images(d, extensions, f"{where}.normal_test_dir")]
    else:
        train_n, test_n = _split_normals(normals, normal_split_ratio, seed)
    masks = _dirs(base, mask_dir)
    out: list[ImageSample] = []
    if split in ("train", "full"):
        out += [ImageSample(f, 0, None, f.parent.name) for f in train_n]
    if split in ("test", "full"):
        out += [ImageSample(f, 0, None, f.parent.name) for f in test_n]
        for d in _dirs(base, abnormal_dir):
            for f in _images(d, extensions, f"{where}.abnormal_dir"):
                out.append(ImageSample(f, 1, _mask_for(f, masks, f"{where}.mask_dir") if masks else None, d.name))
    return out


def mvtec_samples(root: str | Path, category: str, split: str, where: str = "mvtec") -> list[ImageSample]:
    """The images of an MVTec AD category's ``train`` or ``test`` split (test masks from ``ground_truth``).

    Raises:
        DataNotFoundError: the category's folders are missing (the message says where to get the dataset).
        ValueError: unknown split.
    """
    if split not in ("train", "test"):
        raise ValueError(f"{where}.split: must be train or test, got {split!r}")
    cat = Path(root) / category
    if not (cat / "train" / "good").is_dir():
        raise DataNotFoundError(f"{where}: MVTec AD category {category!r} not found (looked for "
                                f"{(cat / 'train' / 'good').resolve()}); get the dataset from {MVTEC_URL}")
    if split == "train":
        return [ImageSample(f, 0, None, "good") for f in _images(cat / "train" / "good", (".png",), where)]
    out: list[ImageSample] = []
    test_dir = cat / "test"
    for d in sorted(p for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []:
        files = _images(d, (".png",), where)
        if d.name == "good":
            out += [ImageSample(f, 0, None, "good") for f in files]
        else:
            gt = [cat / "ground_truth" / d.name]
            out += [ImageSample(f, 1, _mask_for(f, gt, where), d.name) for f in files]
    if not out:
        raise DataNotFoundError(f"{where}: no test images under {test_dir}")
    return out


MT_SPLITS = ("train", "validation", "test")


def magnetic_tile_samples(root: str | Path, split: str, train_ratio: float = 0.8, seed: int = 0,
                          where: str = "magnetic_tile") -> list[ImageSample]:
    """The Magnetic Tile split: train = seeded ``train_ratio`` of ``MT_Free``; the held-out images, the rest of
    ``MT_Free`` (label 0, their all-zero masks) and every defect image (label 1, its mask), are cut per class into
    ``validation`` (a seeded ``floor(n / 2)`` of each class) and ``test`` (the other ``ceil(n / 2)``).

    Raises:
        DataNotFoundError: a class folder is missing, or a defect image has no mask (names the file and says where
            to get the dataset).
        ValueError: unknown split or ``train_ratio`` not in ``(0, 1)``.
    """
    if split not in MT_SPLITS:
        raise ValueError(f"{where}.split: must be one of {', '.join(MT_SPLITS)}, got {split!r}")
    if not 0 < train_ratio < 1:
        raise ValueError(f"{where}.train_ratio: must be in (0, 1), got {train_ratio}")
    base = Path(root)

    def listing(name: str) -> list[Path]:
        folder = base / name / "Imgs"
        if not folder.is_dir():
            raise DataNotFoundError(f"{where}: Magnetic Tile class folder {folder.resolve()} not found; get the "
                                    f"dataset from {MAGNETIC_TILE_URL} and set the source's root (data root + "
                                    f"'magnetic_tile' by default)")
        return _images(folder, (".jpg",), where)

    free = listing("MT_Free")
    train, test_free = _split_normals(free, 1.0 - train_ratio, seed)
    if split == "train":
        return [ImageSample(f, 0, None, "MT_Free") for f in train]

    def mask(image: Path) -> Path:
        m = image.with_suffix(".png")
        if not m.is_file():
            raise DataNotFoundError(f"{where}: {image} has no mask {m.name} beside it; re-download the dataset from "
                                    f"{MAGNETIC_TILE_URL}")
        return m

    def half(files: list[Path], cls: int) -> list[Path]:
        # seeded per class and apart from the train split's draw (seed + 1 + class index)
        test, val = _split_normals(files, (len(files) // 2) / len(files), seed + 1 + cls)
        return val if split == "validation" else test

    out = [ImageSample(f, 0, mask(f), "MT_Free") for f in half(test_free, 0)]
    for i, name in enumerate(_MT_DEFECTS, start=1):
        out += [ImageSample(f, 1, mask(f), name) for f in half(listing(name), i)]
    return out


def samples_to_sources(samples: list[ImageSample], prefix: str, fps: float, realtime: bool = False,
                       max_frames: int | None = None) -> list[ImageSequenceSource]:
    """One stream ``<prefix>/<group>`` per group of ``samples`` (in order of first appearance). Normal images
    without a mask file get an all-False mask only when their stream has masks for other images."""
    groups: dict[str, list[ImageSample]] = {}
    for s in samples:
        groups.setdefault(s.group, []).append(s)
    out = []
    for group, items in groups.items():
        masks = None
        if any(s.mask is not None for s in items):
            if any(s.mask is None for s in items):
                raise ValueError(f"{prefix}/{group}: some images have masks and others do not")
            masks = [s.mask for s in items]
        out.append(ImageSequenceSource(f"{prefix}/{group}", [s.path for s in items], fps,
                                       labels=[s.label for s in items], mask_paths=masks, video=group,
                                       realtime=realtime, max_frames=max_frames))
    return out


class _ImageDatasetConfig(SourceConfig):
    """Fields of every image-dataset source. ``fps`` sets ``pts`` (one image per frame; default 10)."""

    image_dataset: ClassVar[bool] = True
    fps: float = Field(10.0, gt=0)

    def _sources(self, samples: list[ImageSample], prefix: str, where: str) -> list[ImageSequenceSource]:
        if not samples:
            raise ConfigError(f"{where}: the split holds no image")
        return samples_to_sources(samples, self.id or prefix, self.fps, self.realtime, self.max_frames)


@SOURCES.register("folder")
class FolderDatasetSource(ImageSequenceSource):
    """``kind: folder``: an anomalib ``Folder`` dataset split (see the module doc); one stream per folder."""

    class Config(_ImageDatasetConfig):
        """Config of ``kind: folder`` (anomalib ``Folder`` names).

        Attributes:
            root: dataset folder (relative to the data root).
            normal_dir, abnormal_dir, normal_test_dir, mask_dir: folders under ``root`` (one or a list).
            split: ``train``, ``test`` or ``full``.
            normal_split_ratio, seed: held-out normals when there is no ``normal_test_dir``.
            extensions: image suffixes. id: stream id prefix (default: ``root``'s name).
        """

        kind: Literal["folder"] = "folder"
        root: str
        normal_dir: str | list[str]
        abnormal_dir: str | list[str] | None = None
        normal_test_dir: str | list[str] | None = None
        mask_dir: str | list[str] | None = None
        split: Literal["train", "test", "full"]
        normal_split_ratio: float = Field(0.2, ge=0, lt=1)
        seed: int = 0
        extensions: list[str] = Field(default_factory=lambda: list(IMAGE_EXTENSIONS), min_length=1)

        def build(self, ctx: BuildContext, where: str) -> list[ImageSequenceSource]:
            """One stream per folder of the split.

            Raises:
                DataNotFoundError: a folder is missing or empty, an abnormal image has no mask.
                ConfigError: the split holds no image.
            """
            check_source_config(self, where)
            root = ctx.resolve(self.root)
            samples = folder_samples(root, self.normal_dir, self.split, self.abnormal_dir, self.normal_test_dir,
                                     self.mask_dir, self.normal_split_ratio, self.seed, self.extensions, where)
            return self._sources(samples, root.name, where)


@SOURCES.register("mvtec")
class MvtecSource(ImageSequenceSource):
    """``kind: mvtec``: one MVTec AD category split; streams ``<category>/<good|defect>``."""

    class Config(_ImageDatasetConfig):
        """Config of ``kind: mvtec``.

        Attributes:
            root: the extracted dataset folder (relative to the data root). category: e.g. ``bottle``.
            split: ``train`` or ``test``. id: stream id prefix (default: the category).
        """

        kind: Literal["mvtec"] = "mvtec"
        root: str = "MVTec"
        category: str
        split: Literal["train", "test"]

        def build(self, ctx: BuildContext, where: str) -> list[ImageSequenceSource]:
            """One stream per class folder. Raises DataNotFoundError when the category is missing."""
            check_source_config(self, where)
            return self._sources(mvtec_samples(ctx.resolve(self.root), self.category, self.split, where),
                                 self.category, where)


@SOURCES.register("magnetic_tile")
class MagneticTileSource(ImageSequenceSource):
    """``kind: magnetic_tile``: the Magnetic Tile split; streams ``magnetic_tile/MT_<class>``."""

    class Config(_ImageDatasetConfig):
        """Config of ``kind: magnetic_tile``.

        Attributes:
            root: folder holding ``MT_Free/`` ... (relative to the data root; default ``magnetic_tile``).
            split: ``train`` (seeded ``train_ratio`` of MT_Free), ``validation`` or ``test`` (each a seeded half,
                class by class, of the rest of MT_Free and of every defect class).
            train_ratio: share of MT_Free used for training. seed: seed of that split.
            id: stream id prefix (default ``magnetic_tile``).
        """

        kind: Literal["magnetic_tile"] = "magnetic_tile"
        root: str = "magnetic_tile"
        split: Literal["train", "validation", "test"]
        train_ratio: float = Field(0.8, gt=0, lt=1)
        seed: int = 0

        def build(self, ctx: BuildContext, where: str) -> list[ImageSequenceSource]:
            """One stream per class folder. Raises DataNotFoundError when the data is missing."""
            check_source_config(self, where)
            samples = magnetic_tile_samples(ctx.resolve(self.root), self.split, self.train_ratio, self.seed, where)
            return self._sources(samples, "magnetic_tile", where)
