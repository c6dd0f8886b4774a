"""FUVAS (anomalib ``models.video.fuvas``): PCA reconstruction of a clip's spatio-temporal deep features."""

from streamad.models.video.fuvas.model import Fuvas

__all__ = ["Fuvas"]
