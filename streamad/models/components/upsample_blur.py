"""Resize a low-resolution anomaly map to the input size and blur it, as two matrix products.

anomalib's image models (PaDiM ``AnomalyMapGenerator``, PatchCore, CFA) upsample the patch-level map to the input
size (``F.interpolate``, bilinear or nearest) and then apply ``GaussianBlur2d`` (sigma 4, a 33-tap kernel, reflect
border). Both steps are linear and separable, so the whole of it is ``K_v @ map @ K_h^T`` with ``K_v (H, h)`` =
(vertical blur) x (vertical resize) and ``K_h (W, w)`` likewise. The result equals upsample-then-blur up to float
rounding (the unit tests compare them), and it costs about ``H*h*w + H*w*W`` multiplications (0.4 M for a 30x45
map to 240x360) instead of an interpolation and two 33-tap convolutions over the full-size map (about 6 M, and
OpenVINO runs 1-channel convolutions slowly: 2.2 of PaDiM's 10.2 ms a frame on Ped2, measured with its per-layer
counters). The matrices follow torch's resize rules (half-pixel bilinear, floor nearest) and ``GaussianBlur2d``'s
border rule; the unit tests check them against the torch ops they replace.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from streamad.models.components.gaussian_blur import GaussianBlur2d

__all__ = ["UpsampleBlur"]


def _resize_matrix(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """``(n_out, n_in) float64``: torch's 1-D ``mode`` resize from ``n_in`` to ``n_out`` samples as a matrix.

    Source positions are computed in float32 as ATen's CPU kernels do for float32 maps: half-pixel centres clamped
    at 0 for bilinear (``align_corners=False``), ``floor(dst * n_in / n_out)`` for nearest.
    """
    scale = np.float32(n_in / n_out)
    dst = np.arange(n_out, dtype=np.float32)
    m = np.zeros((n_out, n_in))
    if mode == "nearest":
        m[np.arange(n_out), np.minimum(np.floor(dst * scale).astype(np.int64), n_in - 1)] = 1.0
        return m
    src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = src.astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (src - i0.astype(np.float32)).astype(np.float64)
    np.add.at(m, (np.arange(n_out), i0), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), i1), frac)
    return m


def _blur_matrix(n: int, kernel: np.ndarray, border: str) -> np.ndarray:
    """``(n, n) float64``: a 1-D "same" correlation with the odd ``kernel (k,)`` over a ``border``-padded axis
    (``"reflect"``: the edge sample is not repeated, torch's ``F.pad`` mode; ``"replicate"``)."""
    pad = len(kernel) // 2
    src = np.arange(n)[:, None] + np.arange(-pad, pad + 1)[None, :]  # (n, k) source index of each tap
    if border == "reflect":
        src = np.abs(src)
        src = np.where(src > n - 1, 2 * (n - 1) - src, src)
    src = np.clip(src, 0, n - 1)
    m = np.zeros((n, n))
    np.add.at(m, (np.repeat(np.arange(n), len(kernel)), src.ravel()), np.tile(kernel, n))
    return m


class UpsampleBlur(nn.Module):
    """``(N, C, h, w) float32`` map -> ``(N, C, H, W) float32``: resize to ``size`` then Gaussian blur.

    The same values as ``GaussianBlur2d(sigma)(F.interpolate(x, size, mode=mode))`` (bilinear with
    ``align_corners=False``) within float rounding; see the module doc.

    Args:
        size: output ``(H, W)`` in pixels (the model's input size).
        sigma: blur standard deviation in pixels (anomalib 4).
        mode: ``"bilinear"`` (PaDiM, CFA) or ``"nearest"`` (PatchCore).

    The ``(H, h)`` and ``(W, w)`` matrices are built on the first map of each ``(h, w)`` and kept; in an exported
    graph they are constants (the map size is fixed by the model's input size).

    Raises:
        ValueError: ``sigma <= 0`` or an unknown ``mode``.
    """

    def __init__(self, size: tuple[int, int], sigma: float = 4.0,
                 mode: Literal["bilinear", "nearest"] = "bilinear") -> None:
        super().__init__()
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"UpsampleBlur: mode must be 'bilinear' or 'nearest', got {mode!r}")
        self.size = (int(size[0]), int(size[1]))
        self.mode = mode
        self.blur = GaussianBlur2d(sigma)
        self._matrices: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def sigma(self) -> float:
        """The blur's standard deviation in pixels."""
        return self.blur.sigma

    def matrices(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(K_v (H, h), K_h (W, w)) float32`` for a map of ``h`` x ``w`` cells."""
        key = (int(h), int(w))
        if key not in self._matrices:
            big_h, big_w = self.size
            g = self.blur.kernel_h.reshape(-1).double().numpy()
            border = "reflect" if min(big_h, big_w) > self.blur.pad else "replicate"  # GaussianBlur2d's rule
            k_v = _blur_matrix(big_h, g, border) @ _resize_matrix(key[0], big_h, self.mode)
            k_h = _blur_matrix(big_w, g, border) @ _resize_matrix(key[1], big_w, self.mode)
            # numpy, not torch ops: a trace (export) sees the matrices as constants on every call; normal tensors
            # even when first built under inference mode, so that a later trace or training step can use them
            with torch.inference_mode(False):
                self._matrices[key] = (torch.from_numpy(k_v).float(), torch.from_numpy(k_h).float())
        return self._matrices[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k_v, k_h = self.matrices(x.shape[-2], x.shape[-1])
        return torch.matmul(torch.matmul(k_v.to(x.dtype), x), k_h.to(x.dtype).T)
