"""CUHK Avenue and ShanghaiTech Campus sources on tiny copies of the official layouts, built from real UCSD Ped2
frames and masks (../shared/data): Avenue's .avi videos and volLabel .mat files, ShanghaiTech's training .avi
videos, test frame folders and .npy labels and masks; then `streamad fit` + `streamad eval` over both."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner

from ped2_fixtures import DATA  # tests/ is on sys.path
from streamad.cli import cli
from streamad.config import load_config_text
from streamad.errors import ConfigError, DataNotFoundError, SourceError
from streamad.parts import BuildContext
from streamad.registry import SOURCES
from streamad.sources.datasets.avenue import AVENUE_URL, AvenueSource, avenue_videos
from streamad.sources.datasets.shanghaitech import SHANGHAITECH_URL, shanghaitech_videos
from streamad.sources.image_folder import read_mask, read_rgb
from streamad.sources.video_file import VideoFileSource

PED2 = DATA / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2"
N = 40  # frames per tiny video
# (Ped2 clip, first frame, 1-based): test windows straddle the clips' anomaly onsets (Test001 [61:180],
# Test002 [95:180] in UCSDped2.m), so each tiny test video holds normal and anomalous frames.
TRAIN = [("Train001", 1), ("Train002", 1)]
TEST = [("Test001", 41), ("Test002", 81)]


def _frames(clip: str, first: int, split: str = "Train") -> list[Path]:
    return [PED2 / split / clip / f"{i:03d}.jpg" for i in range(first, first + N)]


def _masks(clip: str, first: int) -> np.ndarray:
    """``(N, 240, 360) uint8`` 0/1: the real Ped2 masks of the window."""
    return np.stack([read_mask(PED2 / "Test" / f"{clip}_gt" / f"{i:03d}.png") for i in range(first, first + N)]
                    ).astype(np.uint8)


def _write_avi(path: Path, frames: list[Path], rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 360, 240, "yuvj420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(read_rgb(f), format="rgb24")))
        out.mux(stream.encode())


def _write_vol_label(path: Path, masks: np.ndarray, dtype: type = np.uint8) -> None:
    """``volLabel`` as MATLAB writes it: a 1xN cell (object array) of HxW masks."""
    cell = np.empty((1, len(masks)), dtype=object)
    for i, m in enumerate(masks):
        cell[0, i] = m.astype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"volLabel": cell})


@pytest.fixture(scope="module")
def avenue_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/Avenue Dataset/{training_videos,testing_videos,testing_label_mask}``: 2 + 2 videos of N frames;
    ``1_label.mat`` holds uint8 masks, ``2_label.mat`` double masks (both occur in MATLAB files)."""
    root = tmp_path_factory.mktemp("avenue")
    ds = root / "Avenue Dataset"
    for k, (clip, first) in enumerate(TRAIN, start=1):
        _write_avi(ds / "training_videos" / f"{k:02d}.avi", _frames(clip, first), 25)
    for k, (clip, first) in enumerate(TEST, start=1):
        _write_avi(ds / "testing_videos" / f"{k:02d}.avi", _frames(clip, first, "Test"), 25)
        _write_vol_label(ds / "testing_label_mask" / f"{k}_label.mat", _masks(clip, first),
                         np.uint8 if k == 1 else np.float64)
    return root


