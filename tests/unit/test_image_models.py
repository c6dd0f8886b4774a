"""The image models on small synthetic images: every registered kind (``IMAGE_MODELS``) fits, scores, localises the
anomaly, persists through the model store and exports to an OpenVINO IR that scores like torch; PatchCore's score
against a direct transcription of anomalib's, and the interface a gradient-trained model uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from image_fixtures import DATA, texture
from streamad.errors import ModelError
from streamad.export import export_model
from streamad.models.components.backbone import packaged_weights
from streamad.models.components.gaussian_blur import GaussianBlur2d
from streamad.models.image import IMAGE_MODELS, ImageModel, ImageModelConfig
from streamad.models.image.base import file_sha256
from streamad.models.image.fitting import ImageFitter
from streamad.models.image.image_set import ImageSet
from streamad.models.image.runner import OpenVINORunner, TorchRunner
from streamad.models.postprocess import PostProcess
from streamad.models.store import load_model, save_model

SIZE = (64, 96)
CENTERNET = str(DATA.parent / "models" / "centernet.onnx")  # R-KDE's region detector


@pytest.fixture(scope="module")
def train_set() -> ImageSet:
    rng = np.random.default_rng(0)
    s = ImageSet(SIZE)
    for i in range(40):
        s.append(texture(rng), 0, name=f"t{i}")
    yield s
    s.close()


# Small test configs of every registered image model: kind -> {variant name: config}. A registered kind without an
# entry fails test_fit_predict_save_load_export (and test_every_registered_image_model_has_test_configs).
KIND_CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "patchcore": {
        "patchcore": {"kind": "patchcore", "coreset_sampling_ratio": 0.25, "num_neighbors": 3},
        "patchcore_p5": {"kind": "patchcore", "coreset_sampling_ratio": 0.25, "num_neighbors": 3, "patch_size": 5},
        "patchcore_lite2": {"kind": "patchcore", "backbone": "efficientnet_lite2", "layers": ["layer2", "layer3"],
                            "coreset_sampling_ratio": 0.25, "num_neighbors": 3},
    },
    "padim": {
        "padim": {"kind": "padim", "layers": ["layer1", "layer2"], "n_features": 20},
        "padim_band": {"kind": "padim", "layers": ["layer1", "layer2"], "n_features": 20, "patch_size": [3, 5]},
    },
    "dfm": {
        "dfm": {"kind": "dfm", "layers": ["layer2"], "pooling_kernel_size": 2, "pca_level": 0.95},
        "dfm_nll": {"kind": "dfm", "layers": ["layer2"], "pooling_kernel_size": 2, "pca_level": 0.9,
                    "score_type": "nll"},
    },
    "dfkde": {"dfkde": {"kind": "dfkde", "layers": ["layer3"], "n_pca_components": 4}},
    # CenterNet's regions (2-3 per texture) and the 4x4 grid's cells
    "rkde": {"rkde": {"kind": "rkde", "detector_weights": CENTERNET, "n_pca_components": 4},
             "rkde_grid": {"kind": "rkde", "regions": "grid", "n_pca_components": 4}},
    # the gradient-trained models: a few epochs on the 40 textures (trained for real: test_image_trained.py)
    "stfpm": {"stfpm": {"kind": "stfpm", "batch_size": 8, "max_epochs": 3}},
    "fastflow": {"fastflow": {"kind": "fastflow", "batch_size": 8, "max_epochs": 3, "flow_steps": 4}},
    "reverse_distillation": {
        "reverse_distillation": {"kind": "reverse_distillation", "batch_size": 8, "max_epochs": 3},
        "reverse_distillation_multiply": {"kind": "reverse_distillation", "batch_size": 8, "max_epochs": 3,
                                          "layers": ["layer2", "layer3"], "anomaly_map_mode": "multiply"},
    },
    "uflow": {"uflow": {"kind": "uflow", "batch_size": 8, "max_epochs": 3, "flow_steps": 2}},
    "cfa": {"cfa": {"kind": "cfa", "batch_size": 8, "max_epochs": 3}},
    # tiny decoders (2 coupling blocks, 16-channel encoding); 64 fibres per step: 15 Adam steps per 8-image batch.
    # The training reference (its example's): with each image's own maximum as reference (anomalib at batch size
    # 1) the score is the map's spread, which the textures' own variation matches (defect mean 1.26, normal 1.27)
    "cflow": {"cflow": {"kind": "cflow", "batch_size": 8, "max_epochs": 3, "layers": ["layer2", "layer3"],
                        "lr": 1e-3, "coupling_blocks": 2, "condition_vector": 16, "reference": "training"}},
    "csflow": {"csflow": {"kind": "csflow", "batch_size": 8, "max_epochs": 3, "layers": ["layer2"], "lr": 1e-3,
                          "cross_conv_hidden_channels": 32, "n_coupling_blocks": 2}},
    # a tiny teacher (8 channels) distilled for 10 steps from Lite0 on the textures, 3 epochs of 2 steps of 4
    "efficient_ad": {"efficient_ad": {"kind": "efficient_ad", "teacher_out_channels": 8, "distill_steps": 10,
                                      "distill_batch_size": 4, "batch_size": 4, "steps_per_epoch": 2,
                                      "max_epochs": 3}},
    # no backbone, a square power-of-two input (its own input_size, which make() keeps); no anomaly map. Trained
    # from scratch, it needs ~100 steps before the blob lifts the latent distance (20 epochs at 32x32: ~15 s)
    "ganomaly": {"ganomaly": {"kind": "ganomaly", "input_size": [32, 32], "batch_size": 8, "max_epochs": 20,
                              "n_features": 16, "latent_vec_size": 32}},
    # no backbone, trained from scratch on simulated anomalies: 100 steps (20 epochs) before the blob's map peaks
    # where it is (8 epochs at lr 2e-3 or 10 of batch 4 did not localise it)
    "draem": {"draem": {"kind": "draem", "batch_size": 8, "max_epochs": 20, "lr": 1e-3, "recon_base_width": 8,
                        "disc_base_width": 8}},
    # three phases from scratch (VQ model 150 steps, 40 steps on latent anomalies, 10 on image-level ones): DSR's
    # detection module barely separates the blob after a CI-sized training (mean score only, no localisation check;
    # 8 phase-2 epochs of a narrower model gave identical scores for every image); its Magnetic Tile figures are in
    # its README
    "dsr": {"dsr": {"kind": "dsr", "batch_size": 8, "num_hiddens": 16, "num_residual_hiddens": 8,
                    "num_embeddings": 64, "embedding_dim": 16, "subspace_width": 4, "detection_width": 8,
                    "upsampling_width": 4, "discrete_epochs": 30, "discrete_lr": 3e-3, "max_epochs": 8,
                    "upsampling_epochs": 2, "lr": 5e-3}},
    # training-free CLIP: random weights (random_clip_weights) of a small real open_clip architecture, its own
    # input size (224); few-shot, as random CLIP towers make the zero-shot (text prompt) scores meaningless
    "winclip": {"winclip": {"kind": "winclip", "backbone": "ViT-S-32", "input_size": [224, 224], "k_shot": 8}},
}
CONFIGS: dict[str, dict[str, Any]] = {name: cfg for variants in KIND_CONFIGS.values() for name, cfg in variants.items()}
# (kind, variant) of every registered kind; a kind without configs gets one case that fails
CASES = [(kind, name) for kind in IMAGE_MODELS.names() for name in KIND_CONFIGS.get(kind, [f"{kind}-no-config"])]


def test_every_registered_image_model_has_test_configs() -> None:
    assert set(KIND_CONFIGS) == set(IMAGE_MODELS.names())
    assert all(cfg["kind"] == kind for kind, variants in KIND_CONFIGS.items() for cfg in variants.values())


def make(name: str, **extra: Any) -> ImageModel:
    cfg = {"input_size": list(SIZE), **CONFIGS[name], **extra}  # SIZE unless the config needs its own (GANomaly)
    cls = IMAGE_MODELS.get(cfg["kind"])
    return cls(cls.Config.model_validate(cfg))


def _normalised(runner: Any, images: np.ndarray, post: PostProcess) -> tuple[np.ndarray, np.ndarray]:
    """Normalised image scores and maps of ``images`` one frame at a time through ``runner`` (torch or the IR)."""
    scores, maps = [], []
    for img in images:
        amap, score = runner(img)
        scores.append(post.normalize(float(score[0])))
        maps.append(post.normalize_regions(amap[0, 0]))
    return np.array(scores), np.stack(maps)


@pytest.mark.parametrize(("kind", "name"), CASES, ids=[name for _, name in CASES])
def test_fit_predict_save_load_export(kind: str, name: str, train_set: ImageSet, tmp_path: Path,
                                     random_clip_weights: Any) -> None:
    assert kind in KIND_CONFIGS, f"image model kind {kind!r} is registered but has no test config in KIND_CONFIGS"
    # WinCLIP: CLIP weights are a file the user names (here random ones); the others' backbones are packaged
    extra = {"weights": str(random_clip_weights(CONFIGS[name]["backbone"]))} if kind == "winclip" else {}
    model = make(name, **extra)
    stats = model.fit(train_set)
    if model.trainable:  # the training log: a falling loss per epoch (no validation set: the last epoch is kept)
        assert stats["epochs"] == stats["best_epoch"] == len(stats["losses"]) == CONFIGS[name]["max_epochs"]
        assert stats["losses"][-1] < stats["losses"][0] and stats["metrics"] == [] and stats["best_metric"] is None
    else:
        assert stats and all(isinstance(v, (int, float, str)) for v in stats.values())
    rng = np.random.default_rng(1)
    normal = np.stack([texture(rng) for _ in range(6)])
    bad = np.stack([texture(rng, defect=True) for _ in range(6)])
    p_norm, p_bad = model.predict(normal), model.predict(bad)
    size = model.input_size
    assert p_norm.anomaly_map.shape == (6, 1, *size) and p_norm.anomaly_map.dtype == np.float32
    assert p_norm.score.shape == (6,) and p_norm.score.dtype == np.float32
    if name in ("patchcore", "patchcore_p5", "patchcore_lite2", "padim", "padim_band", "dfm", "stfpm", "fastflow",
                "reverse_distillation", "reverse_distillation_multiply", "uflow", "cfa", "cflow", "csflow",
                "draem", "efficient_ad"):
        # local scores: every defect image above every normal one
        assert p_bad.score.min() > p_norm.score.max(), (p_norm.score, p_bad.score)
    elif name != "dsr":  # whole-image features (DFM nll, DFKDE, GANomaly) and R-KDE's large regions see less
        assert p_bad.score.mean() > p_norm.score.mean(), (p_norm.score, p_bad.score)
    # DSR at this size (three phases from scratch in seconds) does not rank reliably: 0.354 vs 0.350 in one run,
    # 0.432 vs 0.434 in CI on 2026-12-06; its fit, shapes, save/load and export parity are asserted here, and its
    # full example is at chance on Magnetic Tile too (its README)
    if not model.has_anomaly_map:  # no localisation: the map is the image score at every pixel
        np.testing.assert_array_equal(p_bad.anomaly_map, np.broadcast_to(p_bad.score[:, None, None, None],
                                                                          p_bad.anomaly_map.shape))
    if p_bad.boxes is not None:  # R-KDE: the score is the best box's, the map its boxes painted
        for i, boxes in enumerate(p_bad.boxes):
            assert boxes.shape[1] == 5 and len(boxes) >= 1 and p_bad.score[i] == boxes[:, 4].max()
            assert p_bad.anomaly_map[i, 0].max() == p_bad.score[i]
    if name in ("patchcore", "patchcore_lite2", "padim", "padim_band", "dfm", "stfpm", "fastflow",
                "reverse_distillation", "reverse_distillation_multiply", "uflow", "cfa", "cflow", "csflow",
                "draem", "efficient_ad"):
        # the map peaks at the blob (85, 30) of 120x80 -> (68, 24) of 96x64
        y, x = np.unravel_index(np.argmax(p_bad.anomaly_map[0, 0]), SIZE)
        assert abs(x - 68) <= 12 and abs(y - 24) <= 12, (x, y)
    if name == "patchcore_p5":  # 5 of the 8x12 layer2 cells: the map peaks in the blob's quadrant
        y, x = np.unravel_index(np.argmax(p_bad.anomaly_map[0, 0]), SIZE)
        assert x >= 48 and y < 32, (x, y)
    one = model.predict(bad[0])  # a single frame of another size is resized inside the network
    assert one.anomaly_map.shape == (1, 1, *size)
    # post-processing of these images: thresholds between the normal and defect means, so both labels occur; min /
    # max over the scores and the map pixels, as PostProcessFitter (CS-Flow's score is not its map's maximum)
    both = np.concatenate([p_norm.score, p_bad.score, p_norm.anomaly_map.ravel(), p_bad.anomaly_map.ravel()])
    thr = float((p_norm.score.mean() + p_bad.score.mean()) / 2)
    post = PostProcess(min=float(both.min()), max=float(both.max()), image_threshold=thr, pixel_threshold=thr)
    save_model(tmp_path / "m", model, post)
    loaded, meta = load_model(tmp_path / "m")
    assert meta["model"]["params"]["weights_sha256"] == loaded.backbone_identity()["weights_sha256"]
    backbone = CONFIGS[name].get("backbone", "efficientnet_lite0")  # the backbone's own packaged weights
    if meta["model"]["params"]["backbone"] != "none":  # GANomaly, DRAEM, DSR: no pretrained backbone
        weights = extra.get("weights") or packaged_weights(backbone)
        assert meta["model"]["params"]["weights_sha256"] == file_sha256(weights)
    if name == "padim_band":  # the rectangle survives model.json
        assert loaded.config.patch_size == (3, 5) and loaded.network.pool.sides == (3, 5)
    again = loaded.predict(bad)
    np.testing.assert_allclose(again.score, p_bad.score, rtol=1e-6)
    np.testing.assert_allclose(again.anomaly_map, p_bad.anomaly_map, rtol=1e-5, atol=1e-5)
    if name != next(iter(KIND_CONFIGS[kind])):
        return  # an export takes seconds: one per kind, its first config (patchcore_p5: the patch_size test below)
    if not model.exportable:  # R-KDE: the detector is a network of its own before the torch one
        with pytest.raises(ModelError, match="is not exportable"):
            export_model(tmp_path / "m", "openvino", output=tmp_path / "openvino")
        return
    # the OpenVINO IR scores like torch (tests/integration/test_export_parity.py: the same on Magnetic Tile images)
    res = export_model(tmp_path / "m", "openvino", output=tmp_path / "openvino")
    assert res.path.name == "model.xml" and (tmp_path / "openvino" / "model.bin").is_file()
    assert res.info["precision"] == "fp32" and res.info["check"]["normalised_max_diff"] < 1e-3
    images = np.concatenate([normal, bad])
    t_scores, t_maps = _normalised(TorchRunner(loaded), images, post)
    o_scores, o_maps = _normalised(OpenVINORunner(res.path), images, post)
    assert np.abs(t_scores - o_scores).max() < 1e-3 and np.abs(t_maps - o_maps).max() < 1e-3
    # throughput mode: each frame of the batch its own request in parallel streams, the same scores
    throughput = OpenVINORunner(res.path, hint="throughput")
    p_maps, p_raw = throughput(images)
    p_scores = np.array([post.normalize(float(v)) for v in p_raw])
    assert len(p_scores) == len(images) and np.abs(p_scores - o_scores).max() < 1e-4
    assert np.abs(np.stack([post.normalize_regions(m[0]) for m in p_maps]) - o_maps).max() < 1e-4
    # a batch of one after batches (a stream alone in the queue) runs as one plain request of the same model
    assert abs(post.normalize(float(throughput(images[-1])[1][0])) - o_scores[-1]) < 1e-4
    assert np.array_equal(t_scores >= 0.5, o_scores >= 0.5) and 0 < (t_scores >= 0.5).sum() < len(images)
    assert np.array_equal(t_maps >= 0.5, o_maps >= 0.5) or np.mean((t_maps >= 0.5) != (o_maps >= 0.5)) < 1e-5


def test_load_refuses_other_backbone_weights_and_broken_arrays(train_set: ImageSet, tmp_path: Path) -> None:
    model = make("padim")
    model.fit(train_set)
    params, arrays = model.state()
    other = make("padim")
    with pytest.raises(ModelError, match="differ from those it was fitted with"):
        other.load_state({**params, "weights_sha256": "0" * 64}, arrays)
    with pytest.raises(ModelError, match="lacks array 'inv_covariance'"):
        other.load_state(params, {k: v for k, v in arrays.items() if k != "inv_covariance"})
    with pytest.raises(ModelError, match="do not fit"):
        other.load_state(params, {**arrays, "mean": arrays["mean"][:5]})
    with pytest.raises(ModelError, match="not fitted"):
        make("dfkde").predict(np.zeros((8, 8, 3), np.uint8))


def test_patchcore_score_is_anomalibs(train_set: ImageSet) -> None:
    """Transcription of anomalib's PatchcoreModel.forward (cdist, 1-NN, re-weighting) on the same memory bank."""
    model = make("patchcore")
    model.fit(train_set)
    net = model.network
    images = np.stack([texture(np.random.default_rng(2), defect=True), texture(np.random.default_rng(3))])
    with torch.inference_mode():
        x = torch.from_numpy(images)
        emb = net.embed(net.preprocess(x))
        n, d, h, w = emb.shape
        e = emb.permute(0, 2, 3, 1).reshape(-1, d)
        bank = net.memory_bank
        dist = torch.cdist(e, bank)
        patch_scores, locations = dist.min(1)
        patch_scores, locations = patch_scores.reshape(n, -1), locations.reshape(n, -1)
        max_patches = torch.argmax(patch_scores, dim=1)
        feats = e.reshape(n, h * w, -1)[torch.arange(n), max_patches]
        score = patch_scores[torch.arange(n), max_patches]
        nn_sample = bank[locations[torch.arange(n), max_patches], :]
        _, support = torch.cdist(nn_sample, bank).topk(3, largest=False, dim=1)
        distances = torch.cdist(feats.unsqueeze(1), bank[support]).squeeze(1)
        ref_score = (1 - F.softmax(distances, 1)[..., 0]) * score
        ref_map = GaussianBlur2d(4.0)(F.interpolate(patch_scores.reshape(n, 1, h, w), size=SIZE))
        amap, out = net(x)
    np.testing.assert_allclose(out.numpy(), ref_score.numpy(), rtol=1e-4)
    np.testing.assert_allclose(amap.numpy(), ref_map.numpy(), rtol=1e-4, atol=1e-4)


