"""Models: video (AI-VAD) and, later, image models. Importing this package registers them."""

from streamad.models.video.aivad import AiVad  # noqa: F401
