"""The ``image_model`` operator in the pipeline: region boxes from the thresholded map, every-Nth-frame scoring,
the pixel threshold in the ``threshold`` operator, the calibration, and fit / eval / serve end to end on a small
synthetic folder dataset (real files, the real engine, a real model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import frame, run_operator
from image_fixtures import defect_mask, folder_pipeline, texture, write_folder_dataset
from streamad.config import load_config_text
from streamad.models.handle import ModelHandle
from streamad.models.postprocess import PostProcess, PostProcessFitter, separated_threshold
from streamad.operators.image_model import ImageModelOp, ImageModelStage, ImageScores, regions_from_map
from streamad.operators.threshold import Threshold
from streamad.runtime.jobs import evaluate, fit, serve


def test_regions_from_map() -> None:
    amap = np.zeros((40, 60), np.float32)
    amap[5:10, 10:20] = 0.9  # 50 px
    amap[30:32, 50:52] = 0.7  # 4 px
    amap[20:30, 0:8] = 0.8
    amap[22, 3] = 0.95
    boxes, scores = regions_from_map(amap, 0.5, min_area=5)
    assert boxes.tolist() == [[0, 20, 8, 30], [10, 5, 20, 10]]  # pixel edges, highest peak first
    assert scores.tolist() == pytest.approx([0.95, 0.9])
    boxes, _ = regions_from_map(amap, 0.5, min_area=1, max_regions=1)
    assert len(boxes) == 1
    for thr, min_area in ((0.99, 1), (0.5, 100)):  # nothing above the threshold; components all too small
        boxes, scores = regions_from_map(amap, thr, min_area=min_area)
        assert boxes.shape == (0, 4) and scores.shape == (0,) and boxes.dtype == scores.dtype == np.float32


class _FakeRunner:
    name = "fake"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        amap = np.zeros((1, 1, 20, 30), np.float32)
        amap[0, 0, 2:6, 15:25] = 2.0 + self.calls
        return amap, np.array([float(self.calls)], np.float32)


def test_operator_every_nth_frame_and_source_boxes() -> None:
    runner = _FakeRunner()
    handle = ImageModelStage(ModelHandle(None, "fake", "1", runner=runner), pixel_threshold=1.0)
    cfg = ImageModelOp.Config(kind="image_model", model={"kind": "padim"}, every_n=2, min_region_area=4)
    op = ImageModelOp(cfg, handle, "s")
    outs = []
    for i in range(5):
        f = frame(i, size=(60, 40), label=i % 2)
        f.source_size = (120, 80)  # a resize operator halved the frame before
        outs.extend(op.process(f))
    assert runner.calls == 3 and [o.scored for o in outs] == [True, False, True, False, True]
    assert [o.raw_score for o in outs] == [1.0, 1.0, 2.0, 2.0, 3.0]
    assert all(isinstance(o, ImageScores) and o.anomaly_map.shape == (20, 30) for o in outs)
    assert outs[0].boxes.tolist() == [[60.0, 8.0, 100.0, 24.0]]  # map (30x20) -> source (120x80) pixels
    assert outs[0].region_scores.tolist() == [3.0] and (outs[0].width, outs[0].height) == (120, 80)
    assert [o.label for o in outs] == [0, 1, 0, 1, 0]


def test_a_clip_windows_first_clip_is_scored_on_its_target_and_emitted_in_stream_order() -> None:
    """Behind a clip window (target last, edges padded) the first clip stands for frames 0-3: the model scores its
    target (frame 3) once and the scores go out as frames 0, 1, 2, 3, so smoothing and alerts see stream order."""
    images = [np.full((40, 60, 3), i, np.uint8) for i in range(6)]
    clips = run_operator("clip_window", [frame(i, size=(60, 40), image=images[i]) for i in range(6)],
                         clip_length_in_frames=4, frames_between_clips=1, target_frame="last")
    seen: list[int] = []
    runner = _FakeRunner()

    def scoring(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append(int(batch[0, 0, 0]))  # which frame's image was scored
        return runner(batch)

    handle = ImageModelStage(ModelHandle(None, "fake", "1", runner=scoring), pixel_threshold=1.0)
    op = ImageModelOp(ImageModelOp.Config(kind="image_model", model={"kind": "padim"}), handle, "s")
    outs = [o for c in clips for o in op.process(c)]
    assert [o.index for o in outs] == [0, 1, 2, 3, 4, 5]
    assert seen == [3, 4, 5]  # one model call per clip, on its target frame
    assert [o.raw_score for o in outs] == [1.0, 1.0, 1.0, 1.0, 2.0, 3.0]


def test_threshold_normalises_regions_with_the_pixel_threshold() -> None:
    s = ImageScores(stream_id="s", index=0, pts=0.0, wall_time=0.0, raw_score=0.3, score=0.3,
                    boxes=np.zeros((1, 4), np.float32), region_scores=np.array([0.6], np.float32))
    op = Threshold(Threshold.Config(kind="threshold"), PostProcess(0.0, 1.0, 0.3, 0.6), "s")
    out = op.process(s)[0]
    assert out.normalized == pytest.approx(0.5) and out.anomalous
    assert out.region_scores.tolist() == pytest.approx([0.5])


def test_calibration() -> None:
    assert separated_threshold(np.array([1.0, 2.0, 4.0]), 4.0) == 3.0
    assert separated_threshold(np.array([4.0, 5.0]), 4.0) == 4.0
    cal = PostProcessFitter()
    mask = np.zeros((16, 16), bool)
    mask[4:12, 4:12] = True
    for i in range(6):
        amap = np.zeros((8, 8), np.float32) + 0.1 * i
        if i >= 3:
            amap[2:6, 2:6] = 5.0 + i
        cal.add(float(amap.max()), int(i >= 3), amap, mask if i >= 3 else None)
    post = cal.fit("f1_adaptive", None, "fit.validation")
    assert post.min == 0.0 and post.max == 10.0
    assert 0.5 < post.image_threshold < 8.0  # between the normal (<= 0.5) and anomalous (>= 8) scores
    assert post.pixel_threshold == 8.0 and post.pixel_threshold_from.startswith("masks")
    assert PostProcess.from_json(post.to_json(), "model.json") == post  # the model.json round trip is exact
    manual = cal.fit("manual", 3.0, "fit.validation")
    assert manual.image_threshold == manual.pixel_threshold == 3.0


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(7)
    return write_folder_dataset(tmp_path_factory.mktemp("textures"), (texture(rng) for _ in range(30)),
                                ((texture(rng, defect=True), defect_mask()) for _ in range(6)))


def _config(root: Path, out: Path) -> str:
    return folder_pipeline("textures", root, out / "model", """
  - kind: image_model
    model: {kind: padim, layers: [layer1, layer2], n_features: 20, input_size: [64, 96]}
    min_region_area: 4
  - kind: threshold
  - {kind: alert, min_frames: 1, cooldown_frames: 1}
