"""Evaluation metrics (anomalib definitions), plots and the evaluation report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

from streamad.eval.plots import anomalous_runs, plot_clip_scores, plot_roc
from streamad.eval.report import EvalReport, build_report, plot_file_name, write_plots
from streamad.metric_math import aupr, aupro, auroc, frame_metrics, pixel_auroc, pixel_metrics

from ped2_fixtures import DATA  # $STREAMAD_DATA or ../shared/data
TILE_MASK = DATA / "magnetic_tile" / "MT_Blowhole" / "Imgs" / "exp1_num_290998.png"  # two separate blowholes
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000, path
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 100 and img.shape[1] > 100


# ---------------------------------------------------------------- frame metrics


def test_auroc_anomalib_example() -> None:
    assert auroc([0.13, 0.26, 0.08, 0.92, 0.03], [0, 0, 1, 1, 0]) == pytest.approx(0.6667, abs=1e-4)


def test_aupr_anomalib_example() -> None:
    labels = [0, 1, 1, 1, 0, 0, 0, 0, 1, 1]
    scores = [0.59, 0.35, 0.72, 0.33, 0.73, 0.81, 0.30, 0.05, 0.04, 0.48]
    assert aupr(scores, labels) == pytest.approx(0.4899, abs=1e-4)


def test_frame_metrics_at_threshold() -> None:
    scores = np.array([0.1, 0.2, 0.7, 0.4, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1])
    m = frame_metrics(scores, labels, threshold=0.5)  # predicted: 0.7 (FP), 0.8, 0.9 (TP); 0.4 missed
    assert set(m) == {"auroc", "aupr", "f1", "precision", "recall"}
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["auroc"] == pytest.approx(8 / 9)  # 8 of 9 (anomalous, normal) pairs ranked right
    # label = score >= threshold: a frame exactly at the threshold counts as anomalous
    assert frame_metrics(scores, labels, threshold=0.4)["recall"] == pytest.approx(1.0)
    # nothing predicted anomalous: F1 is 0, not an error
    assert frame_metrics(scores, labels, threshold=2.0)["f1"] == 0.0


def test_frame_metrics_perfect_separation() -> None:
    m = frame_metrics([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], threshold=0.5)
    # anomalib's AUPR keeps the low-threshold points of full recall (precision 1/2, 2/3) on the curve and its
    # stable sort by recall joins (recall 1/2, precision 1) to (1, 1/2): area 1/2 + 1/2 * 3/4 = 0.875
    assert m == pytest.approx({"auroc": 1.0, "aupr": 0.875, "f1": 1.0, "precision": 1.0, "recall": 1.0})


def test_frame_metrics_one_class_and_mismatch() -> None:
    with pytest.raises(ValueError, match="all 3 labels are normal"):
        frame_metrics([0.1, 0.2, 0.3], [0, 0, 0], 0.5)
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        frame_metrics([0.1, 0.2, 0.3], [0, 1], 0.5)


# ---------------------------------------------------------------- pixel metrics


def test_pixel_auroc_perfect_inverted_and_shape_error() -> None:
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 2:4, 2:5] = True
    masks[1, 5:8, 0:2] = True
    assert pixel_auroc(masks.astype(np.float32), masks) == 1.0
    assert pixel_auroc(-masks.astype(np.float32), masks) == 0.0
    with pytest.raises(ValueError, match=r"\(N, H, W\).*\(2, 8, 8\) and \(2, 8, 7\)"):
        pixel_auroc(np.zeros((2, 8, 8)), masks[:, :, :7])


def test_aupro_perfect_and_constant_maps() -> None:
    rng = np.random.default_rng(3)
    masks = rng.random((3, 24, 24)) > 0.85
    assert aupro(masks.astype(np.float32), masks) == pytest.approx(1.0)
    # a constant map: one threshold, the curve is the diagonal -> area fpr_limit^2 / 2, normalised fpr_limit / 2
    assert aupro(np.full(masks.shape, 0.3), masks) == pytest.approx(0.15)
    assert aupro(np.full(masks.shape, 0.3), masks, fpr_limit=0.7) == pytest.approx(0.35)


def test_aupro_hand_computed() -> None:
    # one row: region A = pixels 0-1 (scores .9, .4), region B = pixel 3 (.6), background .8 .5 .2 .1
    maps = np.array([[[0.9, 0.4, 0.8, 0.6, 0.5, 0.2, 0.1]]])
    masks = np.array([[[1, 1, 0, 1, 0, 0, 0]]], dtype=bool)
    # curve: (0, .25) after .9, (.25, .25) after .8, (.25, .75) after .6, next fpr .5 -> cut at .3
    # area = .25 * .25 + .05 * .75 = .1; / .3
    assert aupro(maps, masks, fpr_limit=0.3) == pytest.approx(1 / 3)


def test_aupro_regions_are_per_image_and_8_connected() -> None:
    masks = np.zeros((2, 5, 5), bool)
    masks[0, 1, 1] = masks[0, 2, 2] = True  # diagonal neighbours: one region (8-connectivity, as cv2)
    masks[1, 1, 1] = masks[1, 2, 2] = True  # same place in the next image: a different region
    maps = np.zeros(masks.shape)
    maps[0][masks[0]] = 1.0  # only the first image's region is found
    # two regions of equal weight: PRO jumps to 0.5 at fpr 0, then the diagonal up to (1, 1)
    expected = (0.5 + (0.5 + 0.5 * 0.3)) / 2  # mean height over [0, 0.3]
    assert aupro(maps, masks) == pytest.approx(expected)


def _aupro_by_definition(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    """PRO and FPR evaluated threshold by threshold, straight from the definition."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True
    regions, n = ndimage.label(masks, structure=structure)
    background = maps[~masks]
    xs, ys = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        xs.append(float((background >= t).mean()))
        ys.append(float(np.mean([(maps[regions == k] >= t).mean() for k in range(1, n + 1)])))
    xs, ys = np.array(xs), np.array(ys)
    keep = xs <= fpr_limit
    x, y = xs[keep], ys[keep]
    nxt = int(np.argmax(xs > fpr_limit))
    if xs[nxt] > fpr_limit:
        w = (fpr_limit - x[-1]) / (xs[nxt] - x[-1])
        x, y = np.append(x, fpr_limit), np.append(y, y[-1] + w * (ys[nxt] - y[-1]))
    return float(np.trapezoid(y, x) / fpr_limit)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aupro_matches_definition_on_random_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    masks = np.zeros((2, 12, 12), bool)
    for k in range(2):
        for _ in range(2):
            y, x = rng.integers(0, 9, 2)
            masks[k, y:y + rng.integers(1, 4), x:x + rng.integers(1, 4)] = True
    maps = np.round(ndimage.gaussian_filter(masks.astype(float), 1.0) + rng.random(masks.shape) * 0.5, 2)
    for limit in (0.3, 0.05, 1.0):
        assert aupro(maps, masks, limit) == pytest.approx(_aupro_by_definition(maps, masks, limit), abs=1e-9)


