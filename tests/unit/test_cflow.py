"""C-Flow's parts without real data: the positional encoding's values, the conditional decoder's log-determinant
against the autograd Jacobian (and that the condition changes the result), the fibre order, the anomaly map's two
references, the fibre-batched training step (how many Adam steps, its error for too few fibres), the config checks,
a NaN loss stopping the fit with a clear error and a backbone without weights failing with one. (Fit, scores,
save / load and OpenVINO export on synthetic textures: tests/unit/test_image_models.py; on Magnetic Tile images:
tests/integration/test_image_trained.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from streamad.errors import ModelError
from streamad.models.image import IMAGE_MODELS
from streamad.models.image.cflow import model as cflow_model
from streamad.models.image.cflow.decoder import (LOG_NORMAL_CONST, conditional_decoder, fibre_conditions,
                                                 fibre_log_likelihood, fibres)
from streamad.models.image.cflow.model import cflow_anomaly_map, train_fibres
from streamad.models.image.cflow.positional import positional_encoding_2d
from streamad.models.image.image_set import ImageSet


def _model(**kw: object):  # type: ignore[no-untyped-def]
    cls = IMAGE_MODELS.get("cflow")
    cfg = {"kind": "cflow", "input_size": [64, 64], "layers": ["layer2", "layer3"], "coupling_blocks": 1,
           "condition_vector": 8, **kw}
    return cls(cls.Config.model_validate(cfg))


def test_positional_encoding_is_sin_cos_of_column_then_row() -> None:
    enc = positional_encoding_2d(8, 3, 5)  # 4 channels per axis, frequencies 1 and 1e-2
    assert enc.shape == (8, 3, 5) and enc.dtype == torch.float32
    y, x = 1, 2
    want = [math.sin(x), math.cos(x), math.sin(x / 100), math.cos(x / 100),
            math.sin(y), math.cos(y), math.sin(y / 100), math.cos(y / 100)]
    np.testing.assert_allclose(enc[:, y, x].numpy(), want, atol=1e-6)
    assert not torch.equal(enc[:, 0, 1], enc[:, 1, 0])  # rows and columns are told apart
    with pytest.raises(ValueError, match="multiple of 4"):
        positional_encoding_2d(126, 4, 4)


def test_decoder_log_likelihood_uses_the_jacobian_and_the_condition() -> None:
    """6-channel fibres, 4 condition channels, 2 coupling blocks moved off their initial state: the log-likelihood
    per dimension is (6 log N(0) - |z|^2 / 2 + log |det dz/dx|) / 6 with the autograd Jacobian's determinant."""
    torch.manual_seed(0)
    dec = conditional_decoder(6, 4, 2, 1.9, seed=3).double()
    with torch.no_grad():
        for p in dec.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, c = torch.randn(1, 6, 1, 1, dtype=torch.float64), torch.randn(1, 4, 1, 1, dtype=torch.float64)
    z = dec(x, c)[0].detach()
    jac = torch.autograd.functional.jacobian(lambda v: dec(v.reshape(1, 6, 1, 1), c)[0].reshape(6), x.reshape(6))
    want = (6 * LOG_NORMAL_CONST - 0.5 * float((z * z).sum()) + float(torch.linalg.slogdet(jac)[1])) / 6
    assert float(fibre_log_likelihood(dec, x, c)[0].detach()) == pytest.approx(want, abs=1e-9)
    assert abs(float(fibre_log_likelihood(dec, x, -c)[0].detach()) - want) > 1e-3  # another position, another density


def test_fibres_and_conditions_pair_each_position_with_its_encoding() -> None:
    f = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).reshape(2, 3, 2, 4)
    enc = positional_encoding_2d(4, 2, 4)
    e, c = fibres(f), fibre_conditions(enc, 2)
    assert e.shape == (16, 3, 1, 1) and c.shape == (16, 4, 1, 1)
    k = 1 * 8 + 1 * 4 + 3  # image 1, row 1, column 3
    assert torch.equal(e[k, :, 0, 0], f[1, :, 1, 3]) and torch.equal(c[k, :, 0, 0], enc[:, 1, 3])


