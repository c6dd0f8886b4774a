"""EfficientAD (Batzner et al., "EfficientAD: Accurate Visual Anomaly Detection at Millisecond-Level Latencies",
WACV 2024)."""

from streamad.models.image.efficient_ad.model import EfficientAd
from streamad.models.image.efficient_ad.network import EfficientAdNetwork

__all__ = ["EfficientAd", "EfficientAdNetwork"]