def test_patchcore_patch_size_averages_in_image_neighbours(train_set: ImageSet, tmp_path: Path) -> None:
    """``patch_size: 5``: each layer's cell is the mean of its in-image 5x5 neighbours (corners average 3x3 cells,
    not 25 with zeros); the model keeps the size through save / load and its OpenVINO IR scores like torch."""
    model = make("patchcore_p5")
    model.fit(train_set)
    net = model.network
    x = net.preprocess(torch.from_numpy(next(train_set.batches(2)).images))
    with torch.inference_mode():
        raw = list(net.extractor(x).values())[0]  # layer2, the first layer: its own resolution
        emb = net.embed(x)
    c = raw.shape[1]
    torch.testing.assert_close(emb[:, :c, 0, 0], raw[:, :, :3, :3].mean((2, 3)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(emb[:, :c, 4, 5], raw[:, :, 2:7, 3:8].mean((2, 3)), rtol=1e-5, atol=1e-5)
    save_model(tmp_path / "m", model, PostProcess(min=0.0, max=1.0, image_threshold=0.5, pixel_threshold=0.5))
    loaded, _ = load_model(tmp_path / "m")
    assert loaded.config.patch_size == 5 and loaded.network.pool.sides == (5, 5)
    res = export_model(tmp_path / "m", "openvino", output=tmp_path / "ir")
    assert res.info["check"]["normalised_max_diff"] < 1e-3
    cls = IMAGE_MODELS.get("patchcore")
    for bad in (4, [3, 4], [3, 5, 7], 0):
        with pytest.raises(ValidationError, match="patch_size must be an odd positive integer"):
            cls.Config.model_validate({"kind": "patchcore", "patch_size": bad})


def test_patchcore_full_coreset_keeps_every_training_patch(train_set: ImageSet) -> None:
    """``coreset_sampling_ratio: 1.0`` is the bank of every patch (no greedy search); a training image scores ~0."""
    cls = IMAGE_MODELS.get("patchcore")
    model = cls(cls.Config.model_validate({"kind": "patchcore", "coreset_sampling_ratio": 1.0,
                                           "input_size": list(SIZE)}))
    stats = model.fit(train_set)
    net = model.network
    patches_per_image = stats["patches"] // len(train_set)
    assert stats["memory_bank"] == stats["patches"] == len(train_set) * patches_per_image
    first = next(train_set.batches(1)).images
    with torch.inference_mode():
        emb = net.embed(net.preprocess(torch.from_numpy(first)))
    own = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])
    torch.testing.assert_close(net.memory_bank[:patches_per_image], own, rtol=1e-4, atol=1e-4)  # image order
    unseen = texture(np.random.default_rng(5))[None]
    # a training image's patches are in the bank: distance 0 up to the float rounding of |x|^2 - 2 x.m + |m|^2
    assert float(model.predict(first).score[0]) < 0.1 * float(model.predict(unseen).score[0])


