"""streamad.models.image."""
