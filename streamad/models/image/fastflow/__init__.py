"""FastFlow (Yu et al., "FastFlow: Unsupervised Anomaly Detection and Localization via 2D Normalizing Flows",
arXiv 2111.07677)."""

from streamad.models.image.fastflow.model import Fastflow, FastflowNetwork

__all__ = ["Fastflow", "FastflowNetwork"]
