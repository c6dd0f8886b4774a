"""streamad.eval."""