def test_aupro_on_real_defect_mask_weighs_regions_not_pixels() -> None:
    mask = cv2.imread(str(TILE_MASK), cv2.IMREAD_GRAYSCALE) > 127
    labelled, n = ndimage.label(mask, structure=np.ones((3, 3)))
    assert n == 2
    sizes = np.bincount(labelled.ravel())[1:]
    small = int(np.argmin(sizes)) + 1
    blurred = ndimage.gaussian_filter(mask.astype(np.float32), 3.0)
    assert aupro(blurred, mask) > 0.9
    # finding only the smaller blowhole: half the regions, whatever its pixel share
    only_small = (labelled == small).astype(np.float32)
    assert aupro(only_small, mask) == pytest.approx((0.5 + 0.65) / 2, abs=1e-6)
    assert pixel_auroc(only_small, mask) < 0.75  # pixel AUROC counts pixels: most are missed
    with pytest.raises(ValueError, match="aupro"):
        aupro(blurred, np.zeros_like(mask))


# ---------------------------------------------------------------- plots


def test_plot_roc_writes_png(tmp_path: Path) -> None:
    out = plot_roc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], tmp_path / "sub" / "roc.png", title="test")
    assert out == tmp_path / "sub" / "roc.png"
    assert_png(out)


def test_anomalous_runs() -> None:
    idx = [10, 11, 12, 13, 14, 15, 16]
    assert anomalous_runs(idx, [1, 1, 0, 0, 1, 0, 1]) == [(10, 11), (14, 14), (16, 16)]
    assert anomalous_runs(idx, [0] * 7) == []


def test_plot_clip_scores_draws_runs_and_threshold(tmp_path: Path) -> None:
    idx = np.arange(5, 65)
    labels = ((idx >= 20) & (idx < 40)).astype(int)
    raw = labels * 0.6 + np.sin(idx) * 0.1 + 0.2
    smoothed = np.convolve(raw, np.ones(5) / 5, mode="same")
    out = plot_clip_scores(idx, smoothed, labels, 0.5, tmp_path / "clip.png", title="ped2/Test001",
                           raw_scores=raw)
    assert_png(out)
    img = cv2.imread(str(out))
    # the shaded ground-truth span is light red: many pixels with R clearly above G and B
    b, g, r = (img[..., k].astype(int) for k in range(3))
    assert ((r > 230) & (g < 225) & (b < 225) & (g > 150)).sum() > 500
    with pytest.raises(ValueError, match="60 frame indices but 59 scores"):
        plot_clip_scores(idx, smoothed[:-1], None, 0.5, tmp_path / "bad.png")


