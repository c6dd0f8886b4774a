"""CFA (Lee, Lee, Song, "CFA: Coupled-hypersphere-based Feature Adaptation for Target-Oriented Anomaly Localization",
IEEE Access 2022)."""

from streamad.models.image.cfa.model import Cfa, CfaNetwork

__all__ = ["Cfa", "CfaNetwork"]
