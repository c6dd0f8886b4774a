"""Import every built-in part so that its registration in :mod:`streamad.registry` runs.

The registry stays a leaf (it imports nothing of streamad); whoever needs the full set of kinds (the config
schema, the CLI, tests that walk the registries) calls :func:`load_builtin_parts` once.
"""

from __future__ import annotations

import importlib

__all__ = ["load_builtin_parts", "BUILTIN_PACKAGES"]

BUILTIN_PACKAGES = ("streamad.models", "streamad.operators", "streamad.sinks", "streamad.sources")
"""The packages whose import registers the built-in models, operators, sinks and sources."""


def load_builtin_parts() -> None:
    """Import :data:`BUILTIN_PACKAGES` (idempotent: Python imports each module once)."""
    for name in BUILTIN_PACKAGES:
        importlib.import_module(name)
