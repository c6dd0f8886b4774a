"""DSR (Zavrtanik, Kristan, Skocaj, "DSR - A dual subspace re-projection network for surface anomaly detection",
ECCV 2022, arXiv 2208.01521), following anomalib's ``Dsr`` / ``DsrModel`` / ``DsrAnomalyGenerator`` and its
second- and third-stage losses.

Three training phases (:mod:`~streamad.models.image.dsr.steps`), each one :func:`~streamad.models.image.training.
train_epochs` loop (progress bar, an error on a loss that is not finite):

1. the discrete latent model (a two-level VQ-VAE). anomalib downloads one trained on ImageNet, which is impossible
   here: it is trained on the training images themselves for ``discrete_epochs`` epochs, or loaded from the
   user's file ``discrete_weights`` (a state dict of :class:`~streamad.models.image.dsr.discrete.
   DiscreteLatentModel` at the same widths);
2. the subspace restriction modules, object-specific decoder and anomaly detection module on anomalies made in the
   quantised feature space, ``max_epochs`` epochs with early stopping on the validation image AUROC (the image score
   depends only on these parts) and the best epoch's weights kept;
3. the upsampling module on image-level anomalies, ``upsampling_epochs`` epochs.

Map and score: :mod:`~streamad.models.image.dsr.network`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from streamad.models.image.draem.augmenter import AnomalyGenerator
from streamad.models.image.draem.networks import check_unet_size
from streamad.models.image.dsr.anomaly_generator import DsrAnomalyGenerator
from streamad.models.image.dsr.network import DsrNetwork
from streamad.models.image.dsr.steps import DiscreteStep, SecondStageStep, ThirdStageStep
from streamad.models.image.image_set import ImageSet
from streamad.models.image.training import (TrainedImageModel, TrainedImageModelConfig, TrainingSetup,
                                            train_epochs)
from streamad.models.image.whole_network import WholeNetworkState
from streamad.registry import IMAGE_MODELS

__all__ = ["Dsr", "load_discrete_weights"]


def load_discrete_weights(net: DsrNetwork, path: str | Path) -> None:
    """Load a discrete latent model's state dict (``torch.save(model.discrete.state_dict(), path)``) into
    ``net.discrete`` with ``torch.load(..., weights_only=True)`` (no pickle code runs).

    Raises:
        ValueError: ``path`` is not a file, or its tensors do not match the configured widths (named).
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"dsr: discrete_weights {str(path)!r} is not a file")
    state = torch.load(p, map_location="cpu", weights_only=True)
    try:
        net.discrete.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ValueError(f"dsr: discrete_weights {str(path)!r} does not fit the discrete model's widths "
                         f"(num_hiddens, num_embeddings, embedding_dim ...): {exc}") from None


