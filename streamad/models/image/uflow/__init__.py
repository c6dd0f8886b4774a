"""U-Flow (Tailanian, Pardo, Musé, "U-Flow: A U-shaped Normalizing Flow for Anomaly Detection with Unsupervised
Threshold", arXiv 2211.12353)."""

from streamad.models.image.uflow.flow import UShapedFlow
from streamad.models.image.uflow.model import Uflow, UflowNetwork

__all__ = ["Uflow", "UflowNetwork", "UShapedFlow"]
