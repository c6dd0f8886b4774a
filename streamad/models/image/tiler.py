"""Tiling of large frames for image models, after anomalib's ``Tiler`` (``anomalib.data.utils.tiler``): a frame is
cut into tiles of ``tile_size`` source pixels every ``stride`` pixels, each tile is scored by the model at its
``input_size``, and the tiles' anomaly maps are put back together, averaged where tiles overlap (anomalib's
``untile`` blends overlaps the same way). A 12x12-pixel defect in a 1920x1080 frame covers about one map pixel
once the whole frame is resized to 256x256, and is lost; in a 256x256 tile it keeps its 12x12 pixels.

Differences from anomalib, and why:

* anomalib tiles the tensor after the image has been resized to ``image_size``, inside the model, and untiles the
  feature maps (PatchCore, PaDiM) or the output maps. Here the tiles are cut from the decoded frame at source
  resolution, outside the network, and the *anomaly maps* are untiled: the same code then serves every model, and
  both the torch network and the exported OpenVINO IR (which takes uint8 frames of any size) run unchanged.
* anomalib pads (``mode=padding``) or upsamples (``mode=interpolation``) a frame that the tile grid does not cover
  exactly. Here the last row and column of tiles are moved back to end at the frame's edge, so every tile holds
  real pixels (they overlap their neighbours a little more) and no padding is ever scored.
* The image score of a tiled frame is the largest of its tiles' image scores (each model's own image score: for
  PatchCore the re-weighted nearest-neighbour distance, for the others mostly the map maximum).

The model is fitted on tiles of the training frames (each tile a training image) and calibrated on tiled
validation frames, so thresholds and min-max normalisation hold for tiles. The stitched map has the density of the
model's map: ``input_size / tile_size`` map pixels per source pixel.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict

from streamad.models.image.preprocess import as_batch

__all__ = ["TilerConfig", "Tiler", "TiledRunner"]


class TilerConfig(BaseModel):
    """``image_model.tiler``: how frames are cut into tiles (anomalib ``Tiler(tile_size, stride)``).

    Attributes:
        tile_size: ``[height, width]`` of a tile in source pixels (anomalib ``tile_size``).
        stride: ``[height, width]`` step between tile origins in source pixels; default: ``tile_size`` (tiles
            touch; a smaller stride overlaps them and their maps are averaged where they overlap).

    Raises:
        ValueError: a stride larger than the tile (pixels would be skipped), a tile under 32x32 pixels, or an
            unknown key.
    """

    model_config = ConfigDict(extra="forbid")

    tile_size: tuple[int, int] = (256, 256)
    stride: tuple[int, int] | None = None

    def model_post_init(self, context: Any, /) -> None:
        if min(self.tile_size) < 32:
            raise ValueError(f"tiler.tile_size must be at least 32x32 pixels, got {list(self.tile_size)}")
        stride = self.stride or self.tile_size
        if min(stride) < 1 or stride[0] > self.tile_size[0] or stride[1] > self.tile_size[1]:
            raise ValueError(f"tiler.stride must lie between 1 and tile_size {list(self.tile_size)} in each "
                             f"direction, got {list(stride)}")

    def identity(self) -> dict[str, list[int]]:
        """``{"tile_size", "stride"}`` as recorded in ``model.json`` (``fit.tiler``)."""
        return {"tile_size": list(self.tile_size), "stride": list(self.stride or self.tile_size)}


def _origins(length: int, tile: int, stride: int) -> list[int]:
    """Tile origins along one axis: every ``stride`` pixels, the last one moved back to end at ``length``."""
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


class Tiler:
    """Cuts frames into tiles and puts per-tile anomaly maps back together (see the module doc).

    Args:
        config: tile size and stride in source pixels.
        map_size: ``(h, w)`` of the model's anomaly map for one tile (its ``input_size``).
    """

    def __init__(self, config: TilerConfig, map_size: tuple[int, int]) -> None:
        self.config = config
        self.tile = (int(config.tile_size[0]), int(config.tile_size[1]))
        stride = config.stride or config.tile_size
        self.stride = (int(stride[0]), int(stride[1]))
        self.map_size = (int(map_size[0]), int(map_size[1]))

    def boxes(self, height: int, width: int) -> np.ndarray:
        """``(T, 4) int64`` tile boxes ``y0, x0, y1, x1`` in source pixels of a ``height x width`` frame, row by row.

        Raises:
            ValueError: the frame is smaller than a tile.
        """
        th, tw = self.tile
        if height < th or width < tw:
            raise ValueError(f"tiler: a {width}x{height} frame is smaller than the {tw}x{th} tile; lower "
                             f"image_model.tiler.tile_size")
        return np.array([(y, x, y + th, x + tw) for y in _origins(height, th, self.stride[0])
                         for x in _origins(width, tw, self.stride[1])], np.int64)

    def tiles(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, C)`` frame (or ``(H, W)`` mask) -> ``(T, th, tw, C)`` (or ``(T, th, tw)``) tiles, in the order
        of :meth:`boxes`; the dtype is kept.

        Raises:
            ValueError: as :meth:`boxes`.
        """
        return np.stack([image[y0:y1, x0:x1] for y0, x0, y1, x1 in self.boxes(*image.shape[:2])])

    def canvas_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` of the stitched anomaly map of a ``height x width`` frame: the frame scaled by
        ``map_size / tile_size``."""
        return (round(height * self.map_size[0] / self.tile[0]), round(width * self.map_size[1] / self.tile[1]))

    def untile(self, maps: np.ndarray, height: int, width: int) -> np.ndarray:
        """Put a frame's tile maps back together.

        Args:
            maps: ``(T, 1, h, w) float32`` anomaly maps of :meth:`tiles` of one ``height x width`` frame.

        Returns:
            ``(1, H', W') float32`` with ``(H', W') =`` :meth:`canvas_size`; overlapping tiles are averaged.
        """
        ch, cw = self.canvas_size(height, width)
        sy, sx = ch / height, cw / width
        total = np.zeros((ch, cw), np.float64)
        count = np.zeros((ch, cw), np.float64)
        for (y0, x0, y1, x1), m in zip(self.boxes(height, width), maps):
            a, b, c, d = round(y0 * sy), round(x0 * sx), round(y1 * sy), round(x1 * sx)
            tile_map = m[0]
            if tile_map.shape != (c - a, d - b):
                tile_map = cv2.resize(tile_map, (d - b, c - a), interpolation=cv2.INTER_LINEAR)
            total[a:c, b:d] += tile_map
            count[a:c, b:d] += 1.0
        return (total / np.maximum(count, 1.0)).astype(np.float32)[None]


class TiledRunner:
    """A :class:`~streamad.models.image.runner.Runner` that scores each frame tile by tile.

    ``runner(images (N, H, W, 3) uint8) -> (maps (N, 1, H', W') float32, scores (N,) float32)``: each frame's tiles
    go through the wrapped runner (torch or OpenVINO) as one batch; the maps are stitched by :meth:`Tiler.untile`
    and the image score is the largest tile score.

    Args:
        runner: the model's runner (tiles in, per-tile maps and scores out). tiler: the :class:`Tiler`.
    """

    def __init__(self, runner: Any, tiler: Tiler) -> None:
        self.inner = runner
        self.tiler = tiler
        self.name = f"{runner.name}+tiler"

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps, scores = [], []
        for frame in as_batch(images):
            h, w = frame.shape[:2]
            tile_maps, tile_scores = self.inner(self.tiler.tiles(frame))
            maps.append(self.tiler.untile(tile_maps, h, w))
            scores.append(float(np.max(tile_scores)))
        return np.stack(maps), np.asarray(scores, np.float32)
