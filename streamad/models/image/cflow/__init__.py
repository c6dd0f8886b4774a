"""C-Flow (Gudovskiy, Ishizaka, Kozuka, "CFLOW-AD: Real-Time Unsupervised Anomaly Detection with Localization via
Conditional Normalizing Flows", WACV 2022)."""

from streamad.models.image.cflow.model import Cflow, CflowNetwork

__all__ = ["Cflow", "CflowNetwork"]
