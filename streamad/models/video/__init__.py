"""streamad.models.video."""
