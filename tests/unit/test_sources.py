"""Video sources on real data: UCSD Ped2 (image folders + ground truth), OpenCV vtest.avi (PyAV and decord)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamad.config import load_config_text
from streamad.errors import ConfigError, DataNotFoundError, SourceError
from streamad.parts import BuildContext
from streamad.registry import SOURCES
from streamad.sources.datasets.ucsd import UCSD_URL, parse_gt_frames, ucsd_videos
from streamad.sources.image_folder import natural_key, read_mask
from streamad.sources.pacing import paced
from streamad.sources.video_file import probe_video

DATA = Path(os.environ.get("STREAMAD_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data").resolve()
UCSD = DATA / "UCSD_Anomaly_Dataset.v1p2"
PED2_TEST = UCSD / "UCSDped2" / "Test"
VTEST = DATA / "opencv" / "vtest.avi"
CTX = BuildContext(data_root=DATA)


def build(kind: str, **fields):
    return SOURCES.get(kind).Config(**fields).build(CTX, "streams[0]")


# ---------------------------------------------------------------- UCSD Ped2


def test_ucsd_test_split_from_pipeline_yaml():
    cfg = load_config_text("streams:\n  - kind: ucsd_ped\n    split: test\noperators: []\n")
    sources = cfg.streams[0].build(BuildContext(data_root=DATA), "streams[0]")
    assert [s.stream_id for s in sources] == [f"UCSDped2/Test{i:03d}" for i in range(1, 13)]
    assert sum(len(s) for s in sources) == 2010
    assert sum(sum(s.labels) for s in sources) == 1648
    assert all(not s.live for s in sources)


def test_ucsd_frames_carry_labels_masks_and_timestamps():
    (src,) = build("ucsd_ped", split="test", videos=["Test001"], id="ped2")
    frames = list(src.frames())
    assert src.stream_id == "ped2/Test001" and len(frames) == 180
    f = frames[70]
    assert (f.index, f.video, f.stream_id) == (70, "Test001", "ped2/Test001")
    assert f.image.shape == (240, 360, 3) and f.image.dtype == np.uint8
    assert f.mask.shape == (240, 360) and f.mask.dtype == bool
    assert f.pts == pytest.approx(7.0)
    # UCSDped2.m: Test001 gt_frame = [61:180] (1-based) -> 0-based frames 60..179 anomalous
    labels = [fr.label for fr in frames]
    assert labels == [0] * 60 + [1] * 120
    assert all(fr.mask.any() == bool(fr.label) for fr in frames)


def test_ucsd_labels_agree_with_masks_and_mask_fallback(tmp_path):
    videos = ucsd_videos(UCSD, "UCSDped2", "test")
    for v in videos:
        from_masks = np.array([read_mask(p).any() for p in v.mask_paths], np.uint8)
        assert np.array_equal(v.labels, from_masks), v.name
    # Without the .m file, labels come from the masks: copy one clip into the official layout minus UCSDped2.m.
    test_dir = tmp_path / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test"
    shutil.copytree(PED2_TEST / "Test002", test_dir / "Test002")
    shutil.copytree(PED2_TEST / "Test002_gt", test_dir / "Test002_gt")
    (copied,) = ucsd_videos(tmp_path / "UCSD_Anomaly_Dataset.v1p2", "UCSDped2", "test")
    assert np.array_equal(copied.labels, videos[1].labels)
    assert int(copied.labels.sum()) == 86  # [95:180]


def test_ucsd_train_split_is_normal_without_masks():
    sources = build("ucsd_ped", split="train", max_frames=3)
    assert len(sources) == 16 and sources[-1].stream_id == "UCSDped2/Train016"
    frames = list(sources[0].frames())
    assert len(frames) == 3 and all(f.label == 0 and f.mask is None for f in frames)


def test_parse_ped1_multi_range_labels(tmp_path):
    m = tmp_path / "UCSDped1.m"
    m.write_text("TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [60:152];\n"
                 "TestVideoFile{end+1}.gt_frame = [5:90, 140:200];\n")
    assert parse_gt_frames(m) == [[(60, 152)], [(5, 90), (140, 200)]]
    # the same ranges drive the labels of a Ped1-layout clip (frames written as grayscale .tif)
    clip = tmp_path / "root" / "UCSDped1" / "Test" / "Test002"
    clip.mkdir(parents=True)
    for i in range(1, 201):
        cv2.imwrite(str(clip / f"{i:03d}.tif"), np.full((4, 6), i, np.uint8))
    shutil.copy(m, clip.parent / "UCSDped1.m")
    (v,) = ucsd_videos(tmp_path / "root", "UCSDped1", "test")
    assert v.name == "Test002" and v.mask_paths is None
    assert np.flatnonzero(v.labels).tolist() == list(range(4, 90)) + list(range(139, 200))


def test_ucsd_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        SOURCES.get("ucsd_ped").Config(split="test").build(BuildContext(data_root=tmp_path), "streams[1]")
    msg = str(err.value)
    assert UCSD_URL in msg and "STREAMAD_DATA" in msg and "data_root" in msg and "streams[1]" in msg
    assert str(tmp_path / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test") in msg


def test_ucsd_unknown_video_names_key_path():
    with pytest.raises(ConfigError, match=r"streams\[0\]\.videos: .*Test099.*Test001 \.\. Test012"):
        build("ucsd_ped", split="test", videos=["Test099"])


def test_ucsd_holdout_parts_are_complementary_and_match_the_validation_study():
    fit = build("ucsd_ped", split="train", holdout={"fraction": 0.25, "seed": 0, "part": "fit"})
    held = build("ucsd_ped", split="train", holdout={"fraction": 0.25, "seed": 0, "part": "held_out"})
    # seed 0 holds out the clips benchmarks/aivad_validation_study.py validated AI-VAD's settings on
    assert [s.video for s in held] == ["Train005", "Train008", "Train009", "Train012"]
    assert len(fit) == 12 and not {s.video for s in fit} & {s.video for s in held}
    other = build("ucsd_ped", split="train", holdout={"fraction": 0.25, "seed": 1, "part": "held_out"})
    assert [s.video for s in other] != [s.video for s in held]


def test_ucsd_holdout_of_one_clip_names_the_key_path():
    with pytest.raises(ConfigError, match=r"streams\[0\]\.holdout: a hold-out needs at least 2 videos, got 1"):
        build("ucsd_ped", split="test", videos=["Test001"], holdout={"fraction": 0.5, "part": "fit"})
    with pytest.raises(ValueError, match="fraction"):
        build("ucsd_ped", split="train", holdout={"fraction": 1.0, "part": "fit"})


def test_ucsd_reads_faster_than_realtime_by_far():
    (src,) = build("ucsd_ped", split="test", videos=["Test004"])
    t0 = time.perf_counter()
    n = sum(1 for _ in src.frames())
    rate = n / (time.perf_counter() - t0)
    assert n == 180 and rate > 60, f"{rate:.0f} frames/s"


# ---------------------------------------------------------------- image folders


def test_image_folder_on_ucsd_clip():
    (src,) = build("image_folder", path=str(PED2_TEST / "Test003"), fps=5)
    frames = list(src.frames())
    assert src.stream_id == "Test003" and len(frames) == 150
    assert frames[0].image.shape == (240, 360, 3) and frames[0].label is None and frames[0].mask is None
    assert [f.index for f in frames] == list(range(150)) and frames[10].pts == pytest.approx(2.0)


def test_image_folder_natural_sort_grayscale_and_unreadable_file(tmp_path):
    for n in (10, 2, 1):  # grayscale PNGs whose pixel value is their number
        cv2.imwrite(str(tmp_path / f"{n}.png"), np.full((5, 7), n, np.uint8))
    (tmp_path / "notes.txt").write_text("not a frame")
    (src,) = build("image_folder", path=str(tmp_path))
    frames = list(src.frames())
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 2, 10]
    assert frames[0].image.shape == (5, 7, 3) and (frames[0].image == 1).all()
    assert sorted(["Test10", "Test2", "test1"], key=natural_key) == ["test1", "Test2", "Test10"]

    (tmp_path / "11.png").write_bytes(b"\x89PNG garbage")
    (src,) = build("image_folder", path=str(tmp_path))
    got = []
    with pytest.raises(SourceError, match="11.png"):
        for f in src.frames():
            got.append(f.index)
    assert got == [0, 1, 2]


def test_image_folder_missing_or_empty_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"streams\[0\]\.path: folder not found"):
        build("image_folder", path=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"streams\[0\]\.path: no images"):
        build("image_folder", path=str(tmp_path))


# ---------------------------------------------------------------- video files


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_video_file_vtest(backend):
    (src,) = build("video_file", path="opencv/vtest.avi", backend=backend)
    assert src.stream_id == "vtest" and not src.live
    n, last_pts, first = 0, -1.0, None
    for f in src.frames():
        assert f.index == n and f.pts > last_pts
        first = f if first is None else first
        n, last_pts = n + 1, f.pts
    assert n == 795
    assert first.image.shape == (576, 768, 3) and first.image.dtype == np.uint8 and first.pts == 0.0
    assert last_pts == pytest.approx(79.4, abs=1e-4)  # 10 fps (decord timestamps are float32)


def test_video_file_backends_decode_the_same_pixels():
    frames = {b: next(iter(build("video_file", path=str(VTEST), backend=b, max_frames=1)[0].frames()))
              for b in ("pyav", "decord")}
    diff = np.abs(frames["pyav"].image.astype(int) - frames["decord"].image.astype(int))
    assert diff.mean() < 2.0


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_video_file_truncated_raises_after_decoded_frames(tmp_path, backend):
    data = VTEST.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    (src,) = build("video_file", path=str(cut), backend=backend)
    n = 0
    with pytest.raises(SourceError, match=r"cut\.avi: truncated: decoded \d+ of 795 frames") as err:
        for _ in src.frames():
            n += 1
    assert 100 < n < 795 and f"decoded {n} of" in str(err.value)


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_video_file_garbage_raises_source_error(tmp_path, backend):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    (src,) = build("video_file", path=str(junk), backend=backend)
    with pytest.raises(SourceError, match="junk.mp4: cannot open video"):
        list(src.frames())


def test_video_file_missing_is_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        build("video_file", path=str(tmp_path / "gone.avi"))
    assert "streams[0].path" in str(err.value) and "gone.avi" in str(err.value) and "file not found" in str(err.value)


def test_probe_and_fps_override():
    info = probe_video(VTEST)
    assert (info.frames, info.fps, info.width, info.height) == (795, 10.0, 768, 576)
    (src,) = build("video_file", path=str(VTEST), fps=25, max_frames=3, id="cam1")
    frames = list(src.frames())
    assert [f.pts for f in frames] == pytest.approx([0.0, 0.04, 0.08]) and frames[0].stream_id == "cam1"


# ---------------------------------------------------------------- pacing, max_frames, close


def test_realtime_paces_frames_like_a_camera():
    (src,) = build("video_file", path=str(VTEST), realtime=True, max_frames=5)
    t0 = time.monotonic()
    frames = list(src.frames())
    elapsed = time.monotonic() - t0
    assert len(frames) == 5 and 0.35 <= elapsed < 2.0
    gaps = np.diff([f.wall_time for f in frames])
    assert gaps.min() > 0.05  # each frame released ~0.1 s after the previous one


def test_max_frames_stops_without_pulling_more():
    pulled = []

    def gen():
        for i in range(100):
            pulled.append(i)
            yield type("F", (), {"pts": i * 0.1})()

    assert len(list(paced(gen(), max_frames=4))) == 4 and pulled == [0, 1, 2, 3]


def test_close_from_another_thread_ends_realtime_playback():
    (src,) = build("ucsd_ped", split="test", videos=["Test001"], realtime=True)
    got = []
    reader = threading.Thread(target=lambda: got.extend(src.frames()))
    reader.start()
    time.sleep(0.3)
    src.close()
    reader.join(timeout=2.0)
    assert not reader.is_alive() and 1 <= len(got) < 10
    assert list(src.frames()) == []
