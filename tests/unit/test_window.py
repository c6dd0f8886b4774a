"""Clip windowing against anomalib's ClipsIndexer / torchvision VideoClips semantics and VideoTargetFrame."""

from __future__ import annotations

import pytest

from helpers import frame, run_operator


def anomalib_clips(n: int, length: int, step: int) -> list[list[int]]:
    """torchvision ``VideoClips`` (``unfold``) clip index lists: clip k = frames [k*step, k*step + length)."""
    return [list(range(s, s + length)) for s in range(0, n - length + 1, step)]


@pytest.mark.parametrize("n,length,step", [(10, 2, 1), (10, 3, 2), (25, 4, 10), (7, 1, 1), (12, 5, 3)])
def test_clips_match_anomalib_indices(n: int, length: int, step: int) -> None:
    clips = run_operator("clip_window", [frame(i) for i in range(n)], clip_length_in_frames=length,
                         frames_between_clips=step, pad_edges=False)
    assert [[f.index for f in c.frames] for c in clips] == anomalib_clips(n, length, step)


@pytest.mark.parametrize("target,offset", [("first", 0), ("last", 3), ("mid", 2)])
def test_target_frame_follows_videotargetframe(target: str, offset: int) -> None:
    clips = run_operator("clip_window", [frame(i) for i in range(12)], clip_length_in_frames=4,
                         frames_between_clips=4, target_frame=target, pad_edges=False)
    assert [c.target.index for c in clips] == [s + offset for s in (0, 4, 8)]
    assert all(c.extra_targets == [] for c in clips)


def test_target_all_attributes_every_frame_of_the_clip() -> None:
    clips = run_operator("clip_window", [frame(i) for i in range(6)], clip_length_in_frames=3,
                         frames_between_clips=3, target_frame="all", pad_edges=False)
    assert [[c.target.index] + [f.index for f in c.extra_targets] for c in clips] == [[0, 1, 2], [3, 4, 5]]


def test_pad_edges_gives_every_frame_a_score_once() -> None:
    n = 10
    clips = run_operator("clip_window", [frame(i) for i in range(n)], clip_length_in_frames=3,
                         frames_between_clips=1, target_frame="mid")
    targets = [f.index for c in clips for f in [c.target, *c.extra_targets]]
    assert sorted(targets) == list(range(n))
    # the first clip stands for frame 0 too; the tail clip (frames 7-9) stands for frame 9
    assert [f.index for f in clips[0].extra_targets] == [0]
    assert [f.index for f in clips[-1].frames] == [7, 8, 9] and clips[-1].target.index == 9


def test_stream_shorter_than_a_clip_is_padded_with_its_last_frame() -> None:
    clips = run_operator("clip_window", [frame(0)], clip_length_in_frames=2)
    assert len(clips) == 1
    assert [f.index for f in clips[0].frames] == [0, 0] and clips[0].target.index == 0


def test_scores_of_the_first_clip_go_out_in_stream_order() -> None:
    """The first clip (target last) stands for the frames before its target too; its results are emitted for them
    in stream order, so an alert's event never reports a frame before its start_frame."""
    clips = run_operator("clip_window", [frame(i) for i in range(6)], clip_length_in_frames=4,
                         frames_between_clips=1, target_frame="last")
    assert clips[0].target.index == 3
    assert [[f.index for f in c.scored_frames] for c in clips] == [[0, 1, 2, 3], [4], [5]]