class _Trained(ImageModel):
    """A stand-in for a gradient-trained model (STFPM, FastFlow): records what the fit gave it."""

    trainable = True

    class Config(ImageModelConfig):
        kind: str = "trained"

    def fit(self, train: ImageSet, validation: ImageSet | None = None, progress: bool = False) -> dict[str, Any]:
        self.seen = (len(train), None if validation is None else len(validation))
        inner = make("padim")
        inner.fit(train)
        self.network = inner.network
        return {"epochs": 1, "validation_auroc": self.validation_metric(validation)} if validation else {}

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {}

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> torch.nn.Module:
        raise NotImplementedError


def test_trained_model_gets_the_validation_set(train_set: ImageSet) -> None:
    from streamad.frames import Frame

    model = _Trained(_Trained.Config(input_size=SIZE, layers=["layer1", "layer2"]))
    fitter = ImageFitter(model)
    assert fitter.needs_validation
    rng = np.random.default_rng(4)
    for i in range(12):
        fitter.collect(Frame("s", i, 0.0, 0.0, texture(rng), label=0))
    for i in range(8):
        bad = i % 2 == 1
        fitter.collect_validation(Frame("v", i, 0.0, 0.0, texture(rng, defect=bad), label=int(bad)))
    fitted, stats = fitter.fit(progress=False)
    assert fitted.seen == (12, 8) and stats["train_images"] == 12
    assert stats["validation_auroc"] == 1.0
    fitter.close()
    assert not fitter.train.dir.exists()