def test_anomaly_map_with_image_and_training_references() -> None:
    ll = [torch.tensor([[[[-1.0, -2.0], [-3.0, -1.0]]]]), torch.tensor([[[[-0.5]]]])]  # 2x2 and 1x1 layers
    amap = cflow_anomaly_map(ll, (2, 2))  # image: exp(ll - max) summed, subtracted from the sum's maximum
    want = 2.0 - (np.exp([[0.0, -1.0], [-2.0, 0.0]]) + 1.0)
    np.testing.assert_allclose(amap[0, 0].numpy(), want, atol=1e-6)
    assert float(amap.min()) == 0.0  # the most likely pixel
    fixed = cflow_anomaly_map(ll, (2, 2), torch.tensor([0.0, 0.0]))  # training: 2 - sum exp(ll - reference)
    np.testing.assert_allclose(fixed[0, 0].numpy(), 2.0 - (np.exp([[-1.0, -2.0], [-3.0, -1.0]]) + np.exp(-0.5)),
                               atol=1e-6)


def test_training_step_is_one_adam_step_per_fibre_batch() -> None:
    """64x64 input, 2 images: layer2 has 2 * 8 * 8 = 128 fibres, layer3 2 * 4 * 4 = 32. With 30 fibres per batch:
    4 steps on layer2 (the last takes the remaining 38) and 1 on layer3; with 48 none is possible on layer3 -> an
    error naming the fix."""
    model = _model(fiber_batch_size=30)
    setup = model._training()
    steps = []
    opt = torch.optim.SGD(setup.module.parameters(), lr=1e-3)
    opt.register_step_post_hook(lambda *_: steps.append(1))
    x = torch.rand(2, 3, 64, 64) * 255
    loss = train_fibres(setup.network, opt, x, 30, torch.Generator().manual_seed(0))
    assert len(steps) == 128 // 30 + 32 // 30 == 5 and math.isfinite(loss) and loss > 0
    with pytest.raises(ValueError, match="layer 1 has 32 fibres per batch, fewer than fiber_batch_size 48"):
        train_fibres(setup.network, opt, x, 48, torch.Generator())


def test_config_defaults_are_anomalibs_and_bad_values_fail() -> None:
    cls = IMAGE_MODELS.get("cflow")
    c = cls.Config.model_validate({"kind": "cflow"})
    assert (c.fiber_batch_size, c.condition_vector, c.coupling_blocks, c.clamp_alpha, c.permute_soft, c.lr) == \
        (64, 128, 8, 1.9, False, 1e-4)
    assert c.layers == ["layer2", "layer3", "layer4"] and (c.max_epochs, c.patience, c.reference) == (50, 2, "image")
    for bad in ({"condition_vector": 126}, {"permute_soft": True}, {"reference": "batch"}, {"fiber_batch_size": 0}):
        with pytest.raises(ValidationError):
            cls.Config.model_validate({"kind": "cflow", **bad})


def test_nan_loss_stops_the_fit_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def nan_likelihood(decoder: torch.nn.Module, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        z, log_det = decoder(x, cond)
        return log_det * float("nan")

    monkeypatch.setattr(cflow_model, "fibre_log_likelihood", nan_likelihood)
    train = ImageSet((64, 64))
    for i in range(4):
        train.append(np.full((64, 64, 3), 40 * i, np.uint8), 0)
    with pytest.raises(ValueError, match=r"cflow: the loss became nan in epoch 1; lower the learning rate"):
        _model(batch_size=4, max_epochs=2).fit(train)
    train.close()


def test_backbone_without_weights_names_what_to_provide(tmp_path: object) -> None:
    with pytest.raises(ModelError, match="weights file not found: .*missing.pth"):
        _model(weights=str(tmp_path) + "/missing.pth")._training()  # type: ignore[operator]
    with pytest.raises(ModelError, match="wide_resnet50_2 needs weights: a local torchvision state dict"):
        _model(backbone="wide_resnet50_2", layers=["layer2", "layer3", "layer4"])._training()
