"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022)."""

from streamad.models.image.patchcore.model import Patchcore, PatchcoreNetwork

__all__ = ["Patchcore", "PatchcoreNetwork"]
