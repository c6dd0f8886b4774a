"""STFPM (Wang, Wu, Cui, Yuan, Yu, "Student-Teacher Feature Pyramid Matching for Anomaly Detection", BMVC 2021,
arXiv 2103.04257), following anomalib's ``STFPMModel`` / ``STFPMLoss`` / ``AnomalyMapGenerator``.

* Teacher: the pretrained backbone, frozen. Student: the same architecture, randomly initialised (seeded), trained
  on normal images only (:mod:`streamad.models.image.stfpm.student`).
* Loss (paper eq. 1, anomalib ``STFPMLoss``): for every layer, both feature maps are L2-normalised along the
  channels and ``0.5 / (h w) * sum((t - s)^2)`` is summed over the batch and the positions; the layer losses add up.
  SGD with anomalib's settings (lr 0.4, momentum 0.9, weight decay 1e-3).
* Anomaly map: per layer ``0.5 * |t/|t| - s/|s||^2`` at every position, bilinearly upsampled to the input size; the
  layer maps are multiplied; then the Gaussian blur sigma 4 shared by every streamad image model (anomalib does not
  blur STFPM's map). Image score: the map's maximum (anomalib's post-processor).
* Training: :func:`~streamad.models.image.training.train_epochs`; with a labelled validation set, early stopping on
  :meth:`~streamad.models.image.base.ImageModel.validation_metric` and the student of the best epoch is kept.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from streamad.models.components.backbone import FeatureExtractor
from streamad.models.components.gaussian_blur import GaussianBlur2d
from streamad.models.components.module_arrays import load_module_arrays, module_arrays
from streamad.models.image.base import ImageNetwork
from streamad.models.image.layer_maps import combine_layer_maps
from streamad.models.image.stfpm.student import Student
from streamad.models.image.training import TrainedImageModel, TrainedImageModelConfig, TrainingSetup
from streamad.registry import IMAGE_MODELS

__all__ = ["Stfpm", "StfpmNetwork", "stfpm_loss", "stfpm_layer_map"]


def stfpm_layer_map(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """``(N, C, h, w)`` x2 -> ``(N, 1, h, w)``: half the squared distance of the channel-normalised features."""
    diff = F.normalize(teacher, dim=1) - F.normalize(student, dim=1)
    return 0.5 * (diff * diff).sum(1, keepdim=True)


def stfpm_loss(teacher: dict[str, torch.Tensor], student: dict[str, torch.Tensor]) -> torch.Tensor:
    """anomalib's ``STFPMLoss``: sum over layers of ``0.5 / (h w) * sum over batch, channels, positions of
    (t/|t| - s/|s|)^2`` (a 0-d tensor)."""
    total = torch.zeros(())
    for layer, t in teacher.items():
        h, w = t.shape[-2:]
        diff = F.normalize(t, dim=1) - F.normalize(student[layer], dim=1)
        total = total + (0.5 / (h * w)) * (diff * diff).sum()
    return total


class StfpmNetwork(ImageNetwork):
    """``images (N, H, W, 3) uint8 -> (anomaly_map (N, 1, h, w), score (N,))``, see the module doc.

    Args:
        size: input ``(h, w)``. teacher: the frozen backbone. student: the trained :class:`Student`.
        sigma: Gaussian blur of the map (4).
    """

    def __init__(self, size: tuple[int, int], teacher: FeatureExtractor, student: Student,
                 sigma: float = 4.0) -> None:
        super().__init__(size)
        self.teacher = teacher
        self.student = student
        self.blur = GaussianBlur2d(sigma)

    def features(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(N, 3, h, w)`` 0-255 -> (teacher features without gradient, student features)."""
        with torch.no_grad():
            t = self.teacher(x)
        return t, self.student(x)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t, s = self.features(self.preprocess(images))
        amap = self.blur(combine_layer_maps((stfpm_layer_map(tf, s[layer]) for layer, tf in t.items()), self.size,
                                            "multiply"))
        return amap, amap.flatten(1).amax(1)


@IMAGE_MODELS.register("stfpm")
class Stfpm(TrainedImageModel):
    """STFPM with anomalib's parameters (see the module doc and ``README.md`` beside this file).

    Config:
        layers: default ``[layer1, layer2, layer3]`` (stride 4, 8, 16; anomalib's default).
        lr, momentum, weight_decay: SGD (anomalib 0.4, 0.9, 1e-3).
        max_epochs: upper bound on training epochs (anomalib's config: 100).
        patience: epochs without a better validation metric before stopping (anomalib's config: 3).
    """

    version = "1"
    score_meaning = ("largest product over layers of the student's distance to the teacher's normalised features, "
                     "in [0, 2^layers]")

    class Config(TrainedImageModelConfig):
        kind: Literal["stfpm"] = "stfpm"
        lr: float = Field(0.4, gt=0)
        momentum: float = Field(0.9, ge=0, lt=1)
        weight_decay: float = Field(1e-3, ge=0)

    def _network(self, student: Student) -> StfpmNetwork:
        return StfpmNetwork(self.input_size, self.extractor, student)

    def _training(self) -> TrainingSetup:
        """A fresh (seeded) student, SGD over it, the STFPM loss."""
        c = self.config
        net = self._network(Student(self.extractor, c.seed))
        opt = torch.optim.SGD(net.student.parameters(), lr=c.lr, momentum=c.momentum, dampening=0.0,
                              weight_decay=c.weight_decay)
        return TrainingSetup(net, net.student, opt, lambda x: stfpm_loss(*net.features(x)))

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        net = self.require_network()
        arrays = module_arrays(net.student, "student.")
        return {"student_arrays": len(arrays)}, arrays

    def _build_network(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> nn.Module:
        student = Student(self.extractor, self.config.seed)
        load_module_arrays(student, arrays, "student.", "stfpm")
        return self._network(student)
