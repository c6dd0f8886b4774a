"""CS-Flow (Rudolph, Wehrbein, Rosenhahn, Wandt, "Fully Convolutional Cross-Scale-Flows for Image-based Defect
Detection", WACV 2022, arXiv 2110.02855)."""

from streamad.models.image.csflow.model import Csflow, CsflowNetwork

__all__ = ["Csflow", "CsflowNetwork"]
