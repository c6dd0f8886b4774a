"""Registries of the parts a pipeline.yaml may name: sources, operators, sinks, video models and image models.

A config names parts by ``kind`` (``kind: clip_window``), never by Python import path, so loading a config can only
instantiate classes that this package registered. Each registered class carries a pydantic ``Config`` model whose
``kind`` field is a ``Literal`` of its registered name; :mod:`streamad.config` builds tagged unions from these.

This module is a leaf: it imports nothing of streamad. :func:`streamad.builtin.load_builtin_parts` imports the
built-in parts so that their registrations run.
"""

from __future__ import annotations

from typing import Callable, TypeVar

__all__ = ["Registry", "SOURCES", "OPERATORS", "SINKS", "VIDEO_MODELS", "IMAGE_MODELS", "MODEL_REGISTRIES"]

T = TypeVar("T")


class Registry:
    """Name -> class map for one family of parts (``"operator"``, ``"source"``, ...)."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._items: dict[str, type] = {}
        self._aliases: dict[str, str] = {}

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

    def alias(self, old: str, new: str) -> None:
        """Accept ``old`` as a deprecated name of the registered kind ``new`` (:meth:`canonical` maps it)."""
        self._aliases[old] = new

    def canonical(self, name: str) -> tuple[str, bool]:
        """``(registered name, was_alias)`` of ``name``: a deprecated alias maps to its kind, others stay."""
        if name in self._aliases:
            return self._aliases[name], True
        return name, False

    def get(self, name: str) -> type:
        """The class registered as ``name`` (or as the kind a deprecated alias stands for).

        Raises:
            KeyError: unknown name; the message lists the known ones.
        """
        name = self._aliases.get(name, name)
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
VIDEO_MODELS = Registry("video model")
IMAGE_MODELS = Registry("image model")
MODEL_REGISTRIES = (VIDEO_MODELS, IMAGE_MODELS)
"""The model families beside each other: a model directory's kind is looked up in each."""
