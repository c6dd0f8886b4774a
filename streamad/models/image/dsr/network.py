"""DSR's inference network (paper figure 2; anomalib ``DsrModel.forward`` when testing):

1. the discrete latent model quantises the image (``Q_hi``, ``Q_lo``,
   :class:`~streamad.models.image.dsr.discrete.DiscreteLatentModel`);
2. the general decoder reconstructs the image from them (``I_gen``); the subspace restriction modules
   (:class:`~streamad.models.image.dsr.subspace.SubspaceRestriction`) re-project them, they are quantised again and
   the object-specific decoder reconstructs ``I_spc``;
3. the anomaly detection module (DRAEM's U-Net,
   :class:`~streamad.models.image.draem.networks.DiscriminativeSubNetwork` with 6 input channels) segments
   ``(I_spc, I_gen)`` into 2-class logits ``M``;
4. the upsampling module (the same U-Net, 8 input channels: ``I_spc``, ``I_gen``, ``softmax(M)``) refines it.

Anomaly map: the upsampling module's anomalous-class softmax probability, 0-1. Image score (anomalib): the maximum
of ``softmax(M)``'s anomalous class smoothed by a 21x21 mean filter (stride 1, zero padding counted), 0-1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamad.models.image.base import ImageNetwork
from streamad.models.image.draem.networks import DiscriminativeSubNetwork
from streamad.models.image.dsr.discrete import DiscreteLatentModel, GeneralDecoder
from streamad.models.image.dsr.subspace import SubspaceRestriction

__all__ = ["DsrNetwork", "SCORE_WINDOW"]

SCORE_WINDOW = 21
"""Side of the mean filter before the image score's maximum (anomalib ``DsrModel``)."""


class DsrNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 -> (anomaly_map (N, 1, h, w) float32 0-1, score (N,) float32 0-1)`` (module doc).

    Args:
        size: input ``(h, w)``, multiples of 32. hiddens, layers, res_hiddens, num_embeddings, embedding_dim: the
            discrete model's (anomalib 128, 2, 64, 4096, 128). subspace_width: the subspace restriction modules'
            base width (anomalib 64). detection_width / upsampling_width: the two U-Nets' (anomalib 64 / 64).
    """

    def __init__(self, size: tuple[int, int], hiddens: int, layers: int, res_hiddens: int, num_embeddings: int,
                 embedding_dim: int, subspace_width: int, detection_width: int, upsampling_width: int) -> None:
        super().__init__(size)
        d = int(embedding_dim)
        self.discrete = DiscreteLatentModel(hiddens, layers, res_hiddens, num_embeddings, d)
        self.restrict_hi = SubspaceRestriction(d, subspace_width)
        self.restrict_lo = SubspaceRestriction(d, subspace_width)
        self.object_decoder = GeneralDecoder(2 * d, hiddens, layers, res_hiddens)
        self.detection = DiscriminativeSubNetwork(detection_width, in_channels=6)
        self.upsampling = DiscriminativeSubNetwork(upsampling_width, in_channels=8)

    def restrict(self, q_hi: torch.Tensor, q_lo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantised features ``-> (F~_hi, F~_lo, I_spc (N, 3, H, W))``: both restriction outputs before their
        re-quantisation and the object-specific decoder's image."""
        disc = self.discrete
        f_hi, r_hi = self.restrict_hi(q_hi, disc.vq_top)
        f_lo, r_lo = self.restrict_lo(q_lo, disc.vq_bot)
        return f_hi, f_lo, self.object_decoder(disc.join(r_hi, r_lo))

    def detect(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x (N, 3, H, W) 0-1 -> (I_spc, I_gen, detection logits M (N, 2, H, W))``."""
        q_hi, q_lo = self.discrete.quantise(x)
        _, _, obj = self.restrict(q_hi, q_lo)
        general = self.discrete.decoder(self.discrete.join(q_hi, q_lo))
        return obj, general, self.detection(torch.cat([obj, general], 1))

    def upsample(self, obj: torch.Tensor, general: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """The upsampling module's logits ``(N, 2, H, W)`` from ``I_spc``, ``I_gen`` and ``softmax(M)``."""
        return self.upsampling(torch.cat([obj, general, probs], 1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        obj, general, logits = self.detect(self.preprocess(images) * (1.0 / 255.0))
        probs = F.softmax(logits, dim=1)
        amap = F.softmax(self.upsample(obj, general, probs), dim=1)[:, 1:2]
        smooth = F.avg_pool2d(probs[:, 1:2], SCORE_WINDOW, stride=1, padding=SCORE_WINDOW // 2)
        return amap, smooth.flatten(1).amax(1)
