"""The generic images EfficientAD needs besides the training set: the paper distils its teacher on ImageNet and
uses ImageNet images in the student's penalty loss. No ImageNet copy can be had here, so the user names folders of
images and / or video files (e.g. UCSD Ped2 frames, OpenCV's ``vtest.avi``), read once, evenly sampled, resized to
the model's input size."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from streamad.errors import ModelError
from streamad.models.image.preprocess import resize_image
from streamad.sources.image_folder import IMAGE_EXTENSIONS, read_rgb

__all__ = ["load_generic_images", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm")


def _video_frames(path: Path, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if not cap.isOpened() or total <= 0:
            raise ModelError(f"efficient_ad: cannot read video {path} for generic_images")
        wanted = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
        frames, i = [], 0
        while len(frames) < len(wanted):
            ok, bgr = cap.read()
            if not ok:
                break
            if i in wanted:
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            i += 1
        return frames
    finally:
        cap.release()


def load_generic_images(sources: Sequence[str | Path], size: tuple[int, int], limit: int) -> np.ndarray:
    """Up to ``limit`` images from ``sources``, evenly spread over them: ``(N, h, w, 3) uint8`` RGB at ``size``.

    Args:
        sources: folders (searched recursively for images) and / or video files; the limit is shared out equally.
        size: ``(h, w)`` in pixels. limit: at most this many images in all.

    Raises:
        ModelError: a source that is missing, not readable, or holds no image (names it).
    """
    if not sources:
        return np.zeros((0, int(size[0]), int(size[1]), 3), np.uint8)
    share = max(1, int(limit) // len(sources))
    out: list[np.ndarray] = []
    exts = {e.lower() for e in IMAGE_EXTENSIONS}
    for src in sources:
        p = Path(src)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in exts and not f.name.startswith("."))
            if not files:
                raise ModelError(f"efficient_ad: generic_images folder {p} holds no image")
            picks = np.linspace(0, len(files) - 1, min(share, len(files))).round().astype(int)
            images = [read_rgb(files[i]) for i in picks]
        elif p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
            images = _video_frames(p, share)
        else:
            raise ModelError(f"efficient_ad: generic_images source {p} is not a folder of images or a video file "
                             f"({', '.join(VIDEO_EXTENSIONS)})")
        out.extend(resize_image(im, size) for im in images)
    return np.stack(out[: int(limit)])