""", sinks=f"[{{kind: jsonl, path: {out}/alerts.jsonl}}]")


def test_fit_eval_serve_on_a_folder_dataset(folder_dataset: Path, tmp_path: Path) -> None:
    cfg = load_config_text(_config(folder_dataset, tmp_path))
    res = fit(cfg, quiet=True)
    meta = json.loads((res.model_dir / "model.json").read_text())
    assert meta["model"]["kind"] == "padim" and meta["fit"]["train_images"] == 24
    post = meta["postprocess"]
    assert post["frames"] == 12 and post["pixel_threshold_from"].startswith("masks")
    report, stats = evaluate(cfg, quiet=True)
    assert report.frames == 12 and report.image_auroc == 1.0 and report.pixel_auroc > 0.95, report.format_table()
    assert report.per_stream["textures/bad"]["image_auroc"] == 1.0
    served = serve(cfg)
    assert served.stats.delivered == 12 and not served.stats.errors
    events = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    starts = [e for e in events if e["type"] == "start" and e["stream_id"] == "textures/bad"]
    assert starts and all(e["regions"] for e in starts)
    x1, y1, x2, y2 = starts[0]["regions"][0]["box"]  # source pixels (120x80), around the blob at (85, 30)
    assert x1 <= 85 <= x2 and y1 <= 30 <= y2
    assert starts[0]["model"]["name"] == "padim"


class _ContentRunner:
    """Map and score from the image content, so batched and one-by-one calls must agree."""

    name = "content"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = images if images.ndim == 4 else images[None]
        self.calls.append(len(batch))
        maps = batch[:, ::4, ::4, 0].astype(np.float32)[:, None] / 255.0
        return maps, maps.reshape(len(batch), -1).max(1)


def test_process_batch_equals_one_by_one() -> None:
    rng = np.random.default_rng(9)
    msgs = [frame(i // 3, stream=f"s{i % 3}", size=(40, 24) if i % 3 else (20, 12),
                  image=rng.integers(0, 255, (24 if i % 3 else 12, 40 if i % 3 else 20, 3), dtype=np.uint8))
            for i in range(9)]  # 3 streams x 3 frames, two frame sizes
    cfg = ImageModelOp.Config(kind="image_model", model={"kind": "padim"}, every_n=2, min_region_area=1)

    def run(batched: bool) -> tuple[list[ImageScores], list[int]]:
        runner = _ContentRunner()
        handle = ImageModelStage(ModelHandle(None, "c", "1", runner=runner), pixel_threshold=0.8)
        ops = {s: ImageModelOp(cfg, handle, s) for s in ("s0", "s1", "s2")}
        out: list[ImageScores] = []
        if batched:
            for res in ImageModelOp.process_batch([ops[m.stream_id] for m in msgs[:5]], msgs[:5]):
                out.extend(res)
            for res in ImageModelOp.process_batch([ops[m.stream_id] for m in msgs[5:]], msgs[5:]):
                out.extend(res)
        else:
            for m in msgs:
                out.extend(ops[m.stream_id].process(m))
        return out, runner.calls

    one, calls_one = run(False)
    many, calls_many = run(True)
    assert sum(calls_one) == sum(calls_many) == 6 and len(calls_many) < len(calls_one)
    for a, b in zip(one, many):
        assert (a.stream_id, a.index, a.scored, a.raw_score) == (b.stream_id, b.index, b.scored, b.raw_score)
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.anomaly_map, b.anomaly_map)
