"""CFA's math without real data: the loss against a direct per-position computation, the memory bank's initial
centroids against the mean descriptor feature, the anomaly map against the nearest-centroid distances, k-means
compression, the CoordConv channels, and the errors (a NaN loss, missing backbone weights, too few centroids).
(Training on Magnetic Tile images and the OpenVINO export: tests/integration/test_image_trained.py.)"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from image_fixtures import texture
from streamad.errors import ModelError
from streamad.models.components.gaussian_blur import GaussianBlur2d
from streamad.models.image import IMAGE_MODELS
from streamad.models.image.cfa import model as cfa_model
from streamad.models.image.cfa.descriptor import coordinate_channels, pooled_patch_features
from streamad.models.image.cfa.memory_bank import kmeans, squared_distances
from streamad.models.image.cfa.model import cfa_loss, cfa_score_map
from streamad.models.image.image_set import ImageSet

SIZE = (64, 64)


def _make(**kw):
    cls = IMAGE_MODELS.get("cfa")
    return cls(cls.Config.model_validate({"kind": "cfa", "input_size": list(SIZE), "batch_size": 4, **kw}))


@pytest.fixture(scope="module")
def textures() -> ImageSet:
    rng = np.random.default_rng(0)
    s = ImageSet(SIZE)
    for i in range(10):
        s.append(texture(rng), 0)
    yield s
    s.close()


def test_squared_distances_are_cdists() -> None:
    g = torch.Generator().manual_seed(0)
    f, bank = torch.randn(2, 5, 3, 4, generator=g), torch.randn(7, 5, generator=g)
    ref = torch.cdist(f.flatten(2).transpose(1, 2), bank) ** 2
    torch.testing.assert_close(squared_distances(f, bank), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("radius", "hard"), [(1e-5, 3), (0.7, 2), (0.7, 0)])
def test_loss_is_the_direct_attraction_and_repulsion(radius: float, hard: int) -> None:
    """Per position: sort the squared distances; attraction max(0, d - r^2) over the K nearest, repulsion
    max(0, r^2 - d - 0.1) over the next J; each averaged over batch, positions and neighbours; the sum times 1000."""
    g = torch.Generator().manual_seed(1)
    d = torch.rand(2, 6, 9, generator=g, dtype=torch.float64) * 0.8
    k = 3
    att, rep = [], []
    for n in range(2):
        for p in range(6):
            s = sorted(d[n, p].tolist())
            att += [max(0.0, v - radius**2) for v in s[:k]]
            rep += [max(0.0, radius**2 - v - 0.1) for v in s[k:k + hard]]
    ref = 1000.0 * (sum(att) / len(att) + (sum(rep) / len(rep) if rep else 0.0))
    got = float(cfa_loss(d, k, hard, radius))
    assert math.isclose(got, ref, rel_tol=1e-9), (got, ref)
    if radius > 0.5 and hard:
        assert any(v > 0 for v in rep)  # the case exercises the repulsion
    with pytest.raises(ValueError, match="fewer than num_nearest_neighbors"):
        cfa_loss(d, 6, 4, radius)


def test_score_map_is_the_softmin_weighted_nearest_distance() -> None:
    g = torch.Generator().manual_seed(2)
    f, bank = torch.randn(2, 4, 3, 5, generator=g), torch.randn(11, 4, generator=g)
    sq = squared_distances(f, bank)
    e = torch.cdist(f.flatten(2).transpose(1, 2), bank)
    one = cfa_score_map(sq, 1, (3, 5))  # K = 1: exactly the nearest centroid's distance
    torch.testing.assert_close(one, e.min(-1).values.reshape(2, 1, 3, 5), rtol=1e-4, atol=1e-4)
    near = e.sort(-1).values[..., :3]
    ref = (torch.exp(-near[..., 0]) / torch.exp(-near).sum(-1)) * near[..., 0]
    torch.testing.assert_close(cfa_score_map(sq, 3, (3, 5)), ref.reshape(2, 1, 3, 5), rtol=1e-4, atol=1e-4)


def test_centroids_are_the_mean_descriptor_and_the_map_its_distance(textures: ImageSet) -> None:
    """Before training, the bank holds the mean descriptor feature of the training set at each grid position;
    the network's map is the upsampled, blurred patch score of those distances, its score the map's maximum."""
    model = _make()
    net = model._training().network
    net.initialize_memory_bank(textures, batch_size=3, gamma_c=1, seed=0)
    images = torch.from_numpy(np.concatenate([b.images for b in textures.batches(64)]))
    with torch.no_grad():
        feats = net.features(net.preprocess(images))  # (10, D, h, w)
    h, w = net.grid
    assert (h, w) == (16, 16) and net.memory_bank.shape == (h * w, net.descriptor.out_channels)
    torch.testing.assert_close(net.memory_bank, feats.mean(0).flatten(1).t(), rtol=1e-4, atol=1e-4)
    probe = torch.from_numpy(texture(np.random.default_rng(5), defect=True)[None])
    with torch.no_grad():
        f = net.features(net.preprocess(probe))
        e = torch.cdist(f.flatten(2).transpose(1, 2), net.memory_bank).sort(-1).values[..., :3]
        patch = (F.softmax(-e, -1)[..., 0] * e[..., 0]).reshape(1, 1, h, w)
        ref = GaussianBlur2d(4.0)(F.interpolate(patch, size=SIZE, mode="bilinear", align_corners=False))
        amap, score = net(probe)
    torch.testing.assert_close(amap, ref, rtol=1e-3, atol=1e-3)
    assert float(score[0]) == float(amap.max())


def test_gamma_c_compresses_the_bank_by_kmeans(textures: ImageSet) -> None:
    net = _make(gamma_c=4)._training().network
    net.initialize_memory_bank(textures, batch_size=4, gamma_c=4, seed=0)
    assert net.memory_bank.shape == (16 * 16 // 4, net.descriptor.out_channels)
    g = torch.Generator().manual_seed(3)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + 0.1 * torch.randn(20, 2, generator=g) for c in centres])
    found = kmeans(points, 3, seed=0)
    assert torch.cdist(centres, found).min(1).values.max() < 0.2
    with pytest.raises(ValueError, match="k must lie"):
        kmeans(points, 0, seed=0)


def test_descriptor_pools_resizes_and_adds_coordinates() -> None:
    c = coordinate_channels(3, 5)
    assert c.shape == (1, 2, 3, 5)
    assert c[0, 0, 1].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0] and c[0, 1, :, 2].tolist() == [-1.0, 0.0, 1.0]
    a, b = torch.ones(1, 2, 8, 8), torch.ones(1, 3, 4, 4)
    out = pooled_patch_features([a, b])
    assert out.shape == (1, 5, 8, 8)
    assert float(out[0, 0, 4, 4]) == 1.0 and math.isclose(float(out[0, 0, 0, 0]), 4 / 9, rel_tol=1e-6)


def test_nan_loss_stops_with_a_clear_error(textures: ImageSet, monkeypatch: pytest.MonkeyPatch) -> None:
    real = cfa_model.cfa_loss
    monkeypatch.setattr(cfa_model, "cfa_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(ValueError, match=r"cfa: the loss became nan in epoch 1; lower the learning rate"):
        _make(max_epochs=2).fit(textures)


def test_missing_weights_and_too_few_centroids_are_named(tmp_path: Path, textures: ImageSet) -> None:
    with pytest.raises(ModelError, match="wide_resnet50_2 needs weights"):
        _make(backbone="wide_resnet50_2").fit(textures)
    missing = tmp_path / "wide_resnet50_2-32ba1e4c.pth"
    with pytest.raises(ModelError, match=f"weights file not found: {missing}"):
        _make(backbone="wide_resnet50_2", weights=str(missing)).fit(textures)
    with pytest.raises(ValueError, match="fewer than num_nearest_neighbors"):  # 256 // 64 = 4 < 3 + 3 centroids
        _make(gamma_c=64, max_epochs=1).fit(textures)
    with pytest.raises(ModelError, match="not fitted"):
        _make().predict(np.zeros((8, 8, 3), np.uint8))
