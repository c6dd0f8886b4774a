"""Pseudo-anomalies made from normal footage, to choose settings without test labels.

A camera's own footage has no anomalies, and a benchmark's test labels must not choose settings. The video anomaly
literature validates on normal clips turned into synthetic anomalies instead; this module makes two kinds, each from
a held-out normal clip, each with per-frame labels (1 = the frame shows the pseudo-anomaly):

* :func:`skip_frames`: a segment of the clip played ``step`` times too fast (every ``step``-th frame), so everything
  that moves suddenly moves ``step`` times faster (Astrid et al., "Learning Not to Reconstruct Anomalies",
  BMVC 2021: skip-frame pseudo-anomalies).
* :func:`paste_moving_patch`: a patch cut from another frame, rotated a quarter turn, pasted and moved across the
  clip at a constant speed (the patch-transplant idea of CutPaste, Li et al., CVPR 2021, made to move as in
  video pseudo-anomaly work): an object of unusual shape and motion.

Neither generator knows what a benchmark's real anomalies are (on UCSD Ped2: cyclists, carts, skaters); both are
generic. Frames are ``(H, W, 3) uint8`` RGB throughout; every random choice comes from the ``rng`` the caller passes,
so a seeded study is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PseudoClip", "skip_frames", "paste_moving_patch"]


@dataclass(frozen=True)
class PseudoClip:
    """A clip with per-frame pseudo-anomaly labels.

    Attributes:
        frames: ``T`` frames, each ``(H, W, 3) uint8`` RGB.
        labels: ``(T,) int64``, 1 where the frame shows the pseudo-anomaly.
        kind: ``"normal"``, ``"skip"`` or ``"paste"``.
    """

    frames: list[np.ndarray]
    labels: np.ndarray
    kind: str


def _check(frames: list[np.ndarray], need: int, what: str) -> None:
    if len(frames) < need:
        raise ValueError(f"{what}: the clip has {len(frames)} frames, at least {need} are needed")


def skip_frames(frames: list[np.ndarray], start: int, length: int, step: int) -> PseudoClip:
    """Frames ``[0, start)`` as recorded, then ``length`` frames taken every ``step``-th from ``start``, then the
    rest of the clip after the skipped span.

    Args:
        frames: the normal clip, ``(H, W, 3) uint8`` RGB frames.
        start: first frame of the fast segment (frames).
        length: frames in the fast segment (output frames, all labelled 1).
        step: speed-up factor (``>= 2``).

    Returns:
        a :class:`PseudoClip` of ``len(frames) - length * (step - 1)`` frames.

    Raises:
        ValueError: ``step < 2``, ``length < 1``, or the clip is shorter than ``start + length * step``.
    """
    if step < 2 or length < 1 or start < 0:
        raise ValueError(f"skip_frames: need step >= 2, length >= 1, start >= 0 (got {step}, {length}, {start})")
    end = start + length * step
    _check(frames, end, "skip_frames")
    out = list(frames[:start]) + list(frames[start:end:step]) + list(frames[end:])
    labels = np.zeros(len(out), np.int64)
    labels[start:start + length] = 1
    return PseudoClip(out, labels, "skip")


def paste_moving_patch(frames: list[np.ndarray], patch: np.ndarray, start: int, length: int,
                       origin: tuple[float, float], velocity: tuple[float, float]) -> PseudoClip:
    """Paste ``patch`` rotated 90 degrees into frames ``[start, start + length)``, its top-left corner at
    ``origin + k * velocity`` in frame ``start + k``.

    The patch is clipped at the frame's edges; a frame in which no pixel of it is visible is labelled 0.

    Args:
        frames: the normal clip, ``(H, W, 3) uint8`` RGB frames (not modified).
        patch: ``(h, w, 3) uint8`` RGB, e.g. a region cut from another clip.
        start: first frame with the patch.
        length: frames with the patch.
        origin: ``(x, y)`` top-left corner in frame ``start`` (pixels, may lie outside the frame).
        velocity: ``(vx, vy)`` pixels per frame.

    Returns:
        a :class:`PseudoClip` of ``len(frames)`` frames.

    Raises:
        ValueError: the clip is shorter than ``start + length``, or ``patch`` is not ``(h, w, 3)``.
    """
    if patch.ndim != 3 or patch.shape[2] != 3 or min(patch.shape[:2]) < 1:
        raise ValueError(f"paste_moving_patch: patch must be (h, w, 3), got {patch.shape}")
    _check(frames, start + length, "paste_moving_patch")
    rotated = np.ascontiguousarray(np.rot90(patch))
    ph, pw = rotated.shape[:2]
    out = list(frames)
    labels = np.zeros(len(out), np.int64)
    for k in range(length):
        t = start + k
        frame = out[t].copy()
        x0 = int(round(origin[0] + k * velocity[0]))
        y0 = int(round(origin[1] + k * velocity[1]))
        fx0, fy0 = max(x0, 0), max(y0, 0)
        fx1, fy1 = min(x0 + pw, frame.shape[1]), min(y0 + ph, frame.shape[0])
        if fx1 <= fx0 or fy1 <= fy0:
            continue
        frame[fy0:fy1, fx0:fx1] = rotated[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
        out[t] = frame
        labels[t] = 1
    return PseudoClip(out, labels, "paste")
