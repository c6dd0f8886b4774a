"""Models: video (AI-VAD, FUVAS) and image models run frame by frame (PatchCore, PaDiM, DFM, DFKDE). Importing this
package registers them."""

from streamad.models import image  # noqa: F401
from streamad.models.video.aivad import AiVad  # noqa: F401
from streamad.models.video.fuvas import Fuvas  # noqa: F401
