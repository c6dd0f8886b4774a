"""WinCLIP, zero-/few-shot anomaly classification and segmentation with CLIP window embeddings (anomalib)."""

from streamad.models.image.winclip.model import Winclip
from streamad.models.image.winclip.network import WinclipNetwork

__all__ = ["Winclip", "WinclipNetwork"]
