"""The epoch loop of gradient-trained image models (STFPM, FastFlow): batches of the training set in a seeded
shuffled order, a tqdm bar showing the loss, and early stopping on a validation metric.

Such a model is a :class:`TrainedImageModel`: it builds a :class:`TrainingSetup` (its network, the trainable part,
the optimiser and the loss), and :meth:`TrainedImageModel.fit` trains it. Underneath,
:func:`train_epochs` takes one optimisation ``step(batch) -> loss`` and, when a labelled validation set exists,
``validate() -> metric`` (higher = better, e.g. :meth:`~streamad.models.image.base.ImageModel.validation_metric`)
and ``on_best()`` (keep a copy of the weights), and runs epochs until ``max_epochs`` or until the metric has not
improved for ``patience`` epochs (anomalib trains these models with Lightning's ``EarlyStopping`` on
``pixel_AUROC`` / ``image_AUROC``).
"""

from __future__ import annotations

import abc
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from pydantic import Field
from torch import nn
from tqdm import tqdm

from streamad.models.image.base import ImageModel, ImageModelConfig, ImageNetwork
from streamad.models.image.image_set import ImageBatch, ImageSet

__all__ = ["TrainingLog", "TrainingSetup", "TrainedImageModel", "TrainedImageModelConfig", "train_epochs",
           "train_module"]

_log = logging.getLogger(__name__)