def test_plots_need_no_display(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from streamad.eval.plots import plot_roc\n"
        f"plot_roc([0.1, 0.9, 0.2, 0.7], [0, 1, 0, 1], {str(tmp_path / 'roc.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "TkAgg"  # a GUI backend configured, and no display to open it on
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert_png(tmp_path / "roc.png")


# ---------------------------------------------------------------- report


def _records() -> list[tuple[str, int, float, float, int]]:
    rng = np.random.default_rng(7)
    recs = []
    for clip, (start, stop) in {"ped2/Test001": (10, 25), "ped2/Test002": (0, 0)}.items():
        for i in range(40):
            label = int(start <= i < stop)
            raw = 0.3 + 0.4 * label + rng.normal(0, 0.15)
            recs.append((clip, i, raw, raw, label))
    # smoothing: the score is the mean of the raw scores of frames i-2..i+2 within the clip
    out = []
    for clip in ("ped2/Test001", "ped2/Test002"):
        rows = [r for r in recs if r[0] == clip]
        raw = np.array([r[2] for r in rows])
        sm = np.convolve(np.pad(raw, 2, mode="edge"), np.ones(5) / 5, mode="valid")
        out += [(c, i, r, float(s), y) for (c, i, r, _, y), s in zip(rows, sm)]
    return out


def test_build_report_metrics_and_json() -> None:
    recs = _records()
    rep = build_report(list(reversed(recs)), threshold=0.5, fps=123.4)
    assert isinstance(rep, EvalReport)
    data = json.loads(json.dumps(rep.to_json()))
    assert list(data)[:5] == ["frame_auroc", "frame_aupr", "f1", "frames", "fps"]
    assert {"frame_auroc_raw", "frame_aupr_raw", "per_clip", "threshold"} <= set(data)
    assert data["frames"] == 80 and data["fps"] == 123.4
    labels = np.array([r[4] for r in recs])
    assert data["frame_auroc"] == pytest.approx(auroc([r[3] for r in recs], labels))
    assert data["frame_auroc_raw"] == pytest.approx(auroc([r[2] for r in recs], labels))
    assert data["frame_auroc"] != data["frame_auroc_raw"]
    clip1, clip2 = data["per_clip"]["ped2/Test001"], data["per_clip"]["ped2/Test002"]
    assert (clip1["frames"], clip1["anomalous_frames"]) == (40, 15)
    assert clip1["auroc"] > 0.8
    assert clip2["anomalous_frames"] == 0 and clip2["auroc"] is None  # one class: undefined, not an error
    table = rep.format_table()
    assert "frame AUROC" in table and f"{rep.frame_auroc:.4f}" in table and "ped2/Test002" in table


def test_build_report_accepts_dicts_and_rejects_bad_records() -> None:
    dicts = [dict(zip(("stream_id", "index", "raw_score", "score", "label"), r)) for r in _records()]
    assert build_report(dicts, 0.5, 10.0).frames == 80
    with pytest.raises(ValueError, match=r"stream 'a', frame 3\): no ground-truth label"):
        build_report([("a", 2, 0.1, 0.1, 0), ("a", 3, 0.9, 0.9, None)], 0.5, 1.0)
    with pytest.raises(ValueError, match="stream 'a': frame 2 was scored twice"):
        build_report([("a", 2, 0.1, 0.1, 0), ("a", 2, 0.9, 0.9, 1)], 0.5, 1.0)
    with pytest.raises(ValueError, match="all 2 labels are normal"):
        build_report([("a", 1, 0.1, 0.1, 0), ("a", 2, 0.9, 0.9, 0)], 0.5, 1.0)


def test_write_plots_one_png_per_clip(tmp_path: Path) -> None:
    paths = write_plots(_records(), 0.5, tmp_path / "plots")
    names = sorted(p.name for p in paths)
    assert names == ["ped2_Test001.png", "ped2_Test002.png", "roc.png"]
    assert plot_file_name("ped2/Test001") == "ped2_Test001.png"
    for p in paths:
        assert_png(p)


def test_pixel_metrics_from_one_sort_equal_the_separate_metrics() -> None:
    """pixel_metrics (one sort of the pixels by 64-bit keys) gives the numbers of pixel_auroc, aupr and aupro on maps
    with negative values, -0.0 / 0.0 and many ties (rounded values)."""
    rng = np.random.default_rng(7)
    masks = np.zeros((5, 30, 40), bool)
    masks[:, 8:16, 10:22] = True
    masks[2, 20:25, 1:4] = True
    maps = rng.normal(size=masks.shape).astype(np.float32) + 0.8 * masks
    for m in (maps, np.round(maps, 1), np.where(np.abs(maps) < 0.3, np.float32(-0.0), maps)):
        got = pixel_metrics(m, masks)
        assert got["auroc"] == pytest.approx(pixel_auroc(m, masks), abs=1e-9)
        assert got["aupr"] == pytest.approx(aupr(m.reshape(-1), masks.reshape(-1)), abs=1e-9)
        assert got["aupro"] == pytest.approx(aupro(m, masks), abs=1e-9)
