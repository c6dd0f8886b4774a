"""streamad.models.components."""
