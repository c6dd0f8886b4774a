"""DFKDE, Deep Feature Kernel Density Estimation (anomalib)."""

from streamad.models.image.dfkde.model import Dfkde, DfkdeNetwork

__all__ = ["Dfkde", "DfkdeNetwork"]
