"""GANomaly's parts (streamad/models/image/ganomaly): the DCGAN generator and discriminator's shapes at the config's
size, the three generator losses and the discriminator loss against direct computations, the score against
``mean((z - z^)^2)``, the discriminator's re-initialisation when its loss collapses, a NaN loss and a size that is
not a square power of two as clear errors. (Fit, save / load and the OpenVINO export: test_image_models.py; on
Magnetic Tile: tests/integration/test_image_trained.py.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from streamad.models.image import IMAGE_MODELS
from streamad.models.image.ganomaly import model as gmodel
from streamad.models.image.ganomaly.loss import discriminator_loss, generator_loss, generator_losses
from streamad.models.image.ganomaly.networks import Discriminator, Generator, dcgan_init_, pyramid_depth
from streamad.models.image.image_set import ImageSet

TINY = {"kind": "ganomaly", "input_size": [32, 32], "n_features": 8, "latent_vec_size": 16, "batch_size": 4}


def make(**kw: Any) -> Any:
    cls = IMAGE_MODELS.get("ganomaly")
    return cls(cls.Config.model_validate({**TINY, **kw}))


def noise_set(n: int = 8) -> ImageSet:
    rng = np.random.default_rng(0)
    s = ImageSet((32, 32))
    for _ in range(n):
        s.append(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), 0)
    return s


def test_generator_and_discriminator_shapes_at_the_config_size() -> None:
    model = make(input_size=[64, 64], n_features=8, latent_vec_size=20)
    net, disc = model._networks()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    z, fake, z_hat = net.generator(x)
    assert z.shape == z_hat.shape == (2, 20, 1, 1) and fake.shape == (2, 3, 64, 64)
    assert fake.abs().max() <= 1.0  # Tanh
    p, f = disc(x)
    assert p.shape == (2,) and ((p > 0) & (p < 1)).all() and f.shape == (2, 8 * 2 ** 3, 4, 4)  # 64 -> 4: 4 steps
    assert pyramid_depth(64) == 4 and pyramid_depth(8) == 1
    # extra layers keep the sizes; without the final convolution the latent is the 4x4 pyramid top
    gen = Generator(32, 3, 8, 20, extra_layers=2, add_final_conv_layer=False)
    z, fake, z_hat = gen(torch.zeros(1, 3, 32, 32))
    assert z.shape == z_hat.shape == (1, 32, 4, 4) and fake.shape == (1, 3, 32, 32)
    amap, score = net(torch.zeros(3, 50, 70, 3, dtype=torch.uint8))  # any frame size: resized in the graph
    assert amap.shape == (3, 1, 64, 64) and score.shape == (3,) and amap.dtype == score.dtype == torch.float32


def test_dcgan_init_is_seeded_and_has_the_dcgan_statistics() -> None:
    a, b = Discriminator(64, 3, 16), Discriminator(64, 3, 16)
    dcgan_init_(a, torch.Generator().manual_seed(3))
    dcgan_init_(b, torch.Generator().manual_seed(3))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    conv = a.features[2].weight.detach()  # the second convolution: 32 x 16 x 4 x 4 weights
    bn = a.features[3]
    assert abs(float(conv.mean())) < 0.002 and abs(float(conv.std()) - 0.02) < 0.002
    assert abs(float(bn.weight.detach().mean()) - 1.0) < 0.01 and float(bn.bias.detach().abs().max()) == 0.0


def test_losses_against_direct_computations() -> None:
    g = torch.Generator().manual_seed(0)
    fr, ff = torch.randn(4, 6, 4, 4, generator=g), torch.randn(4, 6, 4, 4, generator=g)
    x, fake = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    z, zh = torch.randn(4, 5, 1, 1, generator=g), torch.randn(4, 5, 1, 1, generator=g)
    parts = generator_losses(fr, ff, x, fake, z, zh)
    n_feat, n_img, n_lat = 4 * 6 * 16, 4 * 3 * 64, 4 * 5
    adv = sum(float(a - b) ** 2 for a, b in zip(fr.flatten(), ff.flatten())) / n_feat
    con = sum(abs(float(a - b)) for a, b in zip(x.flatten(), fake.flatten())) / n_img
    enc = sum(float(a - b) ** 2 for a, b in zip(z.flatten(), zh.flatten())) / n_lat
    assert float(parts["adv"]) == pytest.approx(adv, rel=1e-5)
    assert float(parts["con"]) == pytest.approx(con, rel=1e-5)
    assert float(parts["enc"]) == pytest.approx(enc, rel=1e-5)
    assert float(generator_loss(parts, 1, 50, 1)) == pytest.approx(adv + 50 * con + enc, rel=1e-5)
    assert float(generator_loss(parts, 2, 0, 3)) == pytest.approx(2 * adv + 3 * enc, rel=1e-5)
    pr, pf = torch.tensor([0.9, 0.6, 0.99]), torch.tensor([0.2, 0.5, 0.01])
    want = 0.5 * (-np.mean(np.log([0.9, 0.6, 0.99])) - np.mean(np.log([0.8, 0.5, 0.99])))
    assert float(discriminator_loss(pr, pf)) == pytest.approx(want, rel=1e-5)


def test_score_is_the_mean_squared_latent_distance_and_the_map_is_constant() -> None:
    model = make()
    net, _ = model._networks()
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8))
    with torch.inference_mode():
        amap, score = net(images)
        x = net.preprocess(images) / 127.5 - 1
        z = net.generator.encoder1(x)
        z_hat = net.generator.encoder2(net.generator.decoder(z))
    want = ((z - z_hat) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(score, want, rtol=1e-5, atol=1e-8)
    assert torch.equal(amap, score[:, None, None, None].expand(3, 1, 32, 32))
    assert not model.has_anomaly_map and model.backbone_identity()["backbone"] == "none"


def _step(model: Any) -> tuple[gmodel.AdversarialStep, torch.Tensor]:
    setup = model._training()
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (4, 3, 32, 32)).astype(np.float32))
    return setup.step, x


def test_discriminator_is_reinitialised_when_its_loss_collapses(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make(seed=7)
    step, x = _step(model)
    loss = step(x)  # a normal step: the BCE of a fresh discriminator is far above 1e-5
    assert np.isfinite(loss) and step.reinits == 0 and step.last["discriminator"] > gmodel.COLLAPSE
    assert loss == pytest.approx(step.last["adv"] + 50 * step.last["con"] + step.last["enc"], rel=1e-5)
    # a discriminator loss below 1e-5 (as when it separates real and fake perfectly): DCGAN re-init, seeded
    monkeypatch.setattr(gmodel, "discriminator_loss", lambda pr, pf: (pr.sum() + pf.sum()) * 0 + 1e-7)
    step(x)
    assert step.reinits == 1
    expected = Discriminator(32, 3, 8)
    dcgan_init_(expected, torch.Generator().manual_seed(7 + 1))
    for (k, have), want in zip(step.discriminator.state_dict().items(), expected.state_dict().values()):
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(have, want), k


def test_a_nan_loss_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    train = noise_set()
    monkeypatch.setattr(gmodel, "generator_loss", lambda parts, *w: parts["con"] * float("nan"))
    with pytest.raises(ValueError, match="ganomaly: the loss became nan in epoch 1; lower the learning rate"):
        make(max_epochs=1).fit(train)
    monkeypatch.undo()
    monkeypatch.setattr(gmodel, "discriminator_loss", lambda pr, pf: pr.mean() * float("nan"))
    with pytest.raises(ValueError, match="ganomaly: the discriminator loss became nan"):
        make(max_epochs=1).fit(train)
    train.close()


@pytest.mark.parametrize("size", [[64, 96], [48, 48], [96, 96], [128, 64]])
def test_a_size_that_is_not_a_square_power_of_two_is_a_config_error(size: list[int]) -> None:
    with pytest.raises(ValidationError, match=r"input_size must be square with a power-of-two side"):
        make(input_size=size)
    with pytest.raises(ValueError, match="power of two"):
        pyramid_depth(48)


def test_fit_is_seeded_and_reports_its_losses() -> None:
    train = noise_set()
    a, b = make(max_epochs=2), make(max_epochs=2)
    sa, sb = a.fit(train), b.fit(train)
    train.close()
    assert sa["losses"] == sb["losses"] and sa["discriminator_reinits"] == 0 and sa["epochs"] == 2
    assert set(sa["last_losses"]) == {"adv", "con", "enc", "generator", "discriminator"}
    frame = np.full((40, 40, 3), 100, np.uint8)
    assert np.array_equal(a.predict(frame).score, b.predict(frame).score)
