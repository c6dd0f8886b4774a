"""DRAEM (Zavrtanik, Kristan, Skocaj, "DRAEM - A discriminatively trained reconstruction embedding for surface
anomaly detection", ICCV 2021)."""

from streamad.models.image.draem.model import Draem, DraemNetwork

__all__ = ["Draem", "DraemNetwork"]
