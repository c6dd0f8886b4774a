"""The math of the gradient-trained image models without training: FastFlow's log-determinant against autograd
and STFPM's layer map against the cosine similarity. (Their training on Magnetic Tile images is in
tests/integration/test_image_trained.py.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from streamad.models.image.fastflow.flow import CouplingStep, FlowBlock
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
