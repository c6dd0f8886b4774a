"""Errors that the CLI turns into one clear message and an exit code, never a traceback."""

from __future__ import annotations

__all__ = ["StreamadError", "ConfigError", "DataNotFoundError", "SourceError", "ModelError"]


class StreamadError(Exception):
    """Base class of errors that carry a user-facing message. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(StreamadError):
    """A pipeline config is malformed, names an unknown part, has a wrong type or points at a missing file.

    The message names the file, the key path (``operators[2].sigma``), the line when known, and what was allowed.
    """

    exit_code = 2


class DataNotFoundError(StreamadError):
    """A dataset is not where the config says; the message says where to put it and how to get it."""

    exit_code = 3


class SourceError(StreamadError):
    """A stream cannot be opened or decoded (corrupt or truncated file, unreachable camera)."""


class ModelError(StreamadError):
    """A model directory is missing, incomplete, or does not match the pipeline."""

    exit_code = 4
