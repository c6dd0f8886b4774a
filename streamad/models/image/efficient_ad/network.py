"""EfficientAD's inference network (Batzner et al., arXiv 2303.14535, Sec. 3.4 and Algorithm 1; anomalib
``EfficientAdModel.forward`` at inference): teacher, student and autoencoder on the same image, two maps, each
normalised by its quantiles on normal validation images, averaged."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from streamad.models.image.base import ImageNetwork
from streamad.models.image.efficient_ad.autoencoder import AutoEncoder
from streamad.models.image.efficient_ad.pdn import PatchDescriptionNetwork
from streamad.models.image.image_set import ImageSet

__all__ = ["EfficientAdNetwork", "MAP_QUANTILES", "PAD"]

MAP_QUANTILES = (0.9, 0.995)  # the paper's q_a and q_b
PAD = 4  # pad_maps: the unpadded PDN's grid lacks 4 cells on each side compared with padding=True


class EfficientAdNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 -> (anomaly_map (N, 1, h, w) float32, score (N,) float32)``.

    Map: ``0.5 * st_n + 0.5 * ae_n`` with ``st = mean_c (T_n(x) - S(x)[:, :C])^2`` (``T_n`` the teacher normalised
    per channel by :attr:`teacher_mean` / :attr:`teacher_std`), ``ae = mean_c (A(x) - S(x)[:, C:])^2``, each zero-padded
    by 4 cells (``pad_maps`` without ``padding``), bilinearly resized to the input and normalised as
    ``0.1 * (m - q_a) / (q_b - q_a)`` with its :attr:`quantiles` (so ``q_a`` maps to 0 and ``q_b`` to 0.1). Score: the
    map's maximum. No blur (as anomalib).

    Attributes:
        teacher_mean, teacher_std: ``(1, C, 1, 1)`` float32 buffers. quantiles: ``(4,)`` float32
            ``[q_a st, q_b st, q_a ae, q_b ae]`` (``[0, 0.1, 0, 0.1]``, the identity, until measured).

    Args:
        size: input ``(h, w)``. out_channels: the teacher's ``C``. model_size: ``small`` / ``medium``.
        padding, pad_maps: as anomalib.
    """

    def __init__(self, size: tuple[int, int], out_channels: int, model_size: Literal["small", "medium"] = "small",
                 padding: bool = False, pad_maps: bool = True) -> None:
        super().__init__(size)
        self.channels = int(out_channels)
        self.teacher = PatchDescriptionNetwork(out_channels, model_size, padding)
        self.student = PatchDescriptionNetwork(2 * out_channels, model_size, padding)
        self.autoencoder = AutoEncoder(out_channels, self.size, padding)
        self.pad = PAD if (pad_maps and not padding) else 0
        self.register_buffer("teacher_mean", torch.zeros(1, out_channels, 1, 1))
        self.register_buffer("teacher_std", torch.ones(1, out_channels, 1, 1))
        self.register_buffer("quantiles", torch.tensor([0.0, 0.1, 0.0, 0.1]))
        self.teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def teacher_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, h, w)`` 0-1 -> the teacher's normalised features ``(N, C, h', w')``, without gradient."""
        with torch.no_grad():
            return (self.teacher(x) - self.teacher_mean) / self.teacher_std

    def raw_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, 3, h, w)`` 0-1 -> the unnormalised ``(st, ae)`` maps, each ``(N, 1, h, w)`` at the input size."""
        t = self.teacher_features(x)
        s = self.student(x)
        a = self.autoencoder(x)
        c = self.channels
        st = ((t - s[:, :c]) ** 2).mean(1, keepdim=True)
        ae = ((a - s[:, c:]) ** 2).mean(1, keepdim=True)
        out = []
        for m in (st, ae):
            if self.pad:
                m = F.pad(m, (self.pad, self.pad, self.pad, self.pad))
            out.append(F.interpolate(m, size=self.size, mode="bilinear", align_corners=False))
        return out[0], out[1]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        st, ae = self.raw_maps(self.preprocess(images) / 255.0)
        q = self.quantiles
        st = 0.1 * (st - q[0]) / (q[1] - q[0])
        ae = 0.1 * (ae - q[2]) / (q[3] - q[2])
        amap = 0.5 * st + 0.5 * ae
        return amap, amap.flatten(1).amax(1)

    @torch.no_grad()
    def set_teacher_statistics(self, images: ImageSet, batch_size: int) -> None:
        """Set :attr:`teacher_mean` / :attr:`teacher_std` to the per-channel mean and standard deviation of the
        teacher's features over every position of every image of ``images`` (anomalib ``teacher_channel_mean_std``).

        Raises:
            ValueError: an empty set.
        """
        if len(images) == 0:
            raise ValueError("efficient_ad: no training image for the teacher's channel statistics")
        total = torch.zeros(self.channels, dtype=torch.float64)
        squares = torch.zeros(self.channels, dtype=torch.float64)
        count = 0
        for b in images.batches(batch_size):
            f = self.teacher(self.preprocess(torch.from_numpy(b.images)) / 255.0).double()
            total += f.sum((0, 2, 3))
            squares += (f ** 2).sum((0, 2, 3))
            count += f.shape[0] * f.shape[2] * f.shape[3]
        mean = total / count
        std = (squares / count - mean ** 2).clamp_min(1e-12).sqrt()
        self.teacher_mean = mean.float().view(1, -1, 1, 1)
        self.teacher_std = std.float().view(1, -1, 1, 1)

    @torch.no_grad()
    def set_map_quantiles(self, images: ImageSet, batch_size: int) -> int:
        """Set :attr:`quantiles` to ``q_a = 0.9`` and ``q_b = 0.995`` quantiles of the raw st and ae maps over the
        normal images of ``images`` (label 0; all of them when none is labelled 0; anomalib ``map_norm_quantiles``).

        Returns:
            how many images were used.

        Raises:
            ValueError: an empty set.
        """
        labels = np.asarray(images.labels)
        keep = labels == 0 if (labels == 0).any() else np.ones(len(labels), bool)
        if not keep.any():
            raise ValueError("efficient_ad: no image to measure the map quantiles on")
        was = self.training
        self.train(False)
        sts, aes = [], []
        start = 0
        for b in images.batches(batch_size):
            sel = keep[start:start + len(b.images)]
            start += len(b.images)
            if sel.any():
                st, ae = self.raw_maps(self.preprocess(torch.from_numpy(b.images[sel])) / 255.0)
                sts.append(st.numpy().ravel())
                aes.append(ae.numpy().ravel())
        self.train(was)
        st_all, ae_all = np.concatenate(sts), np.concatenate(aes)
        qa, qb = MAP_QUANTILES
        q = [np.quantile(st_all, qa), np.quantile(st_all, qb), np.quantile(ae_all, qa), np.quantile(ae_all, qb)]
        # a flat map (q_a == q_b) would divide by zero: keep the span positive
        q[1], q[3] = max(q[1], q[0] + 1e-12), max(q[3], q[2] + 1e-12)
        self.quantiles = torch.tensor(q, dtype=torch.float32)
        return int(keep.sum())