@pytest.fixture(scope="module")
def shanghaitech_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/shanghaitech``: training/videos/{01_001,01_002,02_001}.avi, testing/frames/{01_0014,02_0164}/NNN.jpg
    (the Ped2 .jpg files themselves), testing/test_frame_mask/*.npy and testing/test_pixel_mask/*.npy."""
    root = tmp_path_factory.mktemp("st") / "shanghaitech"
    for name, (clip, first) in zip(["01_001", "01_002", "02_001"], TRAIN + [("Train003", 1)]):
        _write_avi(root / "training" / "videos" / f"{name}.avi", _frames(clip, first), 24)
    for name, (clip, first) in zip(["01_0014", "02_0164"], TEST):
        folder = root / "testing" / "frames" / name
        folder.mkdir(parents=True)
        for i, f in enumerate(_frames(clip, first, "Test")):
            shutil.copy(f, folder / f"{i:03d}.jpg")
        masks = _masks(clip, first)
        for sub, arr in (("test_frame_mask", masks.any(axis=(1, 2)).astype(np.int64)), ("test_pixel_mask", masks)):
            (root / "testing" / sub).mkdir(parents=True, exist_ok=True)
            np.save(root / "testing" / sub / f"{name}.npy", arr)
    return root


def _build(kind: str, data_root: Path, where: str = "streams[0]", **fields):
    return SOURCES.get(kind).Config(**fields).build(BuildContext(data_root=data_root), where)


def _labels(clip: str, first: int) -> list[int]:
    return _masks(clip, first).any(axis=(1, 2)).astype(int).tolist()


# ---------------------------------------------------------------- CUHK Avenue


def test_avenue_test_split_lists_videos_labels_and_mask_files(avenue_root: Path) -> None:
    videos = avenue_videos(avenue_root, "test")
    assert [v.name for v in videos] == ["01", "02"]
    ds = avenue_root / "Avenue Dataset"
    assert [v.label_path for v in videos] == [ds / "testing_label_mask" / "1_label.mat",
                                              ds / "testing_label_mask" / "2_label.mat"]
    for v, (clip, first) in zip(videos, TEST):
        assert v.num_frames == N and v.labels.dtype == np.uint8
        assert v.labels.tolist() == _labels(clip, first)
    # Test001 [61:180] from frame 41: 20 normal, then 20 anomalous; Test002 [95:180] from frame 81: 14 + 26
    assert [int(v.labels.sum()) for v in videos] == [20, 26]


def test_avenue_frames_carry_labels_masks_and_video_name(avenue_root: Path) -> None:
    cfg = load_config_text("streams:\n  - kind: avenue\n    split: test\n    videos: [2]\noperators: []\n")
    (src,) = cfg.streams[0].build(BuildContext(data_root=avenue_root), "streams[0]")
    assert isinstance(src, AvenueSource) and src.stream_id == "avenue/02"
    frames = list(src.frames())
    masks = _masks(*TEST[1])
    assert len(frames) == N
    assert all(f.image.shape == (240, 360, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [f.label for f in frames] == _labels(*TEST[1])
    assert all(f.mask.dtype == bool and np.array_equal(f.mask, m > 0) for f, m in zip(frames, masks))
    assert {f.video for f in frames} == {"02"} and frames[10].pts == pytest.approx(10 / 25)
    # the decoded video is the Ped2 clip (mjpeg is lossy: close, not equal)
    assert np.abs(frames[5].image.astype(int) - read_rgb(_frames(TEST[1][0], TEST[1][1], "Test")[5])).mean() < 4


def test_avenue_train_split_is_normal_without_masks(avenue_root: Path) -> None:
    sources = _build("avenue", avenue_root, split="train", id="av", max_frames=5)
    assert [s.stream_id for s in sources] == ["av/01", "av/02"]
    frames = list(sources[1].frames())
    assert len(frames) == 5 and all(f.label == 0 and f.mask is None and f.video == "02" for f in frames)


def test_avenue_ground_truth_demo_folder_and_lowercase_folder(avenue_root: Path, tmp_path: Path) -> None:
    """ground_truth_demo.zip unpacked beside the dataset folder (``ground_truth_demo/testing_label_mask``);
    the dataset folder named ``avenue``."""
    shutil.copytree(avenue_root / "Avenue Dataset" / "testing_videos", tmp_path / "avenue" / "testing_videos")
    shutil.copytree(avenue_root / "Avenue Dataset" / "testing_label_mask",
                    tmp_path / "ground_truth_demo" / "testing_label_mask")
    (src, _) = _build("avenue", tmp_path, split="test", folder="avenue", masks=False)
    assert src.truth_file == tmp_path / "ground_truth_demo" / "testing_label_mask" / "1_label.mat"
    frames = list(src.frames())
    assert [f.label for f in frames] == _labels(*TEST[0]) and all(f.mask is None for f in frames)


def test_avenue_missing_data_and_label_files_are_named(avenue_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        _build("avenue", tmp_path, "streams[1]", split="test")
    msg = str(err.value)
    assert "streams[1]" in msg and AVENUE_URL in msg and "STREAMAD_DATA" in msg
    assert str(tmp_path / "Avenue Dataset" / "testing_videos") in msg
    ds = tmp_path / "Avenue Dataset"
    shutil.copytree(avenue_root / "Avenue Dataset" / "testing_videos", ds / "testing_videos")
    (ds / "testing_label_mask").mkdir()
    shutil.copy(avenue_root / "Avenue Dataset" / "testing_label_mask" / "1_label.mat", ds / "testing_label_mask")
    with pytest.raises(DataNotFoundError, match=r"2_label\.mat: ground truth of .*02\.avi not found"):
        avenue_videos(tmp_path, "test")


def test_avenue_label_count_differs_from_video(avenue_root: Path, tmp_path: Path) -> None:
    ds = tmp_path / "Avenue Dataset"
    shutil.copytree(avenue_root / "Avenue Dataset" / "testing_videos", ds / "testing_videos")
    _write_vol_label(ds / "testing_label_mask" / "1_label.mat", _masks(*TEST[0])[:N - 1])
    _write_vol_label(ds / "testing_label_mask" / "2_label.mat", _masks(*TEST[1]))
    with pytest.raises(DataNotFoundError) as err:
        _build("avenue", tmp_path, split="test")
    assert f"1_label.mat: volLabel holds {N - 1} frame masks but" in str(err.value)
    assert f"01.avi has {N} frames" in str(err.value)
    # a .mat without volLabel is named too
    scipy.io.savemat(str(ds / "testing_label_mask" / "1_label.mat"), {"gt": np.zeros((2, 2))})
    with pytest.raises(DataNotFoundError, match=r"1_label\.mat: no variable 'volLabel' \(found \['gt'\]\)"):
        avenue_videos(tmp_path, "test")


def test_decoded_length_is_checked_against_the_labels(avenue_root: Path) -> None:
    """A video that decodes to another length than its ground truth ends its stream with both counts."""
    path = avenue_root / "Avenue Dataset" / "testing_videos" / "01.avi"
    src = AvenueSource(VideoFileSource("avenue/01", path, fps=25), np.zeros(N + 2, np.uint8),
                       truth_file=Path("1_label.mat"), video="01")
    got = []
    with pytest.raises(SourceError, match=rf"avenue/01 .*01\.avi\): the video has {N} frames but 1_label\.mat "
                                          rf"labels {N + 2}"):
        for f in src.frames():
            got.append(f)
    assert len(got) == N


def test_avenue_unknown_video_names_key_path(avenue_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"streams\[0\]\.videos: unknown Avenue test video\(s\) 07; available: "
                                          r"01 \.\. 02"):
        _build("avenue", avenue_root, split="test", videos=[7])


# ---------------------------------------------------------------- ShanghaiTech Campus


def test_shanghaitech_test_split_frames_labels_and_masks(shanghaitech_root: Path) -> None:
    videos = shanghaitech_videos(shanghaitech_root, "test")
    assert [(v.name, v.scene, v.num_frames) for v in videos] == [("01_0014", 1, N), ("02_0164", 2, N)]
    assert [v.labels.tolist() for v in videos] == [_labels(*t) for t in TEST]
    (src,) = _build("shanghaitech", shanghaitech_root.parent, split="test", videos=["01_0014"])
    assert src.stream_id == "shanghaitech/01_0014"
    frames = list(src.frames())
    originals = _frames(TEST[0][0], TEST[0][1], "Test")
    masks = _masks(*TEST[0])
    assert len(frames) == N and [f.index for f in frames] == list(range(N))
    assert all(np.array_equal(f.image, read_rgb(p)) for f, p in zip(frames, originals))
    assert [f.label for f in frames] == _labels(*TEST[0])
    assert all(np.array_equal(f.mask, m > 0) for f, m in zip(frames, masks))
    assert {f.video for f in frames} == {"01_0014"} and frames[12].pts == pytest.approx(12 / 24)


def test_shanghaitech_train_videos_and_scene_filter(shanghaitech_root: Path) -> None:
    sources = _build("shanghaitech", shanghaitech_root.parent, split="train")
    assert [s.stream_id for s in sources] == ["shanghaitech/01_001", "shanghaitech/01_002", "shanghaitech/02_001"]
    frames = list(sources[2].frames())
    assert len(frames) == N and frames[0].image.shape == (240, 360, 3)
    assert all(f.label == 0 and f.mask is None and f.video == "02_001" for f in frames)
    assert [v.name for v in shanghaitech_videos(shanghaitech_root, "train", scenes=[2])] == ["02_001"]
    cfg = load_config_text("streams:\n  - kind: shanghaitech\n    split: train\n    scenes: [1]\n"
                           "    videos: ['01_002', '01_001']\noperators: []\n")
    picked = cfg.streams[0].build(BuildContext(data_root=shanghaitech_root.parent), "streams[0]")
    assert [s.video for s in picked] == ["01_002", "01_001"]
    with pytest.raises(ConfigError, match=r"streams\[0\]\.scenes: no test video of scene\(s\) 5; the test split "
                                          r"has scenes 1, 2"):
        _build("shanghaitech", shanghaitech_root.parent, split="test", scenes=[5])
    with pytest.raises(ConfigError, match=r"streams\[0\]\.videos: unknown ShanghaiTech test video\(s\) 02_0164"):
        _build("shanghaitech", shanghaitech_root.parent, split="test", scenes=[1], videos=["02_0164"])


def test_shanghaitech_missing_and_inconsistent_ground_truth(shanghaitech_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        _build("shanghaitech", tmp_path, "streams[2]", split="test")
    msg = str(err.value)
    assert "streams[2]" in msg and SHANGHAITECH_URL in msg
    assert str(tmp_path / "shanghaitech" / "testing" / "frames") in msg
    root = tmp_path / "shanghaitech"
    shutil.copytree(shanghaitech_root / "testing" / "frames" / "01_0014", root / "testing" / "frames" / "01_0014")
    with pytest.raises(DataNotFoundError, match=r"test_frame_mask[/\\]01_0014\.npy: frame labels of .* not found"):
        shanghaitech_videos(root, "test")
    labels_file = root / "testing" / "test_frame_mask" / "01_0014.npy"
    labels_file.parent.mkdir(parents=True)
    np.save(labels_file, np.zeros(N + 1, np.int64))
    with pytest.raises(DataNotFoundError, match=rf"01_0014\.npy: holds {N + 1} frame labels but .*01_0014 has {N} "
                                                rf"frames"):
        shanghaitech_videos(root, "test")
    np.save(labels_file, np.zeros(N, np.int64))
    masks_file = root / "testing" / "test_pixel_mask" / "01_0014.npy"
    masks_file.parent.mkdir(parents=True)
    np.save(masks_file, np.zeros((N - 2, 240, 360), np.uint8))
    with pytest.raises(DataNotFoundError, match=rf"test_pixel_mask[/\\]01_0014\.npy: holds {N - 2} masks but"):
        shanghaitech_videos(root, "test")
    masks_file.unlink()
    # labels are loaded without pickle: an object array is refused, naming the file
    np.save(labels_file, np.array([0, 1, None] * 10, dtype=object), allow_pickle=True)
    with pytest.raises(DataNotFoundError, match=r"01_0014\.npy: cannot read ShanghaiTech frame labels"):
        shanghaitech_videos(root, "test")


# ---------------------------------------------------------------- fit + eval over both datasets


def test_fit_and_eval_report_frame_auroc_per_video(avenue_root: Path, shanghaitech_root: Path,
                                                   tmp_path: Path) -> None:
    """`streamad fit` (AI-VAD velocity on both training splits) and `streamad eval` on both test splits: every
    labelled frame is scored (clip_window pads the edges), each test video with its own anomalous-frame count."""
    # avenue_root and shanghaitech_root live in different temp folders: link both under one data root
    data = tmp_path / "data"
    data.mkdir()
    (data / "Avenue Dataset").symlink_to(avenue_root / "Avenue Dataset")
    (data / "shanghaitech").symlink_to(shanghaitech_root)
    tests = "[{kind: avenue, split: test}, {kind: shanghaitech, split: test}]"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(f"""name: tiny
data_root: {data}
streams: {tests}
fit:
  train: [{{kind: avenue, split: train}}, {{kind: shanghaitech, split: train}}]
  validation: {tests}
  threshold: {{method: f1_adaptive}}
operators:
  - {{kind: clip_window, clip_length_in_frames: 4, frames_between_clips: 1, target_frame: last}}
  - {{kind: foreground_regions}}
  - {{kind: optical_flow, method: dis, preset: fast}}
  - {{kind: velocity_features, n_velocity_bins: 1, magnitude_percentiles: [50, 90, 99]}}
  - {{kind: video_model, model: {{kind: aivad, n_components_velocity: 2, reg_covar_velocity: 0.01}}}}
  - {{kind: smooth, sigma: 3}}
  - {{kind: threshold}}
sinks: []
""", encoding="utf-8")
    runner = CliRunner()
    model = tmp_path / "model"
    res = runner.invoke(cli, ["fit", str(cfg), "-o", str(model), "--quiet"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "eval.json"
    res = runner.invoke(cli, ["eval", str(cfg), "--model", str(model), "--json", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "failed" not in res.output and "frame AUROC" in res.output
    report = json.loads(out.read_text())
    assert report["frames"] == 4 * N
    expected = {"avenue/01": TEST[0], "avenue/02": TEST[1], "shanghaitech/01_0014": TEST[0],
                "shanghaitech/02_0164": TEST[1]}
    assert set(report["per_clip"]) == set(expected)
    for sid, window in expected.items():
        clip = report["per_clip"][sid]
        assert clip["frames"] == N
        assert clip["anomalous_frames"] == sum(_labels(*window)), sid
    print(f"tiny Avenue + ShanghaiTech frame AUROC {report['frame_auroc']:.3f} (raw {report['frame_auroc_raw']:.3f});",
          {k: v["auroc"] for k, v in report["per_clip"].items()})
    # the windows hold Ped2's cyclist / cart entering: velocity scores rank them above the walkers (0.82 measured);
    # labels attached to the wrong frames or videos would pull this towards 0.5
    assert report["frame_auroc"] > 0.6


def test_holdout_splits_avenue_and_shanghaitech_training_videos(avenue_root: Path, shanghaitech_root: Path) -> None:
    """The same ``holdout`` block serves every dataset (only the source kind differs)."""
    for kind, root, names in [("avenue", avenue_root, {"01", "02"}),
                              ("shanghaitech", shanghaitech_root.parent, {"01_001", "01_002", "02_001"})]:
        parts = {}
        for part in ("fit", "held_out"):
            cfg = load_config_text(f"streams:\n  - kind: {kind}\n    split: train\n    holdout: {{fraction: 0.3, "
                                   f"seed: 0, part: {part}}}\noperators: []\n")
            parts[part] = {s.video for s in cfg.streams[0].build(BuildContext(data_root=root), "streams[0]")}
        assert parts["fit"] and parts["held_out"] and not parts["fit"] & parts["held_out"]
        assert parts["fit"] | parts["held_out"] == names
