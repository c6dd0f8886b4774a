"""R-KDE, region-based kernel density estimation (anomalib)."""

from streamad.models.image.rkde.model import Rkde, RkdeNetwork

__all__ = ["Rkde", "RkdeNetwork"]
