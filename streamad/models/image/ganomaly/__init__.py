"""GANomaly (Akcay, Atapour-Abarghouei, Breckon, "GANomaly: Semi-Supervised Anomaly Detection via Adversarial
Training", ACCV 2018)."""

from streamad.models.image.ganomaly.model import Ganomaly, GanomalyNetwork

__all__ = ["Ganomaly", "GanomalyNetwork"]
