"""DSR's parts (streamad/models/image/dsr): the vector quantiser (nearest code, straight-through gradient, moving
averages and restarts), the latent anomalies (only masked vectors change, to other nearby codes), the generator's
masks at the three resolutions, the second-stage loss against direct computations, the network's map and score,
config errors, loading the discrete model from a file, a seeded fit and the error on a loss that is not finite.
(Fit, save / load and the OpenVINO export: test_image_models.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from image_fixtures import model_from, noise_set, seeded
from streamad.models.image.draem.loss import focal_loss
from streamad.models.image.dsr.anomaly_generator import DsrAnomalyGenerator, replace_codes
from streamad.models.image.dsr.discrete import DiscreteLatentModel
from streamad.models.image.dsr.loss import second_stage_losses
from streamad.models.image.dsr.network import SCORE_WINDOW, DsrNetwork
from streamad.models.image.dsr.quantizer import VectorQuantizer

WIDTHS = {"num_hiddens": 8, "num_residual_hiddens": 4, "num_embeddings": 16, "embedding_dim": 4,
          "subspace_width": 4, "detection_width": 4, "upsampling_width": 4}
TINY = {"kind": "dsr", "input_size": [32, 64], "batch_size": 4, "discrete_epochs": 1, "max_epochs": 1,
        "upsampling_epochs": 1, **WIDTHS}


def make(**kw: Any) -> Any:
    return model_from(TINY, **kw)


# -- vector quantiser -------------------------------------------------------------------------------------------

def test_quantiser_returns_the_nearest_code_with_a_straight_through_gradient() -> None:
    vq = VectorQuantizer(3, 2).eval()
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]]))
    z = torch.tensor([[0.1, 0.9, 0.2, 4.0], [0.1, 0.0, 3.0, 0.0]]).view(1, 2, 2, 2)  # 4 vectors (x, y)
    assert vq.indices(z).flatten().tolist() == [0, 1, 2, 1]
    q = vq(z)
    assert torch.equal(q, vq.codebook.weight[[0, 1, 2, 1]].t().reshape(1, 2, 2, 2)) and vq.loss is None
    zg = z.clone().requires_grad_(True)
    out = vq(zg)
    out.sum().backward()  # the straight-through estimator: d out / d z = 1
    assert torch.allclose(out, q) and torch.equal(zg.grad, torch.ones_like(z))


def test_moving_averages_pull_used_codes_to_their_vectors_and_restart_unused_ones() -> None:
    vq = VectorQuantizer(2, 2).train()
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[1.0, 1.0], [-50.0, -50.0]]))
    vq.ema_sum.copy_(vq.codebook.weight)
    z = torch.full((1, 2, 4, 4), 3.0)  # every vector (3, 3): code 0 takes them all
    for _ in range(300):
        vq(z)
    assert torch.allclose(vq.codebook.weight[0], torch.tensor([3.0, 3.0]), atol=0.05)
    assert float(vq.loss) < 1e-3
    # code 1 was never used: its count fell below DEAD_COUNT and it was restarted at a vector of the batch
    assert torch.allclose(vq.codebook.weight[1], torch.tensor([3.0, 3.0]))


# -- latent anomalies -------------------------------------------------------------------------------------------

def test_codes_used_counts_the_distinct_codes_of_each_level() -> None:
    torch.manual_seed(0)
    disc = DiscreteLatentModel(8, 2, 4, 16, 4)
    x = torch.rand(2, 3, 32, 64)
    disc.init_codebooks(x, torch.Generator().manual_seed(0))  # codes drawn from the features, as phase 1 starts
    spread = disc.codes_used(x)
    with torch.no_grad():
        top = disc.vq_top.indices(disc.pre_vq_top(disc.encode_top(disc.encode_bot(x))))
    assert spread["top"] == len(top.unique()) > 1 and 1 < spread["bottom"] <= 16
    with torch.no_grad():  # a collapsed codebook: every code the same vector, every feature takes code 0
        for vq in (disc.vq_top, disc.vq_bot):
            vq.codebook.weight[:] = vq.codebook.weight[0].clone()
    assert disc.codes_used(x) == {"top": 1, "bottom": 1}


def test_replace_codes_changes_only_masked_vectors_to_other_nearby_codes() -> None:
    codebook = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 3)  # code i = (i, i, i)
    q = codebook[torch.tensor([[2, 2, 5], [7, 7, 7]])].permute(2, 0, 1)[None].repeat(2, 1, 1, 1)  # (2, 3, 2, 3)
    mask = torch.zeros(2, 1, 2, 3)
    mask[0, 0, 0, :2] = 1  # image 0: two vectors; image 1: none
    out = replace_codes(q, codebook, mask, torch.tensor([0.2, 1.0]), seeded())
    assert torch.equal(out[1], q[1]) and torch.equal(out[0][:, 1], q[0][:, 1]) and torch.equal(out[0, :, 0, 2],
                                                                                              q[0, :, 0, 2])
    new = out[0, 0, 0, :2]  # strength 0.2 of 10 codes: one of the 2 nearest codes other than 2 itself (1 or 3)
    assert set(new.tolist()) <= {1.0, 3.0} and torch.equal(out[0, :, 0, :2], new.expand(3, 2))


def test_generator_masks_are_binary_nested_seeded_and_about_half_the_batch() -> None:
    g = DsrAnomalyGenerator((16, 24), seed=3)
    lo, hi, image = g.masks(40)
    assert lo.shape == (40, 1, 16, 24) and hi.shape == (40, 1, 8, 12) and image.shape == (40, 1, 64, 96)
    assert set(torch.unique(lo).tolist()) <= {0.0, 1.0}
    assert torch.equal(F.max_pool2d(lo, 2), hi) and torch.equal(image[:, :, ::4, ::4], lo)
    assert 10 <= int((lo.flatten(1).amax(1) > 0).sum()) <= 30  # p_anomalous 0.5 (a coarse mask may be empty)
    assert torch.equal(DsrAnomalyGenerator((16, 24), seed=3).masks(40)[0], lo)
    s = g.strengths(200)
    assert float(s.min()) >= 0.2 and float(s.max()) <= 1.0 and float(s.std()) > 0.1


def test_second_stage_loss_is_the_sum_of_its_direct_parts() -> None:
    g = seeded(1)
    r_hi, q_hi, r_lo, q_lo = (torch.randn(2, 4, s, s, generator=g) for s in (2, 2, 4, 4))
    image, obj = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    logits, mask = torch.randn(2, 2, 16, 16, generator=g), (torch.rand(2, 1, 16, 16, generator=g) > 0.7).float()
    parts = second_stage_losses(r_hi, r_lo, q_hi, q_lo, image, obj, logits, mask)
    assert torch.isclose(parts["hi"], ((r_hi - q_hi) ** 2).mean())
    assert torch.isclose(parts["image"], 10 * ((obj - image) ** 2).mean())
    p_t = torch.where(mask[:, 0] > 0, logits.softmax(1)[:, 1], logits.softmax(1)[:, 0])
    assert torch.isclose(parts["focal"], (-(1 - p_t) ** 2 * p_t.log()).mean(), atol=1e-6)
    assert torch.isclose(parts["focal"], focal_loss(logits, mask[:, 0].long()))
    assert torch.isclose(parts["total"], parts["hi"] + parts["lo"] + parts["image"] + parts["focal"])


# -- network and model ------------------------------------------------------------------------------------------

def test_network_map_is_the_upsampling_probability_and_score_the_smoothed_detection_maximum() -> None:
    torch.manual_seed(0)
    net = DsrNetwork((32, 64), 8, 1, 4, 16, 4, 4, 4, 4).eval()
    images = torch.randint(0, 256, (2, 50, 70, 3), dtype=torch.uint8)
    with torch.no_grad():
        amap, score = net(images)
        obj, general, logits = net.detect(net.preprocess(images) / 255.0)
        probs = logits.softmax(1)
        want_map = net.upsample(obj, general, probs).softmax(1)[:, 1:]
        smooth = F.avg_pool2d(probs[:, 1:], SCORE_WINDOW, stride=1, padding=SCORE_WINDOW // 2)
    assert amap.shape == (2, 1, 32, 64) and score.shape == (2,) and obj.shape == general.shape == (2, 3, 32, 64)
    assert torch.allclose(amap, want_map, atol=1e-6) and torch.allclose(score, smooth.amax((1, 2, 3)), atol=1e-6)
    assert float(amap.min()) >= 0 and float(amap.max()) <= 1


def test_config_errors_name_the_setting() -> None:
    with pytest.raises(ValidationError, match="multiples of 32"):
        make(input_size=[48, 64])
    with pytest.raises(ValidationError, match="num_hiddens must be even"):
        make(num_hiddens=7)


def test_discrete_weights_are_loaded_instead_of_phase_one(tmp_path: Path) -> None:
    torch.manual_seed(5)
    disc = DiscreteLatentModel(8, 2, 4, 16, 4)
    path = tmp_path / "discrete.pt"
    torch.save(disc.state_dict(), path)
    model = make(discrete_weights=str(path))
    stats = model.fit(noise_set())
    assert stats["discrete"] == {"loaded": str(path)}
    for k, v in disc.state_dict().items():  # phases 2 and 3 leave the discrete model as it was loaded
        assert torch.equal(model.network.discrete.state_dict()[k], v), k
    with pytest.raises(ValueError, match="discrete_weights '.*missing.pt' is not a file"):
        make(discrete_weights=str(tmp_path / "missing.pt")).fit(noise_set())
    with pytest.raises(ValueError, match="does not fit the discrete model's widths"):
        make(discrete_weights=str(path), num_embeddings=32).fit(noise_set())


def test_fit_is_seeded_and_logs_each_phase() -> None:
    a, b = make(), make()
    sa, sb = a.fit(noise_set()), b.fit(noise_set())
    assert sa["discrete"]["epochs"] == sa["epochs"] == sa["upsampling"]["epochs"] == 1
    assert set(sa["last_losses"]) == {"hi", "lo", "image", "focal", "total"}
    used = sa["discrete"]["codes_used"]  # of the 16 codes per level, on the first training images
    assert set(used) == {"top", "bottom"} and all(1 <= n <= 16 for n in used.values())
    images = np.random.default_rng(3).integers(0, 256, (2, 32, 64, 3), dtype=np.uint8)
    pa, pb = a.predict(images), b.predict(images)
    np.testing.assert_array_equal(pa.score, pb.score)
    np.testing.assert_array_equal(pa.anomaly_map, pb.anomaly_map)


def test_a_loss_that_is_not_finite_stops_the_fit_naming_the_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    def nan_loss(self: DiscreteLatentModel, x: torch.Tensor) -> torch.Tensor:
        return self(x).sum() * float("nan")

    monkeypatch.setattr(DiscreteLatentModel, "vq_loss", nan_loss)
    with pytest.raises(ValueError, match="dsr discrete: the loss became nan"):
        make().fit(noise_set())
