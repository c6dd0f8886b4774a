"""EfficientAD's parts on tiny inputs: the hard-feature loss, the map normalisation, the teacher from a user's file
(and the errors naming a missing or mismatched one), the generic images, a diverging fit, the step-based epochs.
The whole model (fit, score, save / load, OpenVINO parity) is covered by test_image_models.py's registry test."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from image_fixtures import texture
from streamad.errors import ModelError
from streamad.models.image import IMAGE_MODELS
from streamad.models.image.efficient_ad.epoch_sample import EpochSample
from streamad.models.image.efficient_ad.generic_images import load_generic_images
from streamad.models.image.efficient_ad.losses import hard_feature_loss
from streamad.models.image.efficient_ad.network import EfficientAdNetwork
from streamad.models.components.backbone import build_feature_extractor
from streamad.models.image.efficient_ad.pdn import PatchDescriptionNetwork
from streamad.models.image.efficient_ad.teacher import cell_centres, distil_teacher
from streamad.models.image.image_set import ImageSet

SIZE = (64, 64)


@pytest.fixture(scope="module")
def small_set() -> ImageSet:
    """Six normal textures at 64x64 (a teacher from a file needs no more)."""
    with ImageSet(SIZE) as images:
        rng = np.random.default_rng(0)
        [images.append(texture(rng), 0) for _ in range(6)]
        yield images


def _model(**cfg: object):
    cls = IMAGE_MODELS.get("efficient_ad")
    base = {"kind": "efficient_ad", "input_size": list(SIZE), "teacher_out_channels": 4, "batch_size": 2,
            "steps_per_epoch": 1, "max_epochs": 1}
    return cls(cls.Config.model_validate({**base, **cfg}))


def _teacher_file(tmp_path: Path, channels: int) -> Path:
    """A teacher PDN's state dict under anomalib's key names (conv1..conv4), as torch.save writes it."""
    pdn = PatchDescriptionNetwork(channels)
    sd = {"conv1.weight": pdn.conv1.weight, "conv1.bias": pdn.conv1.bias, "conv2.weight": pdn.conv2.weight,
          "conv2.bias": pdn.conv2.bias, "conv3.weight": pdn.body[0].weight, "conv3.bias": pdn.body[0].bias,
          "conv4.weight": pdn.body[2].weight, "conv4.bias": pdn.body[2].bias}
    path = tmp_path / f"teacher{channels}.pth"
    torch.save({k: v.detach().clone() for k, v in sd.items()}, path)
    return path


def test_hard_feature_loss_averages_only_the_hardest_differences() -> None:
    t = torch.zeros(1, 10, 10, 10)  # 1000 elements: the 0.999 quantile keeps the largest one
    s = torch.zeros_like(t)
    s[0, 3, 4, 5] = 3.0
    s[0, 1, 1, 1] = 1.0
    assert float(hard_feature_loss(t, s)) == pytest.approx(9.0)
    assert float(hard_feature_loss(t, s, quantile=0.998)) == pytest.approx(5.0)  # the two largest
    assert float(hard_feature_loss(t, s, quantile=0.0)) == pytest.approx(0.01)  # hard_quantile 0: all 1000
    cls = IMAGE_MODELS.get("efficient_ad")
    assert cls.Config.model_validate({"kind": "efficient_ad"}).hard_quantile == 0.999  # the paper's p_hard
    with pytest.raises(ValueError, match="hard_quantile"):
        cls.Config.model_validate({"kind": "efficient_ad", "hard_quantile": 1.0})


@pytest.mark.parametrize(("size", "padding", "grid"), [("small", False, (8, 8)), ("medium", False, (8, 8)),
                                                       ("small", True, (16, 16))])
def test_network_shapes_and_quantile_normalisation(size: str, padding: bool, grid: tuple[int, int]) -> None:
    net = EfficientAdNetwork(SIZE, 4, size, padding=padding).eval()
    x = torch.rand(2, 3, *SIZE)
    assert tuple(net.teacher(x).shape) == (2, 4, *grid) and tuple(net.student(x).shape) == (2, 8, *grid)
    assert tuple(net.autoencoder(x).shape) == (2, 4, *grid)
    images = torch.from_numpy(np.stack([texture(np.random.default_rng(i)) for i in range(2)]))
    with torch.no_grad():
        st, ae = net.raw_maps(net.preprocess(images) / 255.0)
        net.quantiles = torch.tensor([1.0, 3.0, 0.5, 1.5])
        amap, score = net(images)
    assert amap.shape == (2, 1, *SIZE) and score.shape == (2,)
    want = 0.5 * 0.1 * (st - 1.0) / 2.0 + 0.5 * 0.1 * (ae - 0.5) / 1.0  # q_a -> 0, q_b -> 0.1, then the mean
    torch.testing.assert_close(amap, want)
    torch.testing.assert_close(score, amap.flatten(1).amax(1))
    if not padding:  # pad_maps: the border outside the unpadded grid is the "no difference" value
        assert torch.all(amap[:, :, 0, 0] == 0.5 * 0.1 * (-1.0) / 2.0 + 0.5 * 0.1 * (-0.5))


def test_teacher_from_a_users_file_and_errors_naming_it(small_set: ImageSet, tmp_path: Path) -> None:
    path = _teacher_file(tmp_path, 4)
    model = _model(teacher_weights=str(path))
    stats = model.fit(small_set)
    assert stats["teacher"] == f"file {path}" and "distill" not in stats
    torch.testing.assert_close(model.network.teacher.conv1.weight, torch.load(path, weights_only=True)["conv1.weight"])
    assert stats["quantile_source"] == "train" and stats["quantiles"][1] > stats["quantiles"][0]
    with pytest.raises(ModelError, match="nope.pth"):
        _model(teacher_weights=str(tmp_path / "nope.pth")).fit(small_set)
    with pytest.raises(ModelError, match=f"{_teacher_file(tmp_path, 6).name}.*does not match"):
        _model(teacher_weights=str(tmp_path / "teacher6.pth")).fit(small_set)


def test_generic_images_from_folders_and_videos(tmp_path: Path) -> None:
    folder = tmp_path / "imgs" / "sub"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), texture(rng))
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (120, 80))
    for _ in range(5):
        writer.write(texture(rng))
    writer.release()
    got = load_generic_images([str(tmp_path / "imgs"), str(video)], SIZE, 4)
    assert got.shape == (4, *SIZE, 3) and got.dtype == np.uint8
    with pytest.raises(ModelError, match="missing_dir"):
        load_generic_images([str(tmp_path / "missing_dir")], SIZE, 4)


def test_a_diverging_fit_stops_with_a_clear_error(small_set: ImageSet, tmp_path: Path) -> None:
    model = _model(teacher_weights=str(_teacher_file(tmp_path, 4)), lr=1e30, steps_per_epoch=3)
    with pytest.raises(ValueError, match="the loss became"):
        model.fit(small_set)


def test_epoch_sample_reads_a_fixed_number_of_images(small_set: ImageSet) -> None:
    view = EpochSample(small_set, 4)
    assert len(view) == 4
    assert sum(len(b.images) for b in view.batches(3, shuffle=True, seed=1)) == 4
    assert sum(len(b.images) for b in view.batches(3)) == len(small_set)  # an ordered read: the whole set


def test_distillation_trains_the_frozen_teacher_and_freezes_it_again() -> None:
    net = EfficientAdNetwork(SIZE, 4)  # the network holds its teacher frozen
    before = net.teacher.conv1.weight.clone()
    images = np.stack([texture(np.random.default_rng(i))[:64, :64] for i in range(4)])
    log = distil_teacher(net.teacher, build_feature_extractor("efficientnet_lite0", ["layer2"]), images, 2, 2, 64,
                         1e-3, 0)
    assert log["steps"] == 2 and not torch.equal(before, net.teacher.conv1.weight)
    assert not any(p.requires_grad for p in net.teacher.parameters())


@pytest.mark.parametrize(("size", "padding"), [("small", False), ("small", True), ("medium", False)])
def test_distillation_targets_sit_at_each_cells_receptive_field_centre(size: str, padding: bool) -> None:
    """The teacher's distillation regresses the backbone where each PDN cell looks: the receptive-field centre that
    cell_centres computes is the centre of the input pixels the cell's output depends on (its gradient's support),
    e.g. 4 o + 16.5 for the unpadded EfficientAD-S (resizing the backbone's map to the PDN grid put the targets up
    to 16 pixels off, and the distillation barely learnt)."""
    pdn = PatchDescriptionNetwork(8, size, padding)
    x = torch.ones(1, 3, 96, 96, requires_grad=True)
    with torch.no_grad():  # every unit on: the gradient covers the whole receptive field
        for m in pdn.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(0.01)
                m.bias.fill_(0.1)
    out = pdn(x)
    o = out.shape[-1] // 2  # a middle cell: its field lies inside the image
    out[0, :, o, o].sum().backward()
    support = x.grad[0].abs().sum(0).sum(0) > 0  # columns the cell depends on
    cols = torch.nonzero(support).ravel().float()
    want = float(cell_centres(pdn, out.shape[-1])[o])
    assert float(cols.min() + cols.max() + 1) / 2 == pytest.approx(want)  # centre of the span [min, max + 1)
    assert int(cols.max() - cols.min() + 1) == 33  # the PDN's receptive field
    if size == "small" and not padding:
        assert want == 4 * o + 16.5
