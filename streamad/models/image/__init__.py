"""Image models, run frame by frame (anomalib's image models). Importing this package registers them.

| kind | model | map | image score |
|---|---|---|---|
| ``patchcore`` | :class:`~streamad.models.image.patchcore.Patchcore` | nearest memory-bank distance | re-weighted max |
| ``padim`` | :class:`~streamad.models.image.padim.Padim` | Mahalanobis distance per position | map max |
| ``dfm`` | :class:`~streamad.models.image.dfm.Dfm` | PCA reconstruction error (``fre``) | FRE or NLL |
| ``dfkde`` | :class:`~streamad.models.image.dfkde.Dfkde` | (the image score) | KDE probability |
| ``stfpm`` | :class:`~streamad.models.image.stfpm.Stfpm` | student-teacher feature distance (trained) | map max |
| ``fastflow`` | :class:`~streamad.models.image.fastflow.Fastflow` | normalising-flow likelihood (trained) | map max |
| ``reverse_distillation`` | :class:`~streamad.models.image.reverse_distillation.ReverseDistillation` | encoder-decoder cosine distance (trained) | map max |
| ``ganomaly`` | :class:`~streamad.models.image.ganomaly.Ganomaly` | (the image score; trained) | latent distance |

Every model implements :class:`~streamad.models.image.base.ImageModel`.
"""

from streamad.models.image.base import IMAGE_MODELS, ImageModel, ImageModelConfig, ImagePrediction
from streamad.models.image.dfkde import Dfkde
from streamad.models.image.dfm import Dfm
from streamad.models.image.fastflow import Fastflow
from streamad.models.image.ganomaly import Ganomaly
from streamad.models.image.padim import Padim
from streamad.models.image.patchcore import Patchcore
from streamad.models.image.reverse_distillation import ReverseDistillation
from streamad.models.image.stfpm import Stfpm

__all__ = ["IMAGE_MODELS", "ImageModel", "ImageModelConfig", "ImagePrediction", "Patchcore", "Padim", "Dfm", "Dfkde",
           "Stfpm", "Fastflow", "ReverseDistillation", "Ganomaly"]
