"""The math of the gradient-trained image models without training: FastFlow's log-determinant against autograd,
STFPM's layer map against the cosine similarity, Reverse Distillation's loss, map and bottleneck / decoder shapes.
(Their training on Magnetic Tile images is in tests/integration/test_image_trained.py.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from streamad.errors import ModelError
from streamad.models.image import IMAGE_MODELS
from streamad.models.image.fastflow.flow import CouplingStep, FlowBlock
from streamad.models.image.layer_maps import combine_layer_maps, cosine_distance_map
from streamad.models.image.reverse_distillation.bottleneck import OneClassBottleneck
from streamad.models.image.reverse_distillation.decoder import Decoder
from streamad.models.image.reverse_distillation.model import reverse_distillation_loss
from streamad.models.image.stfpm.model import stfpm_layer_map


def test_coupling_log_determinant_is_the_jacobians() -> None:
    """The flow's log |det J| equals the log-determinant of its autograd Jacobian, and steps are invertible
    (the Jacobian is full rank)."""
    torch.manual_seed(0)
    block = FlowBlock(5, flow_steps=3, conv3x3_only=False, hidden_ratio=1.0, seed=1).double()
    with torch.no_grad():  # move off the identity-like initial state
        for p in block.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(1, 5, 3, 4, dtype=torch.float64)
    _, log_det = block(x)
    jac = torch.autograd.functional.jacobian(lambda v: block(v.view(1, 5, 3, 4))[0].flatten(), x.flatten())
    sign, ref = torch.linalg.slogdet(jac)
    assert sign.item() != 0
    assert abs(log_det.item() - ref.item()) < 1e-8, (log_det.item(), ref.item())
    with pytest.raises(ValueError, match="permutation"):
        CouplingStep(4, 3, 1.0, 2.0, torch.arange(3))


def test_stfpm_layer_map_is_one_minus_cosine_similarity() -> None:
    g = torch.Generator().manual_seed(0)
    t, s = torch.randn(2, 7, 5, 6, generator=g), torch.randn(2, 7, 5, 6, generator=g)
    ref = 1.0 - F.cosine_similarity(t, s, dim=1).unsqueeze(1)
    torch.testing.assert_close(stfpm_layer_map(t, s), ref, rtol=1e-5, atol=1e-6)
    assert float(stfpm_layer_map(t, t).abs().max()) < 1e-6


def test_reverse_distillation_loss_and_map_are_cosine_distances() -> None:
    """Loss: sum over layers of the mean of 1 - cos over channels (torch's cosine_similarity); the map's layers are
    added or multiplied after a bilinear upsampling."""
    g = torch.Generator().manual_seed(0)
    enc = [torch.randn(2, 7, 8, 8, generator=g), torch.randn(2, 5, 4, 4, generator=g)]
    dec = [torch.randn(2, 7, 8, 8, generator=g), torch.randn(2, 5, 4, 4, generator=g)]
    ref = sum((1.0 - F.cosine_similarity(e, d, dim=1)).mean() for e, d in zip(enc, dec))
    torch.testing.assert_close(reverse_distillation_loss(enc, dec), ref, rtol=1e-5, atol=1e-6)
    assert float(reverse_distillation_loss(enc, enc)) < 1e-5
    maps = [cosine_distance_map(e, d) for e, d in zip(enc, dec)]
    up = [F.interpolate(m, size=(16, 16), mode="bilinear", align_corners=True) for m in maps]
    torch.testing.assert_close(combine_layer_maps(maps, (16, 16), "add", align_corners=True), up[0] + up[1])
    torch.testing.assert_close(combine_layer_maps(maps, (16, 16), "multiply", align_corners=True), up[0] * up[1])
    with pytest.raises(ValueError, match="anomaly map mode"):
        combine_layer_maps(maps, (16, 16), "max")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [(64, 64), (50, 70)])
def test_reverse_distillation_bottleneck_and_decoder_shapes(size: tuple[int, int]) -> None:
    """EfficientNet-Lite0 layer1..layer3 shapes (24, 40, 112 channels at stride 4, 8, 16, sizes rounded up as
    "SAME" padding does): the embedding is 224 channels at stride 32, the decoder restores every layer's shape."""
    h, w = size
    shapes = [(24, -(-h // 4), -(-w // 4)), (40, -(-h // 8), -(-w // 8)), (112, -(-h // 16), -(-w // 16))]
    feats = [torch.randn(2, *s) for s in shapes]
    ocbe = OneClassBottleneck([24, 40, 112], [4, 8, 16])
    emb = ocbe(feats)
    assert ocbe.out_channels == 224 and ocbe.out_stride == 32 and emb.shape[:2] == (2, 224)
    dec = Decoder([24, 40, 112], [4, 8, 16], 224, 32)(emb, [s[1:] for s in shapes])
    assert [tuple(d.shape) for d in dec] == [(2, *s) for s in shapes]
    with pytest.raises(ModelError, match="power of two"):
        OneClassBottleneck([8, 8], [4, 12])


def test_reverse_distillation_config_bounds_and_layer_order() -> None:
    cls = IMAGE_MODELS.get("reverse_distillation")
    with pytest.raises(ValidationError, match="betas"):
        cls.Config.model_validate({"kind": "reverse_distillation", "betas": [0.5, 1.0]})
    with pytest.raises(ValidationError):
        cls.Config.model_validate({"kind": "reverse_distillation", "anomaly_map_mode": "max"})
    with pytest.raises(ValidationError):
        cls.Config.model_validate({"kind": "reverse_distillation", "lr": 0})
    model = cls(cls.Config.model_validate({"kind": "reverse_distillation", "layers": ["layer3", "layer1"]}))
    with pytest.raises(ModelError, match="shallow to deep"):
        model._network()
