"""Image models, run frame by frame (anomalib's image models). Importing this package registers them.

| kind | model | map | image score |
|---|---|---|---|
| ``patchcore`` | :class:`~streamad.models.image.patchcore.Patchcore` | nearest memory-bank distance | re-weighted max |
| ``padim`` | :class:`~streamad.models.image.padim.Padim` | Mahalanobis distance per position | map max |
| ``dfm`` | :class:`~streamad.models.image.dfm.Dfm` | PCA reconstruction error (``fre``) | FRE or NLL |
| ``dfkde`` | :class:`~streamad.models.image.dfkde.Dfkde` | (the image score) | KDE probability |
| ``stfpm`` | :class:`~streamad.models.image.stfpm.Stfpm` | student-teacher feature distance (trained) | map max |
| ``fastflow`` | :class:`~streamad.models.image.fastflow.Fastflow` | normalising-flow likelihood (trained) | map max |
| ``cflow`` | :class:`~streamad.models.image.cflow.Cflow` | conditional normalising-flow likelihood per layer (trained) | map max |
| ``csflow`` | :class:`~streamad.models.image.csflow.Csflow` | cross-scale flow latents' z^2 (trained) | mean z^2 / 2 |
| ``reverse_distillation`` | :class:`~streamad.models.image.reverse_distillation.ReverseDistillation` | encoder-decoder cosine distance (trained) | map max |
| ``uflow`` | :class:`~streamad.models.image.uflow.Uflow` | U-shaped normalising-flow likelihood (trained) | map max |
| ``cfa`` | :class:`~streamad.models.image.cfa.Cfa` | distance to the nearest memory-bank centroid (trained descriptor) | map max |
| ``efficient_ad`` | :class:`~streamad.models.image.efficient_ad.EfficientAd` | student-teacher + autoencoder-student distances, quantile-normalised (trained; distilled PDN teacher) | map max |
| ``rkde`` | :class:`~streamad.models.image.rkde.Rkde` | region scores painted on their boxes (CenterNet regions) | max region score |
| ``ganomaly`` | :class:`~streamad.models.image.ganomaly.Ganomaly` | (the image score; trained) | latent distance |
| ``draem`` | :class:`~streamad.models.image.draem.Draem` | anomalous-class probability of a segmentation network (trained on simulated anomalies) | map max |
| ``dsr`` | :class:`~streamad.models.image.dsr.Dsr` | upsampling module's anomalous-class probability (VQ features re-projected; trained on simulated anomalies) | smoothed detection-map max |
| ``winclip`` | :class:`~streamad.models.image.winclip.Winclip` | CLIP window-prompt scores, harmonic per patch (zero-/few-shot; needs CLIP weights) | image-prompt probability (+ few-shot max) |

Every model implements :class:`~streamad.models.image.base.ImageModel`.
"""

from streamad.models.image.base import IMAGE_MODELS, ImageModel, ImageModelConfig, ImagePrediction
from streamad.models.image.cfa import Cfa
from streamad.models.image.cflow import Cflow
from streamad.models.image.csflow import Csflow
from streamad.models.image.dfkde import Dfkde
from streamad.models.image.dfm import Dfm
from streamad.models.image.draem import Draem
from streamad.models.image.dsr import Dsr
from streamad.models.image.efficient_ad import EfficientAd
from streamad.models.image.fastflow import Fastflow
from streamad.models.image.ganomaly import Ganomaly
from streamad.models.image.padim import Padim
from streamad.models.image.patchcore import Patchcore
from streamad.models.image.reverse_distillation import ReverseDistillation
from streamad.models.image.rkde import Rkde
from streamad.models.image.stfpm import Stfpm
from streamad.models.image.uflow import Uflow
from streamad.models.image.winclip import Winclip

__all__ = ["IMAGE_MODELS", "ImageModel", "ImageModelConfig", "ImagePrediction", "Patchcore", "Padim", "Dfm", "Dfkde",
           "Stfpm", "Fastflow", "ReverseDistillation", "Uflow", "Cfa", "Cflow", "Csflow", "Ganomaly", "Rkde",
           "Draem", "Dsr", "Winclip", "EfficientAd"]
