"""Reverse Distillation (Deng & Li, "Anomaly Detection via Reverse Distillation from One-Class Embedding",
CVPR 2022)."""

from streamad.models.image.reverse_distillation.model import (
    ReverseDistillation,
    ReverseDistillationNetwork,
)

__all__ = ["ReverseDistillation", "ReverseDistillationNetwork"]
