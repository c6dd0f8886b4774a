"""Registries of the parts a pipeline.yaml may name: sources, operators, sinks and models.

A config names parts by ``kind`` (``kind: clip_window``), never by Python import path, so loading a config can only
instantiate classes that this package registered. Each registered class carries a pydantic ``Config`` model whose
``kind`` field is a ``Literal`` of its registered name; :mod:`streamad.config` builds tagged unions from these.
"""

from __future__ import annotations

from typing import Callable, TypeVar

__all__ = ["Registry", "SOURCES", "OPERATORS", "SINKS", "MODELS", "load_builtin_parts"]

T = TypeVar("T")


class Registry:
    """Name -> class map for one family of parts (``"operator"``, ``"source"``, ...)."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._items: dict[str, type] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator that registers ``cls`` under ``name``.

        Raises:
            ValueError: ``name`` is already registered to another class.
        """

        def deco(cls: T) -> T:
            other = self._items.get(name)
            if other is not None and other is not cls:
                raise ValueError(f"{self.family} kind {name!r} registered twice ({other} and {cls})")
            self._items[name] = cls  # type: ignore[assignment]
            cls.kind = name  # type: ignore[attr-defined]
            return cls

        return deco

    def get(self, name: str) -> type:
        """The class registered as ``name``.

        Raises:
            KeyError: unknown name; the message lists the known ones.
        """
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.family} kind {name!r}; known: {', '.join(sorted(self._items))}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, type]]:
        return sorted(self._items.items())


SOURCES = Registry("source")
OPERATORS = Registry("operator")
SINKS = Registry("sink")
MODELS = Registry("model")


def load_builtin_parts() -> None:
    """Import every built-in part module so that its registration runs."""
    import streamad.models  # noqa: F401
    import streamad.operators  # noqa: F401
    import streamad.sinks  # noqa: F401
    import streamad.sources  # noqa: F401
