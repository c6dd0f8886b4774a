"""Errors that the CLI turns into one clear message and an exit code, never a traceback."""

from __future__ import annotations

EXIT_UNDELIVERED = 5
"""Exit status of ``streamad serve`` when alerts it accepted were not delivered by the time it stopped (they stay
in the sink's spool and are sent at the next start with the same ``spool_dir``)."""

__all__ = ["EXIT_UNDELIVERED", "StreamadError", "ConfigError", "DataNotFoundError", "SourceError", "ModelError", "SinkFullError"]


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


class SinkFullError(StreamadError):
    """A sink cannot take a message now (e.g. its delivery spool is full while the broker is unreachable).

    The runtime never drops the message: it retries the write, holding the pipeline back (file streams wait; live
    streams drop and count frames upstream instead of losing alerts).
    """
