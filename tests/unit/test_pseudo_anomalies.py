"""Pseudo-anomalies from normal footage (streamad.eval.pseudo_anomalies): the frames and labels a validation
without test labels is built from."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.eval.pseudo_anomalies import paste_moving_patch, skip_frames


def _clip(n: int = 20, h: int = 30, w: int = 40) -> list[np.ndarray]:
    """Frame t is filled with the value t, so a frame's origin can be read back."""
    return [np.full((h, w, 3), t, np.uint8) for t in range(n)]


def test_skip_frames_plays_a_labelled_segment_faster() -> None:
    pc = skip_frames(_clip(20), start=4, length=3, step=3)
    assert [int(f[0, 0, 0]) for f in pc.frames] == [0, 1, 2, 3, 4, 7, 10, 13, 14, 15, 16, 17, 18, 19]
    assert pc.labels.tolist() == [0] * 4 + [1] * 3 + [0] * 7 and pc.kind == "skip"
    with pytest.raises(ValueError, match="20 frames, at least 22"):
        skip_frames(_clip(20), start=4, length=6, step=3)
    with pytest.raises(ValueError, match="step >= 2"):
        skip_frames(_clip(20), start=0, length=3, step=1)


def test_pasted_patch_moves_rotated_and_only_visible_frames_are_labelled() -> None:
    frames = _clip(10)
    patch = np.zeros((4, 2, 3), np.uint8)
    patch[..., 0] = 200
    patch[0, :, 1] = 50  # top row marked: after a quarter turn (counter-clockwise) it is the left column
    pc = paste_moving_patch(frames, patch, start=2, length=6, origin=(30.0, 5.0), velocity=(4.0, 0.0))
    assert pc.frames[2][5:7, 30:34, 0].tolist() == [[200] * 4] * 2  # rotated: 2 rows x 4 columns
    assert pc.frames[2][5:7, 30, 1].tolist() == [50, 50]
    assert pc.frames[3][5, 34, 0] == 200 and pc.frames[3][5, 33, 0] == 3  # moved 4 px right
    # x = 30, 34, 38 are visible (38: 2 of 4 columns), 42 and 46 lie outside the 40 px wide frame
    assert pc.labels.tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    assert all(int(f[0, 0, 0]) == t for t, f in enumerate(pc.frames)) and frames[2][5, 30, 0] == 2  # input kept
    with pytest.raises(ValueError, match=r"\(h, w, 3\)"):
        paste_moving_patch(frames, patch[..., 0], 0, 2, (0, 0), (1, 0))
    with pytest.raises(ValueError, match="10 frames, at least 12"):
        paste_moving_patch(frames, patch, 5, 7, (0, 0), (1, 0))
