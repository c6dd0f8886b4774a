"""DFM (Ahuja et al., "Probabilistic Modeling of Deep Features for Out-of-Distribution and Adversarial
Detection", arXiv 1909.11786)."""

from streamad.models.image.dfm.model import Dfm, DfmNetwork

__all__ = ["Dfm", "DfmNetwork"]
