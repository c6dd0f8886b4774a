"""A disk-backed set of images at a model's input size, with optional labels and masks: what image models are
fitted on.

Frames arrive one by one from the pipeline (:meth:`ImageSet.append`, resized to the model's input size) and are
written to raw files in a temporary folder; reading (:meth:`ImageSet.batches`) memory-maps them, so a training set
costs disk, not memory, and gradient-trained models can read it once per epoch.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from streamad.models.image.preprocess import resize_image, resize_mask

__all__ = ["ImageSet", "ImageBatch"]


@dataclass
class ImageBatch:
    """A batch read from an :class:`ImageSet`.

    Attributes:
        images: ``(B, h, w, 3) uint8`` RGB at the set's size.
        labels: ``(B,) int64``: 0 normal, 1 anomalous, -1 unknown.
        masks: ``(B, h, w) bool`` ground truth; all False where an image had no mask (see ``has_mask``).
        has_mask: ``(B,) bool``.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    has_mask: np.ndarray


class ImageSet:
    """Append-only image store at a fixed ``size``; a context manager that deletes its files on exit.

    Args:
        size: ``(height, width)`` the images are resized to.
        directory: where to keep the raw files (a new temporary folder by default, removed by :meth:`close`).
    """

    def __init__(self, size: tuple[int, int], directory: str | Path | None = None) -> None:
        self.size = (int(size[0]), int(size[1]))
        self._own = directory is None
        self.dir = Path(tempfile.mkdtemp(prefix="streamad-images-")) if directory is None else Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._img = open(self.dir / "images.u8", "wb")
        self._msk = open(self.dir / "masks.u8", "wb")
        self.labels: list[int] = []
        self.has_mask: list[bool] = []
        self.names: list[str] = []

    def __enter__(self) -> "ImageSet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.labels)

    def append(self, image: np.ndarray, label: int | None = None, mask: np.ndarray | None = None,
               name: str = "") -> None:
        """Add one ``(H, W, 3) uint8`` image (resized to :attr:`size`), its label and ``(H, W)`` mask.

        Raises:
            ValueError: the image is not uint8 RGB, or the mask's size differs from the image's.
        """
        if mask is not None and np.asarray(mask).shape != np.asarray(image).shape[:2]:
            raise ValueError(f"{name or 'image'}: mask {np.asarray(mask).shape} and image "
                             f"{np.asarray(image).shape[:2]} differ in size")
        self._img.write(resize_image(image, self.size).tobytes())
        m = np.zeros(self.size, bool) if mask is None else resize_mask(mask, self.size)
        self._msk.write(m.astype(np.uint8).tobytes())
        self.labels.append(-1 if label is None else int(label))
        self.has_mask.append(mask is not None)
        self.names.append(name)

    def _maps(self) -> tuple[np.ndarray, np.ndarray]:
        self._img.flush()
        self._msk.flush()
        n, (h, w) = len(self), self.size
        if n == 0:
            return np.zeros((0, h, w, 3), np.uint8), np.zeros((0, h, w), bool)
        images = np.memmap(self.dir / "images.u8", np.uint8, "r", shape=(n, h, w, 3))
        masks = np.memmap(self.dir / "masks.u8", np.uint8, "r", shape=(n, h, w))
        return images, masks

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterator[ImageBatch]:
        """Yield the images in order (or a seeded random order) in batches of ``batch_size``.

        Raises:
            ValueError: ``batch_size < 1``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        images, masks = self._maps()
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        labels = np.asarray(self.labels, np.int64)
        has = np.asarray(self.has_mask, bool)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            if not shuffle:
                sl = slice(int(idx[0]), int(idx[-1]) + 1)
                yield ImageBatch(np.array(images[sl]), labels[sl], np.array(masks[sl]) > 0, has[sl])
            else:
                yield ImageBatch(np.array(images[idx]), labels[idx], np.array(masks[idx]) > 0, has[idx])

    def close(self) -> None:
        """Close the files; delete the folder if this set created it. Safe to call twice."""
        for fh in (self._img, self._msk):
            if not fh.closed:
                fh.close()
        if self._own and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