def test_train_epochs_stops_early_on_the_validation_metric(train_set: ImageSet,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    from streamad.models.image.training import train_epochs

    caplog.set_level("INFO", logger="streamad.models.image.training")
    metrics = iter([0.5, 0.7, 0.6, 0.65, 0.69, 0.9])
    best: list[int] = []
    seen: list[int] = []

    def step(batch: Any) -> float:
        seen.append(len(batch.images))
        return 1.0 / len(seen)

    log = train_epochs(step, train_set, 16, max_epochs=10, validate=lambda: next(metrics),
                       on_best=lambda: best.append(len(seen)), patience=3)
    assert log.epochs == 5 and log.stopped_early and log.best_epoch == 2 and log.best_metric == 0.7
    assert sum(seen) == 5 * 40 and len(best) == 2  # each epoch saw every image; saved after epochs 1 and 2
    assert log.losses[0] > log.losses[-1]
    # one log line per epoch, so a long fit shows its validation curve while it runs
    lines = [r.getMessage() for r in caplog.records if r.name == "streamad.models.image.training"]
    assert len(lines) == 5 and "epoch 2/10" in lines[1] and "validation metric 0.7000" in lines[1]
    steps: list[int] = []
    ends: list[int] = []  # the end_epoch hook (C-Flow's reference) runs after each epoch's last step

    def half(batch: Any) -> float:
        steps.append(1)
        return 0.5

    no_val = train_epochs(half, train_set, 16, max_epochs=2, end_epoch=lambda: ends.append(len(steps)))
    assert no_val.epochs == 2 and no_val.best_epoch == 2 and no_val.best_metric is None
    assert ends == [3, 6]  # 40 images in batches of 16: 3 steps per epoch
    with pytest.raises(ValueError, match="loss became nan"):
        train_epochs(lambda b: float("nan"), train_set, 16, max_epochs=1)


@pytest.mark.parametrize("discrete", [False, True])
def test_export_parity_rule_bounds_scores_always_and_maps_unless_codes_are_discrete(discrete: bool, caplog) -> None:
    """An FP32 export must score like torch (1e-3 of the normalisation range). A DSR-like model (discrete_codes:
    a nearest-code argmin) may differ on a map patch where a near-tie flipped: logged, not refused; any other
    model's map must match everywhere; a score beyond the bound is refused for both."""
    from streamad.export import _require_parity

    model = type("M", (), {"discrete_codes": discrete, "kind": "dsr" if discrete else "padim"})()
    ok = {"normalised_max_diff": 2e-4, "normalised_score_diff": 1e-5, "map_share_over": 0.0}
    _require_parity(model, Path("m.xml"), ok)
    flipped = {"normalised_max_diff": 1.7e-2, "normalised_score_diff": 1.2e-5, "map_share_over": 0.014}
    if discrete:
        _require_parity(model, Path("m.xml"), flipped)
        assert "1.40% of the map pixels differ" in caplog.text
    else:
        with pytest.raises(ModelError, match=r"m.xml: the export's scores or maps differ from torch by 1.70e-02"):
            _require_parity(model, Path("m.xml"), flipped)
    # a score beyond the bound: a discrete-code model's refusal quotes the score difference, not its map's
    quoted = "scores differ from torch by 2.00e-03" if discrete else "scores or maps differ from torch by 1.70e-02"
    with pytest.raises(ModelError, match=quoted):
        _require_parity(model, Path("m.xml"), {**flipped, "normalised_score_diff": 2e-3})
