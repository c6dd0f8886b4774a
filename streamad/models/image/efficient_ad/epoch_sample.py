"""Epochs of a fixed number of images for step-based training (EfficientAD trains for a number of steps, 70,000 in
the paper, not for passes over the training set): each epoch of
:func:`~streamad.models.image.training.train_epochs` reads a seeded random sample of the training set."""

from __future__ import annotations

from typing import Iterator

from streamad.models.image.image_set import ImageBatch, ImageSet

__all__ = ["EpochSample"]


class EpochSample:
    """A view of ``images`` whose shuffled reads stop after ``per_epoch`` images (an ordered read gives them all).

    Args:
        images: the training set. per_epoch: images an epoch reads (at most the set's size).
    """

    def __init__(self, images: ImageSet, per_epoch: int) -> None:
        self.images = images
        self.per_epoch = max(1, min(int(per_epoch), len(images)))

    def __len__(self) -> int:
        return self.per_epoch

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterator[ImageBatch]:
        """As :meth:`ImageSet.batches`; with ``shuffle`` only the first ``per_epoch`` images of the seeded order."""
        if not shuffle:
            yield from self.images.batches(batch_size)
            return
        left = self.per_epoch
        for batch in self.images.batches(batch_size, shuffle=True, seed=seed):
            if left <= 0:
                return
            take = min(left, len(batch.images))
            left -= take
            yield ImageBatch(batch.images[:take], batch.labels[:take], batch.masks[:take], batch.has_mask[:take])