@IMAGE_MODELS.register("dsr")
class Dsr(WholeNetworkState, TrainedImageModel):
    """DSR (see the module doc and ``README.md`` beside this file).

    Config:
        input_size: sides multiples of 32 (the U-Nets pool 5 times). batch_size: 8.
        lr: Adam's for phases 2 and 3 (2e-4). discrete_lr: Adam's for phase 1 (1e-3).
        num_hiddens, num_residual_layers, num_residual_hiddens, num_embeddings, embedding_dim: the discrete
            model's (anomalib ``DsrModel`` 128, 2, 64, 4096, 128). subspace_width, detection_width,
            upsampling_width: base widths of the restriction modules and the two U-Nets (anomalib 64, 64, 64).
        latent_anomaly_strength: lower bound of the share of the codebook replacement codes come from (0.2).
        p_anomalous: share of each batch with an anomaly, in phases 2 and 3 (0.5).
        discrete_epochs: phase 1 epochs (ignored with ``discrete_weights``). max_epochs / patience: phase 2.
        upsampling_epochs: phase 3 epochs.
        discrete_weights: a discrete latent model state dict file to load instead of phase 1.
        backbone, weights, layers: unused (no pretrained network).

    Raises:
        pydantic.ValidationError: an ``input_size`` side not a multiple of 32, an odd ``num_hiddens``.
    """

    discrete_codes = True  # the vector quantiser's argmin: an export may pick another code at a near-tie

    version = "1"
    array_prefix = "dsr"
    score_meaning = ("maximum of the anomaly detection module's anomalous-class probability under a 21x21 mean "
                     "filter, 0-1")

    class Config(TrainedImageModelConfig):
        kind: Literal["dsr"] = "dsr"
        batch_size: int = Field(8, ge=1)
        lr: float = Field(2e-4, gt=0)
        discrete_lr: float = Field(1e-3, gt=0)
        num_hiddens: int = Field(128, ge=2)
        num_residual_layers: int = Field(2, ge=0)
        num_residual_hiddens: int = Field(64, ge=1)
        num_embeddings: int = Field(4096, ge=2)
        embedding_dim: int = Field(128, ge=1)
        subspace_width: int = Field(64, ge=1)
        detection_width: int = Field(64, ge=1)
        upsampling_width: int = Field(64, ge=1)
        latent_anomaly_strength: float = Field(0.2, gt=0, le=1)
        p_anomalous: float = Field(0.5, gt=0, le=1)
        discrete_epochs: int = Field(10, ge=1)
        upsampling_epochs: int = Field(2, ge=1)
        discrete_weights: str | None = None

        @model_validator(mode="after")
        def _check(self) -> "Dsr.Config":
            check_unet_size("dsr", self.input_size)
            if self.num_hiddens % 2:
                raise ValueError(f"dsr: num_hiddens must be even, got {self.num_hiddens}")
            return self

    def backbone_identity(self) -> dict[str, str]:
        """DSR loads no pretrained backbone: ``{"backbone": "none", "weights_sha256": "none"}`` (a
        ``discrete_weights`` file is copied into the fitted model's arrays)."""
        return {"backbone": "none", "weights_sha256": "none"}

    def _network(self) -> DsrNetwork:
        """A fresh network initialised from ``seed`` (global random state untouched), in eval mode."""
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(c.seed))
            net = DsrNetwork(self.input_size, c.num_hiddens, c.num_residual_layers, c.num_residual_hiddens,
                             c.num_embeddings, c.embedding_dim, c.subspace_width, c.detection_width,
                             c.upsampling_width)
        return net.eval()

    def _run_phase(self, name: str, step: Any, train: ImageSet, epochs: int, progress: bool) -> dict[str, Any]:
        net = self.require_network()
        c = self.config

        def on_batch(batch: Any) -> float:
            return step(net.preprocess(torch.from_numpy(batch.images)))

        log = train_epochs(on_batch, train, c.batch_size, epochs, progress=progress, seed=c.seed,
                           desc=f"dsr {name}")
        return {**log.to_json(), "last_losses": {k: round(v, 6) for k, v in step.last.items()}}

    def _training(self) -> TrainingSetup:
        """Phase 2's setup: a fresh network, phase 1 as its ``prepare`` (trained or loaded), the Adam of the
        restriction modules, object-specific decoder and detection module, the :class:`SecondStageStep`.

        Raises:
            ValueError: a bad ``discrete_weights`` file (at ``prepare``).
        """
        c = self.config
        net = self._network()
        phase2 = nn.ModuleList([net.restrict_hi, net.restrict_lo, net.object_decoder, net.detection])
        h, w = self.input_size
        generator = DsrAnomalyGenerator((h // 4, w // 4), c.seed, c.p_anomalous, c.latent_anomaly_strength)
        opt = torch.optim.Adam(phase2.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self._step = SecondStageStep(net, opt, generator)

        def prepare(train: ImageSet, progress: bool) -> None:
            if c.discrete_weights is not None:
                load_discrete_weights(net, c.discrete_weights)
                self._discrete = {"loaded": str(c.discrete_weights)}
                return
            opt1 = torch.optim.Adam(net.discrete.parameters(), lr=c.discrete_lr)
            step1 = DiscreteStep(net, opt1, torch.Generator().manual_seed(c.seed))
            self._discrete = self._run_phase("discrete", step1, train, c.discrete_epochs, progress)
            first = next(train.batches(64)).images  # the first 64 training images, as they are
            self._discrete["codes_used"] = net.discrete.codes_used(net.preprocess(torch.from_numpy(first)) / 255.0)

        return TrainingSetup(net, phase2, step=self._step, prepare=prepare)

    def fit(self, train: ImageSet, validation: ImageSet | None = None, progress: bool = False) -> dict[str, Any]:
        """Phases 1 to 3 (module doc). The statistics are phase 2's (as :meth:`TrainedImageModel.fit`) plus
        ``last_losses`` (phase 2), ``discrete`` (phase 1's log, or the loaded file) and ``upsampling`` (phase 3's
        log); ``seconds`` covers all three.

        Raises:
            ValueError: no training image, a loss that is not finite (named by its phase), a bad
                ``discrete_weights`` file.
        """
        stats = super().fit(train, validation, progress)
        c = self.config
        net = self.require_network()
        h, w = self.input_size
        smudges = AnomalyGenerator((h, w), c.seed + 1, p_anomalous=c.p_anomalous)
        opt3 = torch.optim.Adam(net.upsampling.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        upsampling = self._run_phase("upsampling", ThirdStageStep(net, opt3, smudges), train, c.upsampling_epochs,
                                     progress)
        net.eval()
        seconds = stats["seconds"] + upsampling["seconds"]
        return {**stats, "seconds": round(seconds, 2), "last_losses": {k: round(v, 6) for k, v in
                                                                        self._step.last.items()},
                "discrete": self._discrete, "upsampling": upsampling}
