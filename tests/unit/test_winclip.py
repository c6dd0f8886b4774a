"""WinCLIP (streamad/models/image/winclip/): the sliding windows and their harmonic aggregation against hand-computed
values, the prompt ensemble, the encoder against open_clip's own image forward, zero-shot and few-shot fits, the
real ViT-B-16-plus-240 layout (anomalib's embedding shapes) and the errors a user sees without CLIP weights.

No CLIP weights can be had offline: every CLIP here has random weights (``random_clip_weights``) saved in the
layout of a real open_clip checkpoint, so these tests check the computation, not the accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from image_fixtures import texture
from helpers import load_benchmark
from streamad.errors import ModelError
from streamad.models.image import IMAGE_MODELS
from streamad.models.image.image_set import ImageSet
from streamad.models.image.winclip.clip_loader import load_clip
from streamad.models.image.winclip.encoder import ClipWindowEncoder
from streamad.models.image.winclip.prompts import encode_prompts, prompt_ensemble
from streamad.models.image.winclip.windows import coverage, harmonic_aggregation, window_masks

SMALL = "ViT-S-32"  # a real open_clip architecture, 224 x 224 input, 7 x 7 patches: fast on a CPU
Winclip = IMAGE_MODELS.get("winclip")


def make(weights: Path | str | None, **cfg: Any) -> Any:
    return Winclip(Winclip.Config.model_validate({"kind": "winclip", "backbone": SMALL, "input_size": [224, 224],
                                                   "weights": None if weights is None else str(weights), **cfg}))


@pytest.fixture(scope="module")
def train_set() -> ImageSet:
    rng = np.random.default_rng(0)
    s = ImageSet((224, 224))
    for i in range(6):
        s.append(texture(rng), 0, name=f"t{i}")
    yield s
    s.close()


@pytest.mark.parametrize("scale", [2, 3])
def test_window_masks_cover_a_15x15_grid(scale: int) -> None:
    """ViT-B-16-plus-240's 15 x 15 patch grid: (15 - s + 1)^2 windows of s x s contiguous patches (anomalib's 196
    and 169); a corner patch lies in one window, an edge patch in s, an interior patch in s * s."""
    masks = window_masks((15, 15), scale)
    n = 15 - scale + 1
    assert masks.shape == (scale * scale, n * n) and masks.dtype == torch.int64
    rows, cols = masks // 15, masks % 15
    assert torch.equal(rows.amax(0) - rows.amin(0), torch.full((n * n,), scale - 1))  # s x s blocks, no wrap-around
    assert torch.equal(cols.amax(0) - cols.amin(0), torch.full((n * n,), scale - 1))
    assert torch.equal(masks[:, 0], torch.tensor([r * 15 + c for r in range(scale) for c in range(scale)]))
    counts = coverage(masks, 225).sum(1).reshape(15, 15)
    assert counts[0, 0] == counts[14, 14] == 1 and counts[0, 7] == counts[7, 0] == scale
    assert counts[7, 7] == scale * scale and counts.sum() == scale * scale * n * n
    assert len({tuple(m) for m in masks.T.tolist()}) == n * n  # every window once


def test_window_masks_reject_a_window_larger_than_the_grid() -> None:
    with pytest.raises(ValueError, match="window scale 16 does not fit a 15x15 patch grid"):
        window_masks((15, 15), 16)


def test_harmonic_aggregation_by_hand() -> None:
    """3 x 3 patches, four 2 x 2 windows scored 1, 0.75, 0.5, 0.25: each patch gets the harmonic mean of the windows
    covering it (e.g. the centre: 4 / (1 + 4/3 + 2 + 4) = 12/25); a zero window score gives 0, not NaN."""
    cov = coverage(window_masks((3, 3), 2), 9)
    got = harmonic_aggregation(torch.tensor([[1.0, 0.75, 0.5, 0.25]]), cov)
    want = torch.tensor([[1.0, 6 / 7, 0.75, 2 / 3, 12 / 25, 0.375, 0.5, 1 / 3, 0.25]])
    torch.testing.assert_close(got, want)
    zero = harmonic_aggregation(torch.tensor([[0.0, 0.5, 0.5, 0.5]]), cov)[0]
    assert torch.isfinite(zero).all() and float(zero[0]) < 1e-9 and float(zero[8]) == pytest.approx(0.5)


def test_prompt_ensemble_composes_states_and_templates() -> None:
    normal, anomalous = prompt_ensemble("tile")
    assert len(normal) == 7 * 21 and len(anomalous) == 4 * 21
    assert "a photo of a flawless tile." in normal and "a photo of the tile for anomaly detection." in normal
    assert "a close-up photo of a tile with defect." in anomalous and "a bright photo of a damaged tile." in anomalous
    assert not set(normal) & set(anomalous)


def test_encoder_matches_open_clip(random_clip_weights: Any) -> None:
    """The trimmed text pass equals open_clip's encode_text; the image embedding and the patch tokens equal
    open_clip's encode_image (output_tokens); a window as large as the grid is the whole image."""
    import open_clip

    clip = load_clip(SMALL, random_clip_weights(SMALL))
    tokens = open_clip.tokenize(prompt_ensemble("object")[1][:8])
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    enc = ClipWindowEncoder(clip.visual, [window_masks((7, 7), 2), window_masks((7, 7), 7)])
    with torch.inference_mode():
        torch.testing.assert_close(encode_prompts(clip, tokens), clip.encode_text(tokens), rtol=1e-4, atol=1e-4)
        image, windows, patches = enc(x)
        clip.visual.output_tokens = True
        want_image, want_patches = clip.encode_image(x)
    torch.testing.assert_close(image, want_image, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(patches, want_patches, rtol=1e-4, atol=1e-4)
    assert windows[0].shape == (2, 36, 384) and windows[1].shape == (2, 1, 384)
    torch.testing.assert_close(windows[1][:, 0], image, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(windows[0][:, 0], image, atol=1e-2)  # a 2 x 2 window sees less


def test_zero_shot_and_few_shot(random_clip_weights: Any, train_set: ImageSet) -> None:
    """Both fit and score in [0, 1]; few-shot keeps the first k training images' embeddings, and on one of those
    references its few-shot part is 0, so score and map are half the zero-shot ones (anomalib's averaging)."""
    weights = random_clip_weights(SMALL)
    zero, few = make(weights), make(weights, k_shot=3, class_name="tile")
    assert zero.fit(train_set)["k_shot"] == 0 and few.fit(train_set)["k_shot"] == 3
    params, arrays = zero.state()
    assert set(arrays) == {"text_embeddings"} and arrays["text_embeddings"].shape == (2, 384)
    few_params, arrays = few.state()
    assert arrays["patch_embeddings"].shape == (3, 49, 384)
    assert arrays["window_embeddings0"].shape == (3, 36, 384) and arrays["window_embeddings1"].shape == (3, 25, 384)
    assert params["backbone"] == f"open_clip/{SMALL}"
    ref = next(train_set.batches(1)).images  # the first training image: a few-shot reference
    z, f = zero.predict(ref), few.predict(ref)
    assert 0 < z.score[0] < 1 and z.anomaly_map.shape == (1, 1, 224, 224)
    # the class name changes the prompts, hence the zero-shot part: compare with a zero-shot model of "tile"
    zt = make(weights, class_name="tile")
    zt.fit(train_set)
    zt_pred = zt.predict(ref)
    assert zt_pred.score[0] != pytest.approx(z.score[0], abs=1e-6)
    np.testing.assert_allclose(f.score, zt_pred.score / 2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(f.anomaly_map, zt_pred.anomaly_map / 2, rtol=1e-4, atol=1e-5)
    other = few.predict(texture(np.random.default_rng(9), defect=True))
    assert other.score[0] > f.score[0]  # not a reference: a few-shot distance above 0
    swapped = {**arrays, "window_embeddings1": arrays["window_embeddings0"]}  # a stored model of other scales
    with pytest.raises(ModelError, match=r"window_embeddings1 \(3, 36, 384\), expected \(3, 25, 384\)"):
        make(weights, k_shot=3).load_state(few_params, swapped)
    with pytest.raises(ModelError, match="lacks array 'patch_embeddings'"):
        make(weights, k_shot=3).load_state(few_params, {"text_embeddings": arrays["text_embeddings"]})


def test_real_architecture_layout(random_clip_weights: Any, tmp_path: Path) -> None:
    """anomalib's CLIP, ViT-B-16-plus-240 (random weights in its layout): image [1, 640], windows [1, 196, 640] and
    [1, 169, 640], patches [1, 225, 896], as anomalib documents; a checkpoint of another architecture is refused."""
    clip = load_clip("ViT-B-16-plus-240", random_clip_weights("ViT-B-16-plus-240"))
    enc = ClipWindowEncoder(clip.visual, [window_masks((15, 15), 2), window_masks((15, 15), 3)])
    with torch.inference_mode():
        image, windows, patches = enc(torch.zeros(1, 3, 240, 240))
    assert image.shape == (1, 640) and patches.shape == (1, 225, 896)
    assert [tuple(w.shape) for w in windows] == [(1, 196, 640), (1, 169, 640)]
    with pytest.raises(ModelError, match="does not match the architecture"):
        load_clip("ViT-B-16-plus-240", random_clip_weights(SMALL))


def test_training_checkpoint_with_module_prefix_loads(random_clip_weights: Any, tmp_path: Path) -> None:
    """The original open_clip release is a training checkpoint: ``{"state_dict": {"module.<key>": ...}, "epoch"}``,
    read with ``torch.load(weights_only=True)``."""
    from safetensors.torch import load_file

    sd = load_file(str(random_clip_weights(SMALL)))
    path = tmp_path / "epoch_31.pt"
    torch.save({"epoch": 31, "name": "test", "state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    clip = load_clip(SMALL, path)
    torch.testing.assert_close(clip.visual.proj.detach(), sd["visual.proj"])


def test_without_weights_the_error_says_what_to_give(train_set: ImageSet, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no weights configured: set `weights` to a local open_clip checkpoint"):
        make(None).fit(train_set)
    missing = tmp_path / "nowhere" / "open_clip_model.safetensors"
    with pytest.raises(ModelError, match="weights file not found: .*nowhere/open_clip_model.safetensors; give a "
                                         "local open_clip checkpoint .*laion400m_e31"):
        make(missing).fit(train_set)
    with pytest.raises(ModelError, match="weights file not found"):
        make(missing).backbone_identity()  # also when loading a stored model
    with pytest.raises(ValueError, match="k_shot is 9 but only 6 training images"):
        make(missing, k_shot=9).fit(train_set)


@pytest.mark.parametrize(("cfg", "message"), [
    ({"input_size": [256, 256]}, r"input_size must be \[240, 240\], the input size of CLIP ViT-B-16-plus-240"),
    ({"input_size": [240, 240], "scales": [2, 16]}, "a window cannot be larger than the 15x15 patch grid"),
    ({"input_size": [240, 240], "scales": [0]}, "scales must be distinct window sides >= 1"),
    ({"backbone": "RN50", "input_size": [224, 224]}, "is not a plain ViT image tower"),
    ({"backbone": "ViT-X-99"}, "unknown CLIP architecture 'ViT-X-99'"),
])
def test_config_errors(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Winclip.Config.model_validate({"kind": "winclip", **cfg})
    assert Winclip.Config.model_validate({"kind": "winclip"}).input_size == (240, 240)


def test_example_takes_the_weights_from_the_environment(tmp_path: Path) -> None:
    from streamad.config import load_config
    from streamad.errors import ConfigError

    example = Path(__file__).resolve().parents[2] / "examples" / "magnetic_tile_winclip.yaml"
    weights = str(tmp_path / "open_clip_model.safetensors")
    cfg = load_config(example, env={"WINCLIP_WEIGHTS": weights})
    model = cfg.operators[0].model
    assert model.kind == "winclip" and model.weights == weights and model.backbone == "ViT-B-16-plus-240"
    with pytest.raises(ConfigError, match="WINCLIP_WEIGHTS is not set"):
        load_config(example, env={})


def test_benchmark_leaves_winclip_out_without_weights() -> None:
    """benchmarks/image_models.py: without WINCLIP_WEIGHTS the WinCLIP row is skipped with the reason printed."""
    bench = load_benchmark("image_models")
    assert "winclip" in bench.VIDEO_MODELS
    assert "needs CLIP weights" in bench.skip_reason("winclip", {}) and "WINCLIP_WEIGHTS" in bench.skip_reason(
        "winclip", {})
    assert bench.skip_reason("winclip", {"WINCLIP_WEIGHTS": "/w/open_clip_model.safetensors"}) is None
    assert bench.skip_reason("padim", {}) is None
