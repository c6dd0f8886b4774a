"""U-Flow's U-shaped normalising flow (Tailanian, Pardo, Musé, "U-Flow: A U-shaped Normalizing Flow for Anomaly
Detection with Unsupervised Threshold", arXiv 2211.12353, section 3.2 and figure 2), in the form of anomalib's
``UflowModel.build_flow`` / ``build_flow_stage``.

The input is one feature map per scale, fine to coarse, each scale half the resolution of the one before
(``(N, C_l, h_l, w_l)`` with ``h_l = 2 h_(l+1)``, ``w_l = 2 w_(l+1)``). Starting from the coarsest scale:

1. a flow stage (a :class:`~streamad.models.image.fastflow.flow.FlowBlock`: ``flow_steps`` affine coupling steps of
   FrEIA's ``AllInOneBlock`` form, 3x3 subnets on even steps and 1x1 on odd ones, hard permutations) maps the
   stage input to ``y`` with ``D`` channels;
2. split along the channels (anomalib's ``Split`` with ``section_sizes = (D // 8 * 4, D - D // 8 * 4)``): the first
   ``D // 8 * 4`` channels go up, the other ``D - D // 8 * 4`` are this scale's latent variable ``z_l``;
3. the upward part is upsampled invertibly, ``(N, 4c, h, w) -> (N, c, 2h, 2w)`` (a depth-to-space rearrangement,
   the role of FrEIA's ``IRevNetUpsampling``; a permutation of the values, so its log-determinant is 0), and
   concatenated after the next finer scale's features (anomalib's ``Concat`` of ``[features, upsampled]``);
4. repeat; the finest stage's whole output is the finest latent variable.

Split, upsampling and concatenation are volume-preserving, so ``log |det J|`` of the whole flow is the sum of the
stages' log-determinants. Only ``torch`` ops with static shapes (``pixel_shuffle`` is ONNX's ``DepthToSpace``): the
flow traces and exports to ONNX / OpenVINO.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from streamad.errors import ModelError
from streamad.models.image.fastflow.flow import FlowBlock

__all__ = ["UShapedFlow", "invertible_upsample", "upward_channels"]


def upward_channels(channels: int) -> int:
    """How many of a stage's ``channels`` output channels go up to the next finer scale: ``channels // 8 * 4``
    (anomalib's split; a multiple of 4, so the depth-to-space upsampling applies)."""
    return channels // 8 * 4


def invertible_upsample(x: torch.Tensor) -> torch.Tensor:
    """``(N, 4c, h, w) -> (N, c, 2h, 2w)`` float32: each group of 4 channels becomes a 2x2 block of pixels
    (depth-to-space, ``torch.nn.functional.pixel_shuffle`` with factor 2). Volume-preserving: ``log |det J| = 0``;
    the inverse is ``pixel_unshuffle``."""
    return F.pixel_shuffle(x, 2)


class UShapedFlow(nn.Module):
    """The U-shaped flow (see the module doc): features per scale ``[(N, C_l, h_l, w_l)]``, fine to coarse ->
    (latent variables ``[(N, D_l, h_l, w_l)]`` in the same order, ``log |det J|`` ``(N,)``), all float32.

    ``D_l`` (:attr:`latent_channels`): ``D - D // 8 * 4`` for every scale but the finest, the whole stage output
    ``D`` for the finest, where ``D`` is the stage's input channels (``C_l`` plus the upsampled channels from the
    coarser scale). The latents hold ``sum_l C_l h_l w_l`` values per image, as many as the features (invertible).

    Args:
        channels: ``C_l`` per scale, fine to coarse (at least one scale). flow_steps: coupling steps per stage
            (anomalib 4). hidden_ratio: subnet hidden channels per input channel (anomalib
            ``affine_subnet_channels_ratio``, 1.0). clamp: the soft clamp of the coupling scale (anomalib
            ``affine_clamp``, 2.0). seed: seeds the stages' channel permutations (stage ``k`` from the coarsest:
            ``seed + k``).

    Raises:
        ModelError: a coarser stage with fewer than 8 output channels (nothing to send up).
    """

    def __init__(self, channels: Sequence[int], flow_steps: int, hidden_ratio: float = 1.0, clamp: float = 2.0,
                 seed: int = 0) -> None:
        super().__init__()
        if not channels:
            raise ModelError("U-Flow needs at least one feature scale")
        self.feature_channels = [int(c) for c in channels]
        stages: list[FlowBlock] = []
        stage_in: list[int] = []
        latent: list[int] = []
        carried = 0
        for k, c in enumerate(reversed(self.feature_channels)):  # coarse to fine
            d = c + carried
            finest = k == len(self.feature_channels) - 1
            up = 0 if finest else upward_channels(d)
            if not finest and up == 0:
                raise ModelError(f"U-Flow: a stage of {d} channels has too few to send up to the finer scale "
                                 f"(needs at least 8); choose deeper layers")
            stages.append(FlowBlock(d, flow_steps, False, hidden_ratio, clamp, seed=seed + k))
            stage_in.append(d)
            latent.append(d - up)
            carried = up // 4
        self.stages = nn.ModuleList(stages)  # coarse to fine
        self.stage_channels = stage_in  # coarse to fine
        self.latent_channels = latent[::-1]  # fine to coarse, as the features

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Map ``features`` (fine to coarse) to their latent variables (fine to coarse) and ``log |det J|``."""
        latents: list[torch.Tensor] = []
        log_det = torch.zeros(features[0].shape[0], dtype=features[0].dtype, device=features[0].device)
        carried: torch.Tensor | None = None
        n = len(self.stages)
        for k, (stage, f) in enumerate(zip(self.stages, reversed(list(features)))):
            x = f if carried is None else torch.cat([f, carried], 1)
            y, ld = stage(x)
            log_det = log_det + ld
            if k == n - 1:
                latents.append(y)
            else:
                up = upward_channels(int(y.shape[1]))
                latents.append(y[:, up:])
                carried = invertible_upsample(y[:, :up])
        return latents[::-1], log_det
