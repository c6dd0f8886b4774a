"""`loop: true` on a video_file stream: a real clip replays from its start, frame indices and timestamps keep
increasing across replays (a camera stand-in), max_frames still bounds it, and the config key is accepted."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from servers import MissingBinaryError
from streamad.config import load_config_text
from streamad.parts import BuildContext
from streamad.sources.video_file import VideoFileSource

FRAMES = 12


@pytest.fixture(scope="module")
def short_clip(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 12 frames of vtest.avi (10 frames/s) at 192x144, lossless (FFV1), so replays decode equal."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise MissingBinaryError("ffmpeg is missing: apt-get install -y --no-install-recommends ffmpeg")
    dst = tmp_path_factory.mktemp("loop") / "clip.mkv"
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(data_root / "opencv" / "vtest.avi"), "-frames:v",
                    str(FRAMES), "-vf", "scale=192:144", "-c:v", "ffv1", str(dst)], check=True, timeout=60)
    return dst


def test_loop_replays_the_file_with_increasing_indices_and_timestamps(short_clip: Path) -> None:
    frames = list(VideoFileSource("cam", short_clip, loop=True, max_frames=FRAMES * 2 + 5).frames())
    assert [f.index for f in frames] == list(range(FRAMES * 2 + 5))
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert pts[FRAMES] == pytest.approx(FRAMES / 10.0, abs=1e-6)  # the replay goes on where the file ended
    for i in range(FRAMES):  # the same pictures again, from the start
        np.testing.assert_array_equal(frames[i].image, frames[i + FRAMES].image)
    once = list(VideoFileSource("cam", short_clip).frames())
    assert len(once) == FRAMES


def test_loop_is_a_config_key_of_video_file(short_clip: Path) -> None:
    cfg = load_config_text(f"streams:\n  - kind: video_file\n    path: {short_clip}\n    loop: true\n"
                           f"    max_frames: 30\noperators:\n  - kind: smooth\n")
    (src,) = cfg.streams[0].build(BuildContext(), "streams[0]")
    assert src.loop and len(list(src.frames())) == 30
