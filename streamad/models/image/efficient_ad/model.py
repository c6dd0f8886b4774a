"""EfficientAD (Batzner, Heckler, König, "EfficientAD: Accurate Visual Anomaly Detection at Millisecond-Level
Latencies", WACV 2024, arXiv 2303.14535), following anomalib's ``EfficientAd`` / ``EfficientAdModel``.

* Teacher: a patch description network (PDN, :mod:`~streamad.models.image.efficient_ad.pdn`) pretrained to imitate
  a backbone's features (:mod:`~streamad.models.image.efficient_ad.teacher`: a user's file, or distilled in ``fit``
  from EfficientNet-Lite), frozen; its features are normalised per channel by their mean and standard deviation
  over the training images.
* Student: a PDN with twice the teacher's channels; the first half imitates the teacher (hard-feature loss, quantile
  0.999, plus the penalty loss on generic images), the second half the autoencoder
  (:mod:`~streamad.models.image.efficient_ad.losses`).
* Autoencoder (:mod:`~streamad.models.image.efficient_ad.autoencoder`): predicts the teacher's features of a
  colour-jittered image through a 64-value bottleneck.
* Training: Adam (lr 1e-4, weight decay 1e-5) over student and autoencoder, batch 1, the learning rate divided by
  10 after 95 % of the steps; steps are grouped in epochs of ``steps_per_epoch`` batches so that the shared loop
  (:func:`~streamad.models.image.training.train_module`) shows progress, stops on a NaN loss and early-stops on the
  validation set.
* Map (:class:`~streamad.models.image.efficient_ad.network.EfficientAdNetwork`): the student-teacher and
  autoencoder-student maps, each normalised with its 0.9 / 0.995 quantiles on the normal validation images, averaged;
  image score: the map's maximum.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from streamad.models.components.module_arrays import load_module_arrays, module_arrays
from streamad.models.image.efficient_ad.augment import grayscale, random_color_jitter
from streamad.models.image.efficient_ad.epoch_sample import EpochSample
from streamad.models.image.efficient_ad.generic_images import load_generic_images
from streamad.models.image.efficient_ad.losses import hard_feature_loss, penalty_loss
from streamad.models.image.efficient_ad.network import EfficientAdNetwork
from streamad.models.image.efficient_ad.teacher import distil_teacher, load_teacher
from streamad.models.image.image_set import ImageBatch, ImageSet
from streamad.models.image.training import TrainedImageModel, TrainedImageModelConfig, TrainingSetup, train_module
from streamad.registry import IMAGE_MODELS

__all__ = ["EfficientAd"]


@IMAGE_MODELS.register("efficient_ad")
class EfficientAd(TrainedImageModel):
    """EfficientAD with anomalib's parameters where the CPU allows (see the module doc and ``README.md`` beside
    this file).

    Config:
        model_size: ``small`` (EfficientAD-S, anomalib's default) or ``medium``. teacher_out_channels: the
            teacher's ``C`` (anomalib 384); the student has ``2 C``.
        teacher_weights: a local file with the teacher PDN's state dict (anomalib's key names ``conv1``..); when
            unset the teacher is distilled in ``fit`` from ``backbone`` / ``layers`` (default EfficientNet-Lite0
            ``layer2``, ``layer3``) on ``generic_images`` (else the training images) for at most ``distill_steps``
            steps of ``distill_batch_size`` random ``distill_crop``-pixel crops (Adam, ``distill_lr``) and
            ``distill_max_seconds``.
        generic_images: folders of images and / or video files standing in for the paper's ImageNet images (the
            penalty loss, and the teacher's distillation); at most ``generic_limit`` are read. Empty: no penalty
            loss.
        padding, pad_maps: as anomalib (``False``, ``True``).
        hard_quantile: the hard-feature loss's ``p_hard`` (the paper's and anomalib's 0.999): only the squared
            student-teacher differences at or above this quantile are averaged; 0 averages them all.
        lr, weight_decay: Adam (anomalib 1e-4, 1e-5). batch_size: training images per step (anomalib 1).
        steps_per_epoch: steps between validations (an epoch); max_epochs * steps_per_epoch bounds the steps
            (the paper: 70,000). patience: epochs without a better validation metric before stopping.
    """

    version = "1"
    score_meaning = ("largest mean of the student-teacher and autoencoder-student squared feature distances, each "
                     "scaled to 0.1 at its 0.995 quantile on normal validation images")

    class Config(TrainedImageModelConfig):
        kind: Literal["efficient_ad"] = "efficient_ad"
        layers: list[str] = Field(default_factory=lambda: ["layer2", "layer3"], min_length=1)
        model_size: Literal["small", "medium"] = "small"
        teacher_out_channels: int = Field(384, ge=1)
        teacher_weights: str | None = None
        generic_images: list[str] = Field(default_factory=list)
        generic_limit: int = Field(200, ge=1)
        distill_steps: int = Field(2000, ge=1)
        distill_batch_size: int = Field(8, ge=1)
        distill_crop: int = Field(64, ge=64)
        distill_lr: float = Field(1e-3, gt=0)
        distill_max_seconds: float | None = Field(None, gt=0)
        padding: bool = False
        pad_maps: bool = True
        hard_quantile: float = Field(0.999, ge=0, lt=1)
        lr: float = Field(1e-4, gt=0)
        weight_decay: float = Field(1e-5, ge=0)
        batch_size: int = Field(1, ge=1)
        steps_per_epoch: int = Field(100, ge=1)
        max_epochs: int = Field(10, ge=1)

        def model_post_init(self, context: Any, /) -> None:
            super().model_post_init(context)
            if min(self.input_size) < 64:
                raise ValueError(f"efficient_ad: input_size must be at least 64x64 (the PDN's 33-pixel patches and "
                                 f"the autoencoder's 5 halvings), got {list(self.input_size)}")
            if self.distill_crop > min(self.input_size):
                raise ValueError(f"efficient_ad: distill_crop {self.distill_crop} exceeds input_size "
                                 f"{list(self.input_size)}")

    def _network(self) -> EfficientAdNetwork:
        """A fresh network (teacher, student, autoencoder) initialised from ``seed``; global random state untouched."""
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(c.seed))
            return EfficientAdNetwork(self.input_size, c.teacher_out_channels, c.model_size, c.padding, c.pad_maps)

    def _teacher(self, net: EfficientAdNetwork, train: ImageSet, generic: np.ndarray,
                 progress: bool) -> dict[str, Any]:
        """Load or distil ``net``'s teacher; returns what was done for the fit statistics.

        Raises:
            ModelError: ``teacher_weights`` missing / unreadable / mismatched, or the backbone's weights absent.
        """
        c = self.config
        if c.teacher_weights:
            load_teacher(net.teacher, c.teacher_weights)
            return {"teacher": f"file {c.teacher_weights}"}
        if len(generic):
            images, source = generic, "generic_images"
        else:
            images = np.concatenate([b.images for b in train.batches(64)])
            source = "training images"
        log = distil_teacher(net.teacher, self.extractor, images, c.distill_steps, c.distill_batch_size,
                             c.distill_crop, c.distill_lr, c.seed, c.distill_max_seconds, progress)
        return {"teacher": f"distilled from {c.backbone} {'+'.join(c.layers)} on {len(images)} {source}",
                "distill": log}

    def _training(self) -> TrainingSetup:
        """Not used: :meth:`fit` runs its own setup (teacher, statistics, generic images) around the shared loop."""
        raise NotImplementedError

    def validation_metric(self, validation: ImageSet) -> float:
        """As :meth:`ImageModel.validation_metric`, after measuring the map quantiles on ``validation``'s normal
        images with the current weights (anomalib ``on_validation_start``)."""
        net = self.require_network()
        net.set_map_quantiles(validation, max(8, self.config.batch_size))
        return super().validation_metric(validation)

    def fit(self, train: ImageSet, validation: ImageSet | None = None, progress: bool = False) -> dict[str, Any]:
        """Teacher (file or distillation), its channel statistics over ``train``, then the student and autoencoder
        trained for at most ``max_epochs * steps_per_epoch`` steps (early stopping on ``validation`` when
        ``max_epochs > 1``), then the map
        quantiles on ``validation``'s normal images (on ``train`` without a validation set).

        Returns:
            fit statistics: ``images``, ``teacher`` (+ ``distill``), ``generic_images``, the training log, the
            ``quantiles`` and ``seconds``.

        Raises:
            ValueError: no training image, or a loss that is not finite (names the step / epoch).
            ModelError: a weights file or generic-images source that cannot be read (names it).
        """
        if len(train) < 1:
            raise ValueError(f"{self.kind}: no training image")
        c = self.config
        t0 = time.perf_counter()
        net = self._network()
        self.network = net
        generic = load_generic_images(c.generic_images, self.input_size, c.generic_limit)
        info = self._teacher(net, train, generic, progress)
        net.set_teacher_statistics(train, max(8, c.batch_size))
        module = nn.ModuleDict({"student": net.student, "autoencoder": net.autoencoder})
        opt = torch.optim.Adam(module.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        total = c.max_epochs * c.steps_per_epoch
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, int(0.95 * total)), gamma=0.1)
        rng = np.random.default_rng(c.seed)
        step = self._step(net, opt, sched, generic, rng)
        # one epoch leaves nothing to choose between: no validation pass inside the loop (it costs a full pass)
        log = train_module(self, module, None, None, EpochSample(train, c.steps_per_epoch * c.batch_size),
                           validation if c.max_epochs > 1 else None, progress, custom_step=step)
        net.eval()
        has_val = validation is not None and len(validation) > 0
        used = net.set_map_quantiles(validation if has_val else train, max(8, c.batch_size))
        return {"images": len(train), **info, "generic_images": int(len(generic)), **log.to_json(),
                "quantile_images": used, "quantile_source": "validation" if has_val else "train",
                "quantiles": [round(float(v), 6) for v in net.quantiles], "steps": log.epochs * c.steps_per_epoch,
                "seconds": round(time.perf_counter() - t0, 2)}

    def _step(self, net: EfficientAdNetwork, opt: torch.optim.Optimizer, sched: Any, generic: np.ndarray,
              rng: np.random.Generator) -> Any:
        """The optimisation step of a batch (anomalib ``training_step``): hard-feature + penalty + autoencoder +
        student-autoencoder losses, one Adam step, one scheduler step; returns the loss."""
        c = net.channels
        hard = self.config.hard_quantile

        def step(batch: ImageBatch) -> float:
            x = net.preprocess(torch.from_numpy(batch.images)) / 255.0
            s = net.student(x)
            loss = hard_feature_loss(net.teacher_features(x), s[:, :c], hard)
            if len(generic):
                p = torch.from_numpy(generic[rng.integers(0, len(generic), len(x))]).permute(0, 3, 1, 2).float()
                p = p / 255.0
                if rng.random() < 0.3:  # anomalib's RandomGrayscale(0.3) of the ImageNet images
                    p = grayscale(p).expand(-1, 3, -1, -1)
                loss = loss + penalty_loss(net.student(p)[:, :c])
            aug = random_color_jitter(x, rng)
            a = net.autoencoder(aug)
            loss = loss + ((net.teacher_features(aug) - a) ** 2).mean() + ((a - net.student(aug)[:, c:]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            return float(loss.detach())

        return step

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        net = self.require_network()
        arrays = module_arrays(net, "")
        return {"arrays": len(arrays), "quantiles": [float(v) for v in net.quantiles]}, arrays

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        net = self._network()
        load_module_arrays(net, arrays, "", "efficient_ad")
        return net
