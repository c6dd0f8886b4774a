"""The ``annotated_video`` sink on real Ped2 frames: one MP4 per stream (decoded back with PyAV) with the right frame
count and size, boxes coloured by score, a red border on anomalous frames; and pixels never reach the alert JSON."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from pydantic import ValidationError

from helpers import run_operator
from streamad.builtin import load_builtin_parts
from streamad.errors import ConfigError
from streamad.frames import Clip, EndOfStream, Frame, Regions, Scores
from streamad.models.handle import ModelHandle
from streamad.models.video.aivad.model import AiVad
from streamad.operators.video_model import VideoModelOp
from streamad.parts import BuildContext
from streamad.registry import SINKS
from streamad.sinks.annotated_video import AnnotatedVideoSink
from streamad.sinks.jsonl import event_json
from streamad.sources.image_folder import list_images, read_rgb

HIGH = np.array([60, 60, 140, 160], np.float32)  # x1, y1, x2, y2 in source pixels (Ped2: 360 x 240)
LOW = np.array([220, 60, 300, 160], np.float32)


@pytest.fixture(scope="module")
def ped2_frames(data_root: Path) -> list[np.ndarray]:
    """The first 8 frames of Ped2 Test001, ``(240, 360, 3) uint8 RGB``."""
    folder = data_root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test" / "Test001"
    return [read_rgb(p) for p in list_images(folder)[:8]]


def _sink(path: Path, **fields: object) -> AnnotatedVideoSink:
    load_builtin_parts()
    cls = SINKS.get("annotated_video")
    return cls(cls.Config(kind="annotated_video", path=str(path), **fields), BuildContext())


def _scored(stream: str, i: int, image: np.ndarray, anomalous: bool, fps: float = 10.0) -> Scores:
    """Frame ``i`` with a high-score region (0.95, driven by the deep stream) and a low-score one (0.1)."""
    return Scores(stream_id=stream, index=i, pts=i / fps, wall_time=1_700_000_000.0 + i / fps, raw_score=1.0,
                  score=1.0, boxes=np.stack([HIGH, LOW]), region_scores=np.array([0.95, 0.1], np.float32),
                  contributions={"velocity": np.array([0.2, 0.1], np.float32),
                                 "deep": np.array([1.4, 0.0], np.float32)},
                  normalized=0.8 if anomalous else 0.3, anomalous=anomalous, width=360, height=240, image=image)


def _decode(path: Path) -> tuple[list[np.ndarray], float]:
    """Every frame of ``path`` as ``(H, W, 3) uint8 RGB``, and the stream's frame rate."""
    with av.open(str(path)) as container:
        rate = float(container.streams.video[0].average_rate)
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)], rate


