"""DSR (Zavrtanik, Kristan, Skocaj, "DSR - A dual subspace re-projection network for surface anomaly detection",
ECCV 2022)."""

from streamad.models.image.dsr.model import Dsr
from streamad.models.image.dsr.network import DsrNetwork

__all__ = ["Dsr", "DsrNetwork"]
