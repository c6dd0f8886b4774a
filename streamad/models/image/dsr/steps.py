"""DSR's three training phases as optimisation steps on a batch ``x (N, 3, h, w) float32`` in 0-255 (the
preprocessed training images), each returning its total loss as a float (``last``: the last step's parts):

* :class:`DiscreteStep` (phase 1; anomalib downloads it instead, trained on ImageNet): the discrete latent model's
  VQ-VAE loss (:meth:`~streamad.models.image.dsr.discrete.DiscreteLatentModel.vq_loss`).
* :class:`SecondStageStep` (phase 2, anomalib ``Dsr.training_step`` before the upsampling phase): the frozen
  discrete model quantises the clean image, :class:`~streamad.models.image.dsr.anomaly_generator.DsrAnomalyGenerator`
  replaces codes under Perlin masks, the general decoder decodes the anomalous features (no gradient), the subspace
  restriction modules and the object-specific decoder re-project them, the anomaly detection module segments;
  :func:`~streamad.models.image.dsr.loss.second_stage_losses`.
* :class:`ThirdStageStep` (phase 3): image-level anomalies (DRAEM's
  :class:`~streamad.models.image.draem.augmenter.AnomalyGenerator`: Perlin masks filled with procedural colour
  textures, the "smudges"), everything but the upsampling module frozen,
  :func:`~streamad.models.image.dsr.loss.third_stage_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamad.models.image.draem.augmenter import AnomalyGenerator
from streamad.models.image.dsr.anomaly_generator import DsrAnomalyGenerator, replace_codes
from streamad.models.image.dsr.loss import second_stage_losses, third_stage_loss
from streamad.models.image.dsr.network import DsrNetwork

__all__ = ["DiscreteStep", "SecondStageStep", "ThirdStageStep"]


class _Step:
    """Shared bookkeeping: ``optimizer`` over the phase's parameters, ``last`` losses (floats)."""

    def __init__(self, network: DsrNetwork, optimizer: torch.optim.Optimizer) -> None:
        self.network, self.optimizer = network, optimizer
        self.last: dict[str, float] = {}

    def _apply(self, parts: dict[str, torch.Tensor]) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        parts["total"].backward()
        self.optimizer.step()
        self.last = {k: float(v.detach()) for k, v in parts.items()}
        return self.last["total"]


class DiscreteStep(_Step):
    """Phase 1: one Adam step of the discrete model (module doc); the first call sets the codebooks from its batch
    (:meth:`~streamad.models.image.dsr.discrete.DiscreteLatentModel.init_codebooks`, drawn from ``generator``)."""

    def __init__(self, network: DsrNetwork, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
        super().__init__(network, optimizer)
        self.generator, self.started = generator, False

    def __call__(self, x: torch.Tensor) -> float:
        disc = self.network.discrete
        if not self.started:
            disc.init_codebooks(x * (1.0 / 255.0), self.generator)
            self.started = True
        disc.train(True)
        try:
            return self._apply({"total": disc.vq_loss(x * (1.0 / 255.0))})
        finally:
            disc.train(False)


class SecondStageStep(_Step):
    """Phase 2: one Adam step of the restriction modules, object-specific decoder and detection module.

    Args:
        generator: masks and strengths of the latent anomalies.
    """

    def __init__(self, network: DsrNetwork, optimizer: torch.optim.Optimizer, generator: DsrAnomalyGenerator) -> None:
        super().__init__(network, optimizer)
        self.generator = generator

    def __call__(self, x: torch.Tensor) -> float:
        net, gen = self.network, self.generator
        clean = x * (1.0 / 255.0)
        n = clean.shape[0]
        with torch.no_grad():
            q_hi, q_lo = net.discrete.quantise(clean)
            m_lo, m_hi, mask = gen.masks(n)
            a_hi = replace_codes(q_hi, net.discrete.vq_top.codebook.weight, m_hi, gen.strengths(n), gen.generator)
            a_lo = replace_codes(q_lo, net.discrete.vq_bot.codebook.weight, m_lo, gen.strengths(n), gen.generator)
            general = net.discrete.decoder(net.discrete.join(a_hi, a_lo))
        f_hi, f_lo, obj = net.restrict(a_hi, a_lo)
        logits = net.detection(torch.cat([obj.detach(), general], 1))
        return self._apply(second_stage_losses(f_hi, f_lo, q_hi, q_lo, clean, obj, logits, mask))


class ThirdStageStep(_Step):
    """Phase 3: one Adam step of the upsampling module.

    Args:
        generator: DRAEM's image-level anomaly generator.
    """

    def __init__(self, network: DsrNetwork, optimizer: torch.optim.Optimizer, generator: AnomalyGenerator) -> None:
        super().__init__(network, optimizer)
        self.generator = generator

    def __call__(self, x: torch.Tensor) -> float:
        net = self.network
        augmented, mask = self.generator(x * (1.0 / 255.0))
        with torch.no_grad():
            obj, general, logits = net.detect(augmented)
        net.upsampling.train(True)
        try:
            return self._apply({"total": third_stage_loss(net.upsample(obj, general, F.softmax(logits, 1)), mask)})
        finally:
            net.upsampling.train(False)