def _outline(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Mean RGB of a box's left, right and bottom edges (the label sits on the top edge)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    px = np.concatenate([img[y2, x1 + 5:x2 - 5], img[y1 + 5:y2 - 5, x1], img[y1 + 5:y2 - 5, x2]])
    return px.astype(np.float64).mean(axis=0)


def _red(rgb: np.ndarray) -> bool:
    return bool(rgb[0] > 180 and rgb[1] < 90 and rgb[2] < 90)


def _green(rgb: np.ndarray) -> bool:
    return bool(rgb[1] > 180 and rgb[0] < 90 and rgb[2] < 90)


def test_one_mp4_per_stream_with_boxes_coloured_by_score(tmp_path: Path, ped2_frames: list[np.ndarray]) -> None:
    sink = _sink(tmp_path / "annotated" / "{stream}.mp4")
    original = ped2_frames[0].copy()
    for i, img in enumerate(ped2_frames):
        sink.write(_scored("UCSDped2/Test001", i, img, anomalous=i >= 4))
    for i, img in enumerate(ped2_frames[:3]):
        sink.write(_scored("cam 2", i, img, anomalous=False))
    sink.end_stream(EndOfStream("UCSDped2/Test001"))
    path = tmp_path / "annotated" / "UCSDped2_Test001.mp4"  # '/' made safe; closed at its end of stream
    frames, rate = _decode(path)
    assert len(frames) == len(ped2_frames) and frames[0].shape == (240, 360, 3) and rate == 10.0
    for img in frames:
        assert _red(_outline(img, HIGH)) and _green(_outline(img, LOW))
    red_border = [_red(img[100:140, 0:2].reshape(-1, 3).mean(axis=0)) for img in frames]
    assert red_border == [False] * 4 + [True] * 4  # anomalous frames are framed in red
    assert np.array_equal(ped2_frames[0], original)  # the sink draws on a copy, never on the frame's pixels

    sink.close()
    other, _ = _decode(tmp_path / "annotated" / "cam_2.mp4")  # closed by close()
    assert len(other) == 3
    sink.close()  # idempotent


def test_odd_frame_sizes_are_padded_and_fps_follows_pts(tmp_path: Path, ped2_frames: list[np.ndarray]) -> None:
    sink = _sink(tmp_path / "{stream}.mp4", codec="mpeg4")
    for i, img in enumerate(ped2_frames[:5]):  # 359 x 239 frames at 25 frames/s (pts step 0.04 s)
        s = _scored("odd", i, np.ascontiguousarray(img[:239, :359]), anomalous=False, fps=25.0)
        s.width, s.height = 359, 239
        sink.write(s)
    sink.close()
    frames, rate = _decode(tmp_path / "odd.mp4")
    assert len(frames) == 5 and frames[0].shape == (240, 360, 3) and rate == 25.0  # yuv420p needs even sides
    for img in frames:  # padded with black, not stretched: the boxes stay where the model put them
        assert img[:200, 359].mean() < 40 and img[239, :300].mean() < 40 and img[:200, 357].mean() > 60
        assert _red(_outline(img, HIGH)) and _green(_outline(img, LOW))


def test_path_needs_the_stream_placeholder_and_a_writable_folder(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"\{stream\}"):
        _sink(tmp_path / "all.mp4")
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(ConfigError, match="cannot create folder"):
        _sink(tmp_path / "taken" / "videos" / "{stream}.mp4")


def test_score_operator_hands_pixels_to_the_sink_but_never_to_alert_json(
        tmp_path: Path, ped2_frames: list[np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    model = AiVad(AiVad.Config())
    model.fit([{"velocity": rng.normal(1.0, 0.2, (40, 3)).astype(np.float32)}], ["train"])
    handle = ModelHandle(model, "aivad", "1", {})
    op = VideoModelOp(VideoModelOp.Config(kind="video_model", model={"kind": "aivad"}), handle, "cam")
    feats = {"velocity": np.array([[1.0, 1.0, 1.0], [9.0, 9.0, 9.0]], np.float32)}  # a normal and a fast region
    boxes = Regions(np.stack([LOW, HIGH]) / 2, np.full(2, 0.5, np.float32), np.zeros(2, np.int64))
    scored = []
    for i, img in enumerate(ped2_frames):
        small = np.ascontiguousarray(img[::2, ::2])  # the pipeline's frame size: half the source
        frame = Frame("cam", i, i / 10, 1_700_000_000.0 + i / 10, small, source_size=(360, 240))
        out = op.process(Clip("cam", [frame], frame, regions=boxes, features=dict(feats)))
        assert out[0].image is small and out[0].boxes.tolist() == [LOW.tolist(), HIGH.tolist()]
        s = out[0]
        s.normalized, s.anomalous = 0.9, True
        s.region_scores = np.array([0.1, 0.95], np.float32)  # as the threshold operator leaves them
        scored.append(s)
    delivered = run_operator("alert", scored, stream="cam", min_frames=2, update_interval_s=0)
    events = [e for s in delivered for e in s.events]
    assert [e.type for e in events] == ["start", "end"]
    for e in events:
        line = event_json(e)  # what the jsonl and kafka sinks write
        assert "image" not in json.loads(line) and len(line) < 2000
        assert e.regions[0]["reasons"] == ["fast"] and e.regions[0]["box"] == HIGH.tolist()

    sink = _sink(tmp_path / "{stream}.mp4")
    *frames_out, eos = delivered  # the event is still open at the end: its end rides on the EndOfStream
    assert isinstance(eos, EndOfStream) and [e.type for e in eos.events] == ["end"]
    for s in frames_out:
        sink.write(s)
    sink.end_stream(eos)
    frames, _ = _decode(tmp_path / "cam.mp4")
    assert len(frames) == len(ped2_frames) and frames[0].shape == (120, 180, 3)  # drawn at the frame size
    assert _red(_outline(frames[0], HIGH / 2)) and _green(_outline(frames[0], LOW / 2))  # boxes scaled to it
    sink.close()

    jsonl = _sink_jsonl(tmp_path / "alerts.jsonl")
    for s in frames_out:
        jsonl.write(s)
    jsonl.end_stream(eos)
    jsonl.close()
    text = (tmp_path / "alerts.jsonl").read_text()
    assert len(text.splitlines()) == 2 and "image" not in text


def _sink_jsonl(path: Path):
    cls = SINKS.get("jsonl")
    return cls(cls.Config(kind="jsonl", path=str(path)), BuildContext())
