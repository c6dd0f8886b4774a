"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection and Localization",
ICPR 2020)."""

from streamad.models.image.padim.model import Padim, PadimNetwork

__all__ = ["Padim", "PadimNetwork"]