class TrainedImageModelConfig(ImageModelConfig):
    """Settings every gradient-trained image model shares (a model redeclares a field to change its default).

    Attributes:
        layers: backbone layers, shallow to deep (default ``[layer1, layer2, layer3]``: stride 4, 8, 16).
        batch_size: images per optimisation step (32).
        lr: learning rate (1e-3). weight_decay: L2 penalty of the optimiser (0).
        max_epochs: upper bound on epochs (100). patience: epochs without a better validation metric before
            early stopping (3).
        max_grad_norm: clip the gradients' total L2 norm to this before each optimiser step (Lightning's
            ``gradient_clip_val``); ``None`` (the default) does not clip.
    """

    layers: list[str] = Field(default_factory=lambda: ["layer1", "layer2", "layer3"], min_length=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    max_epochs: int = Field(100, ge=1)
    patience: int = Field(3, ge=1)
    max_grad_norm: float | None = Field(None, gt=0)


@dataclass
class TrainingLog:
    """What :func:`train_epochs` did.

    Attributes:
        epochs: epochs run. best_epoch: 1-based epoch of the best validation metric (the last epoch without
            validation). best_metric: that metric (``None`` without validation). stopped_early: patience ran out.
        losses: mean training loss per epoch. metrics: validation metric per epoch. seconds: wall time.
    """

    epochs: int = 0
    best_epoch: int = 0
    best_metric: float | None = None
    stopped_early: bool = False
    losses: list[float] = field(default_factory=list)
    metrics: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        """For ``model.json``'s fit statistics."""
        return {"epochs": self.epochs, "best_epoch": self.best_epoch, "best_metric": self.best_metric,
                "stopped_early": self.stopped_early, "losses": [round(v, 6) for v in self.losses],
                "metrics": [round(v, 6) for v in self.metrics], "seconds": round(self.seconds, 2)}


def train_epochs(step: Callable[[ImageBatch], float], train: ImageSet, batch_size: int, max_epochs: int,
                 validate: Callable[[], float] | None = None, on_best: Callable[[], None] | None = None,
                 patience: int = 3, progress: bool = False, seed: int = 0, desc: str = "train",
                 end_epoch: Callable[[], None] | None = None) -> TrainingLog:
    """Run training epochs with early stopping.

    Args:
        step: one optimisation step on a batch; returns its loss (a float).
        train: the training images. batch_size: images per step. max_epochs: upper bound on epochs.
        validate: called after each epoch; higher is better. on_best: called when the metric improved (and after
            every epoch without ``validate``).
        patience: epochs without improvement before stopping. progress: show the tqdm bar (loss in its postfix).
            Whatever ``progress``, each epoch logs one INFO line (``streamad.models.image.training``): its mean
            loss, the validation metric when there is one, and the seconds since the start.
        seed: epoch ``e`` shuffles with ``seed + e``. desc: the bar's label.
        end_epoch: called after each epoch's last step, before ``validate`` (C-Flow: its map's training reference).

    Raises:
        ValueError: ``max_epochs`` or ``patience`` below 1, an empty training set, or a loss that is not finite.
    """
    if max_epochs < 1 or patience < 1:
        raise ValueError(f"{desc}: max_epochs and patience must be >= 1, got {max_epochs} and {patience}")
    if len(train) == 0:
        raise ValueError(f"{desc}: no training image")
    log = TrainingLog()
    t0 = time.perf_counter()
    since_best = 0
    per_epoch = math.ceil(len(train) / batch_size)
    for epoch in range(1, max_epochs + 1):
        total, n = 0.0, 0
        bar = tqdm(train.batches(batch_size, shuffle=True, seed=seed + epoch), total=per_epoch, unit="batch",
                   desc=f"{desc} epoch {epoch}/{max_epochs}", disable=not progress, leave=False)
        for batch in bar:
            loss = float(step(batch))
            if not math.isfinite(loss):
                raise ValueError(f"{desc}: the loss became {loss} in epoch {epoch}; lower the learning rate")
            total, n = total + loss, n + 1
            bar.set_postfix(loss=f"{total / n:.4g}")
        bar.close()
        if end_epoch is not None:
            end_epoch()
        log.epochs = epoch
        log.losses.append(total / max(n, 1))
        if validate is None:
            _log.info("%s epoch %d/%d: mean loss %.4g (%.0f s)", desc, epoch, max_epochs, log.losses[-1],
                      time.perf_counter() - t0)
            log.best_epoch = epoch
            if on_best is not None:
                on_best()
            continue
        metric = float(validate())
        log.metrics.append(metric)
        _log.info("%s epoch %d/%d: mean loss %.4g, validation metric %.4f (%.0f s)", desc, epoch, max_epochs,
                  log.losses[-1], metric, time.perf_counter() - t0)
        if log.best_metric is None or metric > log.best_metric:
            log.best_metric, log.best_epoch, since_best = metric, epoch, 0
            if on_best is not None:
                on_best()
        else:
            since_best += 1
            if since_best >= patience:
                log.stopped_early = True
                break
    log.seconds = time.perf_counter() - t0
    return log


def train_module(model: ImageModel, module: nn.Module, optimizer: torch.optim.Optimizer | None,
                 loss_of: Callable[[ImageBatch], torch.Tensor] | None, train: ImageSet, validation: ImageSet | None,
                 progress: bool, custom_step: Callable[[ImageBatch], float] | None = None,
                 end_epoch: Callable[[], None] | None = None) -> TrainingLog:
    """Train ``module``, the trainable part of ``model`` (STFPM's student, FastFlow's norms and flows), with
    :func:`train_epochs` under the model config's ``batch_size``, ``max_epochs``, ``patience`` and ``seed``, early
    stopping on :meth:`ImageModel.validation_metric` of ``validation`` when it holds images; leaves ``module``
    holding the weights of the best epoch (the last one without validation), in eval mode. With the config's
    ``max_grad_norm`` set, the gradients' total L2 norm is clipped to it before each optimiser step.

    Args:
        loss_of: the scalar loss tensor of a batch (``batch.images``: ``(N, H, W, 3) uint8`` RGB).
        progress: show the epoch bar with the loss.
        custom_step: the whole optimisation step of a batch, returning its loss, for a model that updates several
            parts with several optimisers (GANomaly's generator and discriminator); replaces ``optimizer`` and
            ``loss_of`` (both ``None`` then).
        end_epoch: as :func:`train_epochs` (called with ``module`` in eval mode; what it changes in ``module``'s
            state is kept with the best epoch).

    Raises:
        ValueError: as :func:`train_epochs`.
    """
    c = model.config
    clip = getattr(c, "max_grad_norm", None)
    best: dict[str, torch.Tensor] = {}

    def step(batch: ImageBatch) -> float:
        module.train(True)
        if custom_step is not None:
            return custom_step(batch)
        assert optimizer is not None and loss_of is not None
        loss = loss_of(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(module.parameters(), clip)
        optimizer.step()
        return float(loss.detach())

    def metric() -> float:
        module.train(False)
        assert validation is not None
        return model.validation_metric(validation)

    def keep() -> None:
        best.clear()
        best.update({k: v.detach().clone() for k, v in module.state_dict().items()})

    def finish_epoch() -> None:
        module.train(False)
        assert end_epoch is not None
        end_epoch()

    validate = metric if validation is not None and len(validation) > 0 else None
    log = train_epochs(step, train, c.batch_size, c.max_epochs, validate, keep,  # type: ignore[attr-defined]
                       patience=c.patience, progress=progress, seed=c.seed, desc=model.kind,  # type: ignore[attr-defined]
                       end_epoch=None if end_epoch is None else finish_epoch)
    module.load_state_dict(best)
    module.train(False)
    return log


@dataclass
class TrainingSetup:
    """What a :class:`TrainedImageModel` trains, built fresh (seeded) for each fit.

    Attributes:
        network: the whole inference network; it becomes the model's ``network``.
        module: its trainable part (STFPM's student, FastFlow's norms and flows).
        optimizer: over ``module``'s parameters.
        loss: the scalar loss tensor of a batch of preprocessed images (``network.preprocess`` of the batch:
            ``(N, 3, h, w) float32`` in 0-255).
        prepare: optional, called once with ``(train, progress)`` before the first epoch, after ``network`` became
            the model's (CFA: the memory bank of centroids from the training set, anomalib's ``on_train_start``);
            ``None`` (the default) for models that start training at once.
        step: instead of ``optimizer`` and ``loss`` (leave them ``None``), the whole optimisation step of a batch of
            preprocessed images, returning its loss as a float: for models with several optimisers (GANomaly).
        end_epoch: optional, called after each epoch's steps, before validation, with ``module`` in eval mode
            (C-Flow: the anomaly map's reference from the training images, a buffer of ``module``).
    """

    network: ImageNetwork
    module: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    loss: Callable[[torch.Tensor], torch.Tensor] | None = None
    prepare: Callable[[ImageSet, bool], None] | None = None
    step: Callable[[torch.Tensor], float] | None = None
    end_epoch: Callable[[], None] | None = None


class TrainedImageModel(ImageModel):
    """Base of the gradient-trained image models (STFPM, FastFlow): a subclass builds its :class:`TrainingSetup`
    in :meth:`_training`; :meth:`fit` makes its network the model's, runs the setup's ``prepare`` (if any) and trains
    the trainable part with :func:`train_module` (early stopping on :meth:`~ImageModel.validation_metric`, the best
    epoch's weights kept).
    """

    trainable = True

    @abc.abstractmethod
    def _training(self) -> TrainingSetup:
        """A fresh network (seeded by the config), its trainable part, the optimiser and the loss."""

    def fit(self, train: ImageSet, validation: ImageSet | None = None, progress: bool = False) -> dict[str, Any]:
        """Train on the normal images of ``train``, stopping early on ``validation`` (when it holds images).

        Returns:
            the fit statistics for ``model.json``: ``images``, the :class:`TrainingLog` fields, ``seconds`` (of
            the whole fit, setup included).

        Raises:
            ValueError: no training image (named by the model's kind), or as :func:`train_epochs`.
        """
        if len(train) < 1:
            raise ValueError(f"{self.kind}: no training image")
        t0 = time.perf_counter()
        setup = self._training()
        self.network = setup.network
        if setup.prepare is not None:
            setup.prepare(train, progress)

        def loss_of(batch: ImageBatch) -> torch.Tensor:
            assert setup.loss is not None
            return setup.loss(setup.network.preprocess(torch.from_numpy(batch.images)))

        def step_of(batch: ImageBatch) -> float:
            assert setup.step is not None
            return setup.step(setup.network.preprocess(torch.from_numpy(batch.images)))

        if setup.step is not None:
            log = train_module(self, setup.module, None, None, train, validation, progress, custom_step=step_of,
                               end_epoch=setup.end_epoch)
        else:
            log = train_module(self, setup.module, setup.optimizer, loss_of, train, validation, progress,
                               end_epoch=setup.end_epoch)
        setup.network.eval()
        return {"images": len(train), **log.to_json(), "seconds": round(time.perf_counter() - t0, 2)}
