"""DRAEM's parts (streamad/models/image/draem, streamad/models/components/perlin.py): Perlin noise and masks (binary,
a sane covered fraction, seeded), the blend of a texture into an image under the opacity ``beta``, the anomaly
generator (seeded, changes only masked pixels, opacity within the range, texture folders), the loss against direct
computations, the networks' shapes, SSPCAB's masked centre, the map and score, config errors and a seeded fit.
(Fit, save / load and the OpenVINO export: test_image_models.py; on Magnetic Tile: tests/integration/
test_image_trained.py.)"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from streamad.models.components.perlin import next_pow2, perlin_mask, perlin_noise
from image_fixtures import model_from, noise_set, seeded
from streamad.models.image.draem import augmenter as aug
from streamad.models.image.draem import model as dmodel
from streamad.models.image.draem.loss import draem_losses, focal_loss, ssim_loss, ssim_map
from streamad.models.image.draem.networks import DiscriminativeSubNetwork, ReconstructiveSubNetwork
from streamad.models.image.draem.sspcab import Sspcab

TINY = {"kind": "draem", "input_size": [32, 64], "recon_base_width": 4, "disc_base_width": 4, "batch_size": 4}


def make(**kw: Any) -> Any:
    return model_from(TINY, **kw)


# -- Perlin noise and masks -------------------------------------------------------------------------------------

def test_perlin_noise_is_smooth_seeded_gradient_noise() -> None:
    n = perlin_noise((64, 128), (4, 8), seeded(1))
    assert n.shape == (64, 128) and n.dtype == torch.float32
    assert torch.equal(n, perlin_noise((64, 128), (4, 8), seeded(1)))
    assert not torch.equal(n, perlin_noise((64, 128), (4, 8), seeded(2)))
    assert float(n.abs().max()) <= 1.0 + 1e-5 and float(n.std()) > 0.1
    # gradient noise is 0 on the lattice (every 16 pixels here) and changes little from pixel to pixel
    assert float(n[::16, ::16].abs().max()) < 1e-6
    assert float((n[1:] - n[:-1]).abs().max()) < 0.25
    with pytest.raises(ValueError, match=r"multiples of res"):
        perlin_noise((60, 128), (8, 8), seeded())
    assert [next_pow2(v) for v in (1, 2, 3, 100, 128, 129)] == [1, 2, 4, 128, 128, 256]


def test_perlin_masks_are_binary_seeded_and_cover_a_sane_fraction() -> None:
    g = seeded(0)
    masks = [perlin_mask((96, 160), g) for _ in range(200)]
    fractions = np.array([float(m.mean()) for m, _ in masks])
    for m, noise in masks[:20]:
        assert m.shape == noise.shape == (96, 160)
        assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
        assert torch.equal(m, (noise > 0.5).float())
    # DRAEM's masks: usually a few blobs, never the whole image; some coarse scales leave the mask empty
    assert 0.03 < fractions.mean() < 0.3, fractions.mean()
    assert fractions.max() < 0.7 and (fractions > 0).mean() > 0.6
    g1, g2 = seeded(5), seeded(5)
    assert all(torch.equal(perlin_mask((64, 64), g1)[0], perlin_mask((64, 64), g2)[0]) for _ in range(5))


# -- the blend and the generator -------------------------------------------------------------------------------

def test_blend_replaces_masked_pixels_by_the_beta_mix() -> None:
    g = seeded(3)
    images, source = torch.rand(3, 3, 8, 8, generator=g), torch.rand(3, 3, 8, 8, generator=g)
    masks = (torch.rand(3, 1, 8, 8, generator=g) > 0.5).float()
    beta = torch.tensor([0.0, 0.4, 1.0])
    out = aug.blend(images, source, masks, beta)
    inside = masks.expand_as(images) > 0
    assert torch.equal(out[~inside], images[~inside])  # outside the mask: the image
    want = (1 - beta.view(3, 1, 1, 1)) * images + beta.view(3, 1, 1, 1) * source
    torch.testing.assert_close(out[inside], want[inside])
    assert torch.equal(out[0], images[0])  # opacity 0: nothing pasted
    torch.testing.assert_close(out[2][inside[2]], source[2][inside[2]])  # opacity 1: the texture itself


def test_generator_is_seeded_and_changes_only_masked_pixels() -> None:
    images = torch.rand(16, 3, 64, 64, generator=seeded(0))
    a, ma = aug.AnomalyGenerator((64, 64), seed=4)(images)
    b, mb = aug.AnomalyGenerator((64, 64), seed=4)(images)
    c, mc = aug.AnomalyGenerator((64, 64), seed=5)(images)
    assert torch.equal(a, b) and torch.equal(ma, mb) and not torch.equal(ma, mc)
    assert a.shape == images.shape and ma.shape == (16, 1, 64, 64)
    assert set(torch.unique(ma).tolist()) <= {0.0, 1.0}
    outside = ma.expand_as(images) == 0
    assert torch.equal(a[outside], images[outside])
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    changed = (a - images).abs().amax((1, 2, 3)) > 0
    assert 3 <= int(changed.sum()) <= 13  # p_anomalous 0.5 of 16 images (an empty mask changes nothing)
    none = aug.AnomalyGenerator((64, 64), seed=4, p_anomalous=0.0)(images)
    assert torch.equal(none[0], images) and float(none[1].sum()) == 0.0


def test_generator_opacity_stays_in_the_beta_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """A white texture pasted without colour transforms onto black images: masked pixels read beta itself."""
    monkeypatch.setattr(aug, "colour_transform", lambda x, g, count=3: x)
    white = torch.full((1, 3, 64, 64), 255, dtype=torch.uint8)
    g = aug.AnomalyGenerator((64, 64), seed=0, beta_range=(0.3, 0.6), p_anomalous=1.0, sources=white)
    out, masks = g(torch.zeros(32, 3, 64, 64))
    betas = [float(out[i][masks[i].expand(3, -1, -1) > 0].unique()[0]) for i in range(32) if masks[i].any()]
    assert len(betas) > 16 and all(0.3 - 1e-6 <= b <= 0.6 + 1e-6 for b in betas)
    assert all(out[i][masks[i].expand(3, -1, -1) > 0].unique().numel() == 1 for i in range(32) if masks[i].any())
    assert max(betas) - min(betas) > 0.1  # drawn per image


def test_procedural_textures_and_colour_transforms_stay_in_range() -> None:
    g = seeded(2)
    tex = [aug.procedural_texture((48, 80), g) for _ in range(10)]
    for t in tex:
        assert t.shape == (3, 48, 80) and float(t.min()) >= 0 and float(t.max()) <= 1 and float(t.std()) > 0.02
        out = aug.colour_transform(t, g)
        assert out.shape == t.shape and float(out.min()) >= 0 and float(out.max()) <= 1 + 1e-6
    assert not torch.equal(tex[0], tex[1])


def test_texture_folder_is_loaded_and_bad_folders_are_clear_errors(tmp_path: Path) -> None:
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        cv2.imwrite(str(tmp_path / f"t{i}.png"), np.full((50, 70, 3), colour, np.uint8))  # BGR on disk
    src = aug.load_sources(tmp_path, (32, 64))
    assert src.shape == (2, 3, 32, 64) and src.dtype == torch.uint8
    assert src[0, :, 0, 0].tolist() == [0, 0, 255] and src[1, :, 0, 0].tolist() == [255, 0, 0]  # RGB
    with pytest.raises(ValueError, match="anomaly_source_path '.*missing' is not a directory"):
        aug.load_sources(tmp_path / "missing", (32, 64))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="anomaly_source_path '.*empty' holds no image"):
        make(anomaly_source_path=str(tmp_path / "empty")).fit(noise_set())


# -- the loss -------------------------------------------------------------------------------------------------

def test_ssim_and_focal_loss_against_direct_computations() -> None:
    g = seeded(0)
    a = torch.rand(2, 3, 24, 24, generator=g)
    assert float(ssim_loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    # constant images: the means are the values, the variances 0 -> SSIM = (2xy + C1) / (x^2 + y^2 + C1)
    x, y, c1 = 0.2, 0.7, 0.01 ** 2
    s = ssim_map(torch.full((1, 1, 16, 16), x), torch.full((1, 1, 16, 16), y))
    # (float32 E[x^2] - E[x]^2 leaves variances of ~1e-8 against C2 = 9e-4: agreement to 1e-4)
    torch.testing.assert_close(s, torch.full_like(s, (2 * x * y + c1) / (x * x + y * y + c1)), rtol=0, atol=1e-4)
    assert float(ssim_loss(torch.full((1, 1, 16, 16), x), torch.full((1, 1, 16, 16), y))) == pytest.approx(
        (1 - (2 * x * y + c1) / (x * x + y * y + c1)) / 2, rel=1e-3)
    logits, target = torch.randn(2, 2, 5, 5, generator=g), (torch.rand(2, 5, 5, generator=g) > 0.7).long()
    p = logits.softmax(1)
    pt = torch.where(target == 1, p[:, 1], p[:, 0])
    want = float((-(1 - pt) ** 2 * pt.log()).mean())
    assert float(focal_loss(logits, target)) == pytest.approx(want, rel=1e-5)
    assert float(focal_loss(logits, target, gamma=0.0)) == pytest.approx(float(F.cross_entropy(logits, target)),
                                                                         rel=1e-5)
    recon = torch.rand(2, 3, 24, 24, generator=g)
    mask = (torch.rand(2, 1, 24, 24, generator=g) > 0.8).float()
    seg = torch.randn(2, 2, 24, 24, generator=g)
    parts = draem_losses(a, recon, mask, seg)
    assert float(parts["l2"]) == pytest.approx(float(((a - recon) ** 2).mean()), rel=1e-5)
    assert float(parts["ssim"]) == pytest.approx(2 * float(ssim_loss(recon, a)), rel=1e-6)
    assert float(parts["focal"]) == pytest.approx(float(focal_loss(seg, mask[:, 0].long())), rel=1e-6)
    assert float(parts["total"]) == pytest.approx(float(parts["l2"] + parts["ssim"] + parts["focal"]), rel=1e-6)


# -- networks, map, score ---------------------------------------------------------------------------------------

def test_networks_shapes_map_and_score() -> None:
    x = torch.rand(2, 3, 64, 96)
    rec = ReconstructiveSubNetwork(4)
    assert rec(x).shape == (2, 3, 64, 96) and rec.sspcab_io is None
    assert DiscriminativeSubNetwork(4)(torch.cat([x, x], 1)).shape == (2, 2, 64, 96)
    model = make()
    net = model._network()
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 50, 70, 3), dtype=np.uint8))
    with torch.inference_mode():
        amap, score = net(images)  # any frame size: resized in the graph
        _, logits = net.segment(net.preprocess(images) / 255.0)
    assert amap.shape == (3, 1, 32, 64) and score.shape == (3,) and amap.dtype == score.dtype == torch.float32
    torch.testing.assert_close(amap[:, 0], logits.softmax(1)[:, 1])
    assert float(amap.min()) >= 0 and float(amap.max()) <= 1
    torch.testing.assert_close(score, amap.flatten(1).max(1).values)
    assert model.has_anomaly_map and model.backbone_identity()["backbone"] == "none"


def test_sspcab_does_not_see_the_centre_and_adds_its_loss() -> None:
    block = Sspcab(8)
    with torch.no_grad():  # constant attention (sigmoid(20) ~ 1): the output is the four corner convolutions
        block.fc2.weight.zero_()
        block.fc2.bias.fill_(20.0)
    x = torch.randn(1, 8, 9, 9, generator=seeded(0))
    y = x.clone()
    y[..., 4, 4] += 5.0  # change the centre pixel only
    assert block(x).shape == x.shape
    torch.testing.assert_close(block(x)[..., 4, 4], block(y)[..., 4, 4])
    assert not torch.allclose(block(x)[..., 2, 2], block(y)[..., 2, 2])  # a corner of (2, 2)'s field
    model = make(enable_sspcab=True, sspcab_lambda=0.5)
    setup = model._training()
    assert isinstance(setup.network.reconstructive.bottom, Sspcab)
    loss = setup.step(torch.rand(4, 3, 32, 64, generator=seeded(1)) * 255)
    last = model._step.last
    assert last["sspcab"] > 0 and loss == pytest.approx(last["l2"] + last["ssim"] + last["focal"] +
                                                        0.5 * last["sspcab"], rel=1e-5)
    plain = make()
    plain._training().step(torch.rand(4, 3, 32, 64, generator=seeded(1)) * 255)
    assert "sspcab" not in plain._step.last


@pytest.mark.parametrize(("field", "value", "message"), [
    ("input_size", [48, 64], "input_size sides must be multiples of 32"),
    ("input_size", [64, 100], "input_size sides must be multiples of 32"),
    ("beta", [0.8, 0.2], "beta must be a range"),
    ("beta", [0.1, 1.5], "beta must be a range"),
    ("p_anomalous", 0.0, "p_anomalous"),
    ("sspcab", True, "sspcab"),  # a misspelt key: extra="forbid"
])
def test_bad_config_is_a_clear_error(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make(**{field: value})


def test_a_nan_loss_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    train = noise_set()
    monkeypatch.setattr(dmodel, "draem_losses", lambda *a: {"total": a[1].sum() * float("nan")})
    with pytest.raises(ValueError, match="draem: the loss became nan in epoch 1; lower the learning rate"):
        make(max_epochs=1).fit(train)
    train.close()


def test_fit_is_seeded_and_reports_its_losses() -> None:
    train = noise_set()
    a, b, c = make(max_epochs=2), make(max_epochs=2), make(max_epochs=2, seed=1)
    sa, sb, sc = a.fit(train), b.fit(train), c.fit(train)
    train.close()
    assert sa["losses"] == sb["losses"] and sa["losses"] != sc["losses"] and sa["epochs"] == 2
    assert set(sa["last_losses"]) == {"l2", "ssim", "focal", "total"}
    assert all(math.isfinite(v) for v in sa["last_losses"].values())
    frame = np.full((40, 40, 3), 100, np.uint8)
    assert np.array_equal(a.predict(frame).score, b.predict(frame).score)
