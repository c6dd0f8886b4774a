"""AI-VAD's extractors on real frames: the CenterNet detector (object_regions), MoveNet pose (pose_features) and
EfficientNet-Lite0 appearance vectors (deep_features), with the networks of ../shared/models and the packaged
ImageNet weights. (The velocity histogram on a known synthetic motion is tested in test_velocity.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import frame
from ped2_fixtures import DATA, vtest_frame as read_vtest
from streamad.errors import ModelError
from streamad.frames import Clip, Frame, Regions
from streamad.models.components.centernet import PERSON_LABEL, CenterNetDetector
from streamad.models.components.movenet import MoveNetPose
from streamad.models.components.region_appearance import RegionAppearance
from streamad.operators.deep_features import DeepFeatures
from streamad.operators.foreground_regions import box_area
from streamad.operators.object_regions import ObjectRegions
from streamad.operators.pose_features import PoseFeatures, pose_vectors
from streamad.parts import BuildContext
from streamad.sources.datasets.ucsd import ucsd_videos
from streamad.sources.image_folder import read_rgb

VIDEO_MODELS = DATA.parent / "models"
CENTERNET = VIDEO_MODELS / "centernet.onnx"
MOVENET = VIDEO_MODELS / "movenet-multipose.onnx"


@pytest.fixture(scope="module")
def vtest_frame() -> np.ndarray:
    return read_vtest(120)


@pytest.fixture(scope="module")
def detector() -> CenterNetDetector:
    return CenterNetDetector(CENTERNET)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (box_area(a[None])[0] + box_area(b[None])[0] - inter)


def test_detector_finds_the_walking_people_of_vtest(vtest_frame: np.ndarray, detector: CenterNetDetector) -> None:
    boxes, scores, labels = detector(vtest_frame, 0.3)
    people = boxes[labels == PERSON_LABEL]
    h, w = vtest_frame.shape[:2]
    # frame 120 of vtest.avi shows at least five pedestrians, nearly all upright (taller than wide; a person cut by
    # another is not), all inside the image
    assert len(people) >= 5, (boxes, scores, labels)
    assert np.mean(people[:, 3] - people[:, 1] > 1.5 * (people[:, 2] - people[:, 0])) >= 0.7
    assert np.all((people[:, [0, 2]] >= 0) & (people[:, [0, 2]] <= w - 1))
    assert np.all((people[:, [1, 3]] >= 0) & (people[:, [1, 3]] <= h - 1))
    assert np.all(np.diff(scores) <= 0) and scores.min() >= 0.3


def test_pose_keypoints_fall_inside_the_person_boxes(vtest_frame: np.ndarray, detector: CenterNetDetector) -> None:
    boxes, _, labels = detector(vtest_frame, 0.3)
    people = boxes[labels == PERSON_LABEL]
    kp = MoveNetPose(MOVENET, crop_size=96)(vtest_frame, people)
    assert kp.shape == (len(people), 17, 3)
    found = kp[:, :, 2].max(axis=1) > 0.3
    assert found.mean() >= 0.8  # a skeleton for (nearly) every pedestrian
    for box, points in zip(people[found], kp[found]):
        w, h = box[2] - box[0], box[3] - box[1]
        pad = np.array([-0.15 * w, -0.15 * h, 0.15 * w, 0.15 * h])
        x1, y1, x2, y2 = box + pad
        sure = points[points[:, 2] > 0.3]
        inside = (sure[:, 0] >= x1) & (sure[:, 0] <= x2) & (sure[:, 1] >= y1) & (sure[:, 1] <= y2)
        assert inside.mean() >= 0.8, (box, sure)
        # head above feet: nose (0) above the ankles (15, 16) in image coordinates
        if points[0, 2] > 0.3 and points[15, 2] > 0.3:
            assert points[0, 1] < points[15, 1]
    feats = pose_vectors(kp, people)
    assert feats.shape == (len(people), 34)
    assert np.all(np.abs(feats[found]) < 1.5)  # normalised to the box: near 0-1


@pytest.mark.parametrize("method", ["crop", "roi_align"])
def test_deep_vectors_of_one_person_in_consecutive_frames_are_closer_than_of_other_people(
        detector: CenterNetDetector, method: str) -> None:
    enc = RegionAppearance(method=method)  # EfficientNet-Lite0 layer3 + layer4, unit norm
    hits, pairs, ratios = 0, 0, []
    for t in (120, 300):
        a, b = read_vtest(t), read_vtest(t + 1)
        ba, _, la = detector(a, 0.3)
        bb, _, lb = detector(b, 0.3)
        ba, bb = ba[la == PERSON_LABEL], bb[lb == PERSON_LABEL]
        va, vb = enc(a, ba), enc(b, bb)
        assert va.shape == (len(ba), 432)
        np.testing.assert_allclose(np.linalg.norm(va, axis=1), 1.0, atol=1e-5)
        dist = np.linalg.norm(va[:, None] - vb[None], axis=2)
        for i, box in enumerate(ba):
            ious = [_iou(box, other) for other in bb]
            j = int(np.argmax(ious))
            if ious[j] > 0.6:  # the same person one frame later
                pairs += 1
                hits += int(np.argmin(dist[i]) == j)
                ratios.append(dist[i, j] / np.median(np.delete(dist[i], j)))
    assert pairs >= 10
    assert hits / pairs >= 0.85  # each person's nearest vector in the next frame is (nearly always) its own
    assert np.mean(ratios) < 0.6  # and much nearer than the other people's


def test_roi_align_method_gives_vectors_of_the_same_width() -> None:
    img = read_vtest(120)
    boxes = np.array([[10, 10, 60, 90], [100, 50, 140, 160]], np.float32)
    v = RegionAppearance(method="roi_align")(img, boxes)
    assert v.shape == (2, 432) and np.all(np.isfinite(v))
    assert RegionAppearance()(img, np.zeros((0, 4), np.float32)).shape == (0, 432)


def _ped2_clip(name: str, index: int, length: int = 4) -> Clip:
    video = next(v for v in ucsd_videos(DATA / "UCSD_Anomaly_Dataset.v1p2", "UCSDped2", "test") if v.name == name)
    frames = [Frame("ped2", i, i / 10, 0.0, read_rgb(video.frame_paths[i])) for i in range(index - length + 1, index + 1)]
    return Clip("ped2", frames, frames[-1])


def test_object_regions_pose_and_deep_operators_on_a_ped2_clip_with_a_cyclist() -> None:
    # Test004 frame 100: a cyclist among pedestrians
    clip = _ped2_clip("Test004", 100)
    cfg = ObjectRegions.Config(kind="object_regions", weights=str(CENTERNET))
    regions_op = ObjectRegions(cfg, ObjectRegions.create_shared(cfg, None), "ped2")  # type: ignore[arg-type]
    clip = regions_op.process(clip)[0]
    r = clip.regions
    assert r is not None and len(r) >= 3
    assert np.all(box_area(r.boxes) > 100)
    assert (r.labels == PERSON_LABEL).sum() >= 2  # detector boxes (COCO ids)
    assert set(np.unique(r.labels)) <= set(range(0, 91))
    pcfg = PoseFeatures.Config(kind="pose_features", weights=str(MOVENET))
    clip = PoseFeatures(pcfg, PoseFeatures.create_shared(pcfg, None), "ped2").process(clip)[0]  # type: ignore[arg-type]
    dcfg = DeepFeatures.Config(kind="deep_features")
    clip = DeepFeatures(dcfg, DeepFeatures.create_shared(dcfg, None), "ped2").process(clip)[0]  # type: ignore[arg-type]
    assert clip.features["pose"].shape == (len(r), 34)
    assert clip.features["deep"].shape == (len(r), 432)
    assert clip.keypoints is not None and clip.keypoints.shape == (len(r), 17, 3)


def test_persons_only_keeps_person_detections_only() -> None:
    clip = _ped2_clip("Test004", 100)
    cfg = ObjectRegions.Config(kind="object_regions", weights=str(CENTERNET), persons_only=True)
    out = ObjectRegions(cfg, ObjectRegions.create_shared(cfg, None), "ped2").process(clip)[0]  # type: ignore[arg-type]
    assert len(out.regions) >= 2 and np.all(out.regions.labels == PERSON_LABEL)


def test_missing_network_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="nothing is downloaded"):
        CenterNetDetector(tmp_path / "centernet.onnx")
    with pytest.raises(ModelError, match="multiple of 32"):
        MoveNetPose(MOVENET, crop_size=100)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a network")
    with pytest.raises(ModelError, match="bad.onnx"):
        CenterNetDetector(bad)


def _cpu_runs_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_networks_run_f32_unless_bf16_is_asked_for(vtest_frame: np.ndarray, detector: CenterNetDetector) -> None:
    # left to itself OpenVINO runs bf16 on CPUs with bfloat16 units: the default must be f32 on every CPU, so that a
    # model fitted on one machine sees the same boxes and keypoints on another
    assert detector.net.precision_used == "f32"
    assert MoveNetPose(MOVENET).net.precision_used == "f32"
    want = "bf16" if _cpu_runs_bf16() else "f32"
    cfg = ObjectRegions.Config(kind="object_regions", weights=str(CENTERNET), inference_precision="bf16")
    fast = ObjectRegions.create_shared(cfg, None).detector  # type: ignore[arg-type]
    assert fast.net.precision_used == want
    pcfg = PoseFeatures.Config(kind="pose_features", weights=str(MOVENET), inference_precision="bf16")
    assert PoseFeatures.create_shared(pcfg, None).net.precision_used == want  # type: ignore[arg-type]
    # bf16 moves the scores a little, not the people found
    b32, s32, l32 = detector(vtest_frame, 0.3)
    b16, s16, l16 = fast(vtest_frame, 0.3)
    people32, people16 = b32[l32 == PERSON_LABEL], b16[l16 == PERSON_LABEL]
    assert abs(len(people32) - len(people16)) <= 1
    matched = [max(_iou(a, b) for b in people16) for a in people32]
    assert np.mean(np.array(matched) > 0.7) >= 0.8, matched
    with pytest.raises(ValueError, match="CenterNet detector: inference precision must be one of f32, bf16"):
        CenterNetDetector(CENTERNET, precision="fp16")
    with pytest.raises(ValueError, match="inference_precision"):
        PoseFeatures.Config(kind="pose_features", weights=str(MOVENET), inference_precision="fp16")


def test_maskrcnn_loads_a_local_state_dict_strictly(tmp_path: Path) -> None:
    # Mask R-CNN's COCO weights cannot be had offline here: a randomly initialised state dict of the same
    # architecture stands in, to show the detector loads a local file strictly and returns COCO-labelled boxes.
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    from streamad.models.components.maskrcnn import MaskRcnnDetector

    torch.manual_seed(0)
    path = tmp_path / "maskrcnn.pth"
    torch.save(maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict(), path)
    det = MaskRcnnDetector(path)
    boxes, scores, labels = det(read_vtest(120)[:120, :160], 0.0)
    assert boxes.shape[1] == 4 and len(boxes) == len(scores) == len(labels)
    torch.save({"not": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ModelError, match="wrong.pth does not match the architecture"):
        MaskRcnnDetector(tmp_path / "wrong.pth")


def test_openvino_appearance_matches_torch() -> None:
    img = read_vtest(120)
    boxes = CenterNetDetector(CENTERNET)(img, 0.3)[0]
    kw = dict(layers=["layer3"], crop_size=48, context=1.5)
    a = RegionAppearance(**kw)(img, boxes)  # type: ignore[arg-type]
    b = RegionAppearance(**kw, runtime="openvino")(img, boxes)  # type: ignore[arg-type]
    assert a.shape == b.shape == (len(boxes), 112)
    np.testing.assert_allclose(a, b, atol=1e-4)
    with pytest.raises(ModelError, match="needs method 'crop'"):
        RegionAppearance(method="roi_align", runtime="openvino")


class _Counting:
    """Wraps a detector / pose network and counts its calls (the real network still runs)."""

    def __init__(self, net: object) -> None:
        self.net, self.calls = net, 0

    def __call__(self, *args: object) -> object:
        self.calls += 1
        return self.net(*args)  # type: ignore[operator]


def test_detect_every_reuses_detections_and_their_keypoints_between_detector_runs() -> None:
    clips = [_ped2_clip("Test001", i) for i in (110, 111, 112)]
    cfg = ObjectRegions.Config(kind="object_regions", weights=str(CENTERNET), detect_every=2)
    shared = ObjectRegions.create_shared(cfg, BuildContext(mode="serve"))
    det = shared.detector = _Counting(shared.detector)
    regions_op = ObjectRegions(cfg, shared, "ped2")
    pcfg = PoseFeatures.Config(kind="pose_features", weights=str(MOVENET), persons_only=True)
    pose = _Counting(PoseFeatures.create_shared(pcfg, None))  # type: ignore[arg-type]
    pose_op = PoseFeatures(pcfg, pose, "ped2")  # type: ignore[arg-type]
    out, pose_calls = [], []
    for c in clips:
        out.append(pose_op.process(regions_op.process(c)[0])[0])
        pose_calls.append(pose.calls)
    assert det.calls == 2  # clips 1 and 3 ran the detector, clip 2 reused clip 1's detections
    persons = [o.regions.labels == PERSON_LABEL for o in out]
    assert persons[0].sum() >= 2
    np.testing.assert_array_equal(out[1].regions.boxes[persons[1]], out[0].regions.boxes[persons[0]])
    # MoveNet ran for clips 1 and 3 only; clip 2's people kept the keypoints of clip 1's identical boxes
    assert pose_calls == [1, 1, 2]
    np.testing.assert_array_equal(out[1].keypoints[persons[1]], out[0].keypoints[persons[0]])
    assert not np.array_equal(out[2].regions.boxes[persons[2]], out[0].regions.boxes[persons[0]])
    # foreground boxes are found on every clip from its own frames
    fg = [o.regions.boxes[o.regions.labels == 0] for o in out]
    assert len(fg[1]) > 0 and not (fg[1].shape == fg[0].shape and np.array_equal(fg[1], fg[0]))


def test_deep_features_reuse_the_vectors_of_a_reused_detection_and_compute_new_boxes() -> None:
    clips = [_ped2_clip("Test001", i) for i in (110, 111)]
    cfg = ObjectRegions.Config(kind="object_regions", weights=str(CENTERNET), detect_every=2)
    regions_op = ObjectRegions(cfg, ObjectRegions.create_shared(cfg, BuildContext(mode="serve")), "ped2")
    regions = [regions_op.process(c)[0] for c in clips]
    exact_cfg = DeepFeatures.Config(kind="deep_features", layers=["layer3"], crop_size=48)
    assert not exact_cfg.reuse_unchanged_boxes  # anomalib's behaviour unless asked
    shared = DeepFeatures.create_shared(exact_cfg, None)  # type: ignore[arg-type]
    dcfg = exact_cfg.model_copy(update={"reuse_unchanged_boxes": True})
    reused, exact = DeepFeatures(dcfg, shared, "ped2"), DeepFeatures(exact_cfg, shared, "ped2")
    got = [reused.process(r)[0].features["deep"] for r in regions]
    want = [shared(r.last.image, r.regions.boxes) for r in regions]
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)
    same = (regions[1].regions.boxes[:, None, :] == regions[0].regions.boxes[None]).all(-1)  # (M1, M0)
    kept, new = same.any(1), ~same.any(1)
    assert kept.sum() >= 2 and new.sum() >= 1  # reused detections, and fresh foreground boxes
    np.testing.assert_array_equal(got[1][kept], got[0][same[kept].argmax(1)])  # the vectors of clip 1
    np.testing.assert_allclose(got[1][new], want[1][new], atol=1e-6)  # computed on clip 2's frame
    assert not np.allclose(got[1][kept], want[1][kept], atol=1e-6)  # the frame moved on: an approximation
    np.testing.assert_allclose(exact.process(regions[1])[0].features["deep"], want[1], atol=1e-6)


class _FakePose:
    """MoveNet stand-in: a fixed pose relative to each box (one box, the one at x >= 200, has nobody in it)."""

    refresh_every = 1
    rel = np.stack([np.linspace(0.1, 0.9, 17), np.linspace(0.2, 0.8, 17), np.full(17, 0.7)], axis=1)

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        self.calls.append(len(boxes))
        kp = np.zeros((len(boxes), 17, 3), np.float32)
        for i, b in enumerate(boxes):
            if b[0] < 200:
                kp[i, :, :2] = b[:2] + self.rel[:, :2] * (b[2:] - b[:2])
                kp[i, :, 2] = self.rel[:, 2]
        return kp


def _clip_with(boxes: list[list[float]], index: int) -> Clip:
    img = np.zeros((240, 360, 3), np.uint8)
    f = Frame(stream_id="s", index=index, pts=index / 10, wall_time=float(index), image=img)
    c = Clip(stream_id="s", frames=[f], target=f)
    b = np.array(boxes, np.float32)
    c.regions = Regions(b, np.full(len(b), 0.5, np.float32), np.ones(len(b), np.int64))
    return c


def test_pose_keypoints_are_movenets_and_nobody_stays_zero_and_refresh_every_carries_the_pose() -> None:
    pcfg = PoseFeatures.Config(kind="pose_features", weights=str(MOVENET), refresh_every=2)
    net = _FakePose()
    net.refresh_every = 2
    op = PoseFeatures(pcfg, net, "s")  # type: ignore[arg-type]
    first = op.process(_clip_with([[10, 20, 50, 100], [220, 20, 260, 100]], 0))[0]
    np.testing.assert_allclose(first.keypoints, net(first.last.image, first.regions.boxes), atol=1e-4)
    assert not first.keypoints[1].any() and not first.features["pose"][1].any()  # nobody: zeros, as MoveNet said
    np.testing.assert_allclose(first.features["pose"][0], net.rel[:, :2].ravel(), atol=1e-5)
    # detected again 4 px further (IoU >= 0.5): the pose is carried to the new box, MoveNet not run
    second = op.process(_clip_with([[14, 20, 54, 100], [224, 20, 264, 100]], 1))[0]
    assert net.calls == [2, 2]  # the call above and the test's own reference call only
    np.testing.assert_allclose(second.keypoints[0, :, 0], 14 + net.rel[:, 0] * 40, atol=1e-4)
    np.testing.assert_array_equal(second.features["pose"], first.features["pose"])
    # the third detection is measured afresh (refresh_every 2), and so is a box overlapping nothing
    op.process(_clip_with([[18, 20, 58, 100], [224, 20, 264, 100], [300, 150, 340, 230]], 2))
    assert net.calls == [2, 2, 2]  # the moved box and the new one; the identical nobody box kept its zeros


def test_fit_detects_on_every_clip_whatever_detect_every_says() -> None:
    cfg = ObjectRegions.Config(kind="object_regions", weights=str(CENTERNET), detect_every=3)
    shared = ObjectRegions.create_shared(cfg, BuildContext(mode="fit"))
    det = shared.detector = _Counting(shared.detector)
    op = ObjectRegions(cfg, shared, "ped2")
    for i in (110, 111, 112):
        op.process(_ped2_clip("Test001", i))
    assert det.calls == 3


def _clip_weights(path: Path, seed: int, drop: str | None = None) -> Path:
    """A randomly initialised CLIP ViT-B/16 image tower in timm's layout, saved as safetensors (no real weights are
    to be had offline; the loading, preprocessing and embedding path is the same)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    sd = timm.create_model("vit_base_patch16_clip_224.openai", pretrained=False, num_classes=512).state_dict()
    if drop is not None:
        sd.pop(drop)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def test_clip_backbone_gives_512_d_unit_embeddings_from_local_weights(tmp_path: Path) -> None:
    clip = _ped2_clip("Test001", 110)
    rcfg = ObjectRegions.Config(kind="object_regions", weights=str(CENTERNET))
    clip = ObjectRegions(rcfg, ObjectRegions.create_shared(rcfg, None), "ped2").process(clip)[0]  # type: ignore[arg-type]
    vecs = []
    for seed in (0, 1):
        cfg = DeepFeatures.Config(kind="deep_features", backbone="clip_vit_b16", crop_size=64,
                                  weights=str(_clip_weights(tmp_path / f"clip{seed}.safetensors", seed)))
        op = DeepFeatures(cfg, DeepFeatures.create_shared(cfg, None), "ped2")  # type: ignore[arg-type]
        vecs.append(op.process(clip)[0].features["deep"])
    assert vecs[0].shape == (len(clip.regions), 512) and vecs[0].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs[0], axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vecs[0], vecs[1], atol=1e-3)  # the file's weights are the ones used
    assert not np.allclose(vecs[0][0], vecs[0][1], atol=1e-3)  # different regions, different embeddings


def test_clip_backbone_through_openvino_embeds_like_torch(tmp_path: Path) -> None:
    """``runtime: openvino`` converts the CLIP image tower once; its embeddings are torch's."""
    weights = _clip_weights(tmp_path / "clip.safetensors", 0)
    image = np.random.default_rng(0).integers(0, 256, (240, 360, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 60, 120], [100, 50, 200, 200], [300, 0, 359, 239]], np.float32)
    ref = RegionAppearance("clip_vit_b16", weights=weights)(image, boxes)
    got = RegionAppearance("clip_vit_b16", weights=weights, runtime="openvino")(image, boxes)
    assert got.shape == (3, 512) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_clip_backbone_refuses_missing_or_mismatched_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="backbone clip_vit_b16 needs weights: .*timm.s layout.*nothing is downloaded"):
        RegionAppearance("clip_vit_b16", method="crop")
    bad = _clip_weights(tmp_path / "bad.safetensors", 0, drop="head.weight")
    with pytest.raises(ModelError, match="bad.safetensors does not match"):
        RegionAppearance("clip_vit_b16", weights=bad)
    with pytest.raises(ModelError, match="needs method 'crop'"):
        RegionAppearance("clip_vit_b16", method="roi_align", weights=bad)
