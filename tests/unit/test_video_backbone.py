"""3-D video backbones for FUVAS's ``clip_features`` (torchvision's swin3d / 3-D ResNets from a local state dict):
the clip's features equal the network's own layer on the normalised clip, in the layout FUVAS reads (cells x
time x channels, time kept), and every way of naming weights or layers wrongly stops with a clear error. The
weights are random, saved in torchvision's real layout: no Kinetics weights can be had offline here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from streamad.errors import ModelError
from streamad.frames import Clip, Frame
from streamad.models.components.video_backbone import VIDEO_BACKBONES, VideoClipGridFeatures
from streamad.models.video.fuvas.model import Fuvas
from streamad.operators.clip_features import ClipFeatures


def _weights(tmp_path: Path, name: str) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    net = getattr(torchvision.models.video, name)(weights=None).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(net.state_dict(), path)
    return path, net


def _clip_tensor(frames: np.ndarray, name: str) -> torch.Tensor:
    _, mean, std = VIDEO_BACKBONES[name]
    x = torch.from_numpy(frames).float().div(255).permute(3, 0, 1, 2)[None]
    return (x - torch.tensor(mean).view(1, 3, 1, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1, 1)


def _frames(n: int, h: int = 96, w: int = 128, seed: int = 0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    return [Frame("cam", i, i / 10, 0.0, rng.integers(0, 255, (h, w, 3), np.uint8)) for i in range(n)]


def test_swin3d_clip_features_are_the_networks_last_stage_with_time_kept(tmp_path: Path) -> None:
    path, net = _weights(tmp_path, "swin3d_t")
    cfg = ClipFeatures.Config(backbone="swin3d_t", weights=str(path))  # layer: anomalib's features.6.1
    op = ClipFeatures(cfg, ClipFeatures.create_shared(cfg, None), "cam")  # type: ignore[arg-type]
    frames = _frames(4)
    out = op.process(Clip("cam", frames, frames[-1]))[0]
    with torch.inference_mode():  # features.6.1 is the last block of the last stage: (1, T/2, H/32, W/32, C)
        ref = net.features(net.patch_embed(_clip_tensor(np.stack([f.image for f in frames]), "swin3d_t")))[0]
    t, h, w, c = ref.shape
    assert (t, h, w, c) == (2, 3, 4, 768)
    feats = out.features["clip"]
    assert feats.shape == (h * w, t * c) and feats.dtype == np.float32
    # cell (1, 2), oldest time step first, then the next: the clip's time axis is kept (anomalib keeps it)
    np.testing.assert_allclose(feats[1 * w + 2], ref[:, 1, 2].reshape(-1).numpy(), rtol=1e-4, atol=1e-4)
    assert out.regions is not None and out.regions.boxes.shape == (12, 4)
    np.testing.assert_array_equal(out.regions.boxes[1 * w + 2], [64, 32, 96, 64])  # 32-pixel cells


def test_r3d_pooled_cells_fit_and_score_fuvas(tmp_path: Path) -> None:
    path, net = _weights(tmp_path, "mc3_18")
    cfg = ClipFeatures.Config(backbone="mc3_18", weights=str(path), layer="layer3", pooling_kernel_size=2)
    op = ClipFeatures(cfg, ClipFeatures.create_shared(cfg, None), "cam")  # type: ignore[arg-type]
    frames = _frames(4, 64, 128, seed=1)
    feats = op.process(Clip("cam", frames, frames[-1]))[0].features["clip"]
    with torch.inference_mode():
        x = _clip_tensor(np.stack([f.image for f in frames]), "mc3_18")
        ref = net.layer3(net.layer2(net.layer1(net.stem(x))))  # (1, 256, T=4, 8, 16): stride 8, mc3 keeps time
        ref = torch.nn.functional.avg_pool3d(ref, (1, 2, 2))[0]  # anomalib's spatial pool: (256, 4, 4, 8)
    assert ref.shape == (256, 4, 4, 8) and feats.shape == (32, 4 * 256)
    np.testing.assert_allclose(feats[1 * 8 + 5], ref[:, :, 1, 5].T.reshape(-1).numpy(), rtol=1e-4, atol=1e-4)
    # the features feed FUVAS: fit on clips of normal frames, score one
    clips = [{"clip": op.process(Clip("cam", c, c[-1]))[0].features["clip"]}
             for c in (_frames(4, 64, 128, seed=s) for s in range(2, 8))]
    model = Fuvas(Fuvas.Config(pca_level=3))
    model.fit(clips, ["v"] * len(clips))
    result = model.predict_batch([{"clip": feats}])[0]
    assert np.isfinite(result.frame_score) and result.frame_score > 0


def test_clear_errors_for_weights_and_layers(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="video backbone r3d_18 needs weights.*nothing is downloaded"):
        VideoClipGridFeatures("r3d_18")
    with pytest.raises(ModelError, match="weights file not found.*absent.pth"):
        VideoClipGridFeatures("r3d_18", weights=tmp_path / "absent.pth")
    path, _ = _weights(tmp_path, "mc3_18")
    with pytest.raises(ModelError, match=r"r3d_18.*mc3_18.pth does not match the architecture"):
        VideoClipGridFeatures("r3d_18", weights=path)
    with pytest.raises(ModelError, match=r"has no layer 'blocks.4'; its layers: stem, .*layer4"):
        VideoClipGridFeatures("mc3_18", "blocks.4", weights=path)
    with pytest.raises(ModelError, match="unknown video backbone 'x3d_s'"):
        VideoClipGridFeatures("x3d_s", weights=path)
    shared = VideoClipGridFeatures("mc3_18", "layer4", pool=4, weights=path)  # layer4: a 2 x 2 map at 32x32
    with pytest.raises(ValueError, match="smaller than pooling_kernel_size 4"):
        shared.clip(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        shared.clip(np.zeros((32, 32, 3), np.uint8))


def test_swin3d_example_takes_its_weights_from_the_environment(tmp_path: Path) -> None:
    from streamad.config import load_config
    from streamad.errors import ConfigError

    example = Path(__file__).resolve().parents[2] / "examples" / "ped2_fuvas_swin3d.yaml"
    weights = tmp_path / "swin3d_b_22k-7c6ae6fa.pth"
    cfg = load_config(example, env={"SWIN3D_WEIGHTS": str(weights), "STREAMAD_DATA": "."})
    feats = next(o for o in cfg.operators if o.kind == "clip_features")
    window = next(o for o in cfg.operators if o.kind == "clip_window")
    assert (feats.backbone, feats.layer, feats.weights) == ("swin3d_b", "features.6.1", str(weights))
    assert window.clip_length_in_frames == 2  # anomalib's UCSDped clips
    with pytest.raises(ModelError, match="video backbone swin3d_b: weights file not found.*swin3d_b_22k"):
        ClipFeatures.create_shared(feats, None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="SWIN3D_WEIGHTS is not set"):
        load_config(example, env={"STREAMAD_DATA": "."})
