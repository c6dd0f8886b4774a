"""STFPM (Wang et al., "Student-Teacher Feature Pyramid Matching for Anomaly Detection", BMVC 2021)."""

from streamad.models.image.stfpm.model import Stfpm, StfpmNetwork

__all__ = ["Stfpm", "StfpmNetwork"]
