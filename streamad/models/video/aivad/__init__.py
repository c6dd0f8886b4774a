"""AI-VAD (anomalib ``models.video.ai_vad``): attribute-based video anomaly detection."""

from streamad.models.video.aivad.model import AiVad

__all__ = ["AiVad"]
