"""Durable writes on POSIX: ``fsync`` of a file or folder by path (the spool and the model store use it so that a
rename or a new file survives a crash of the machine, not only of the process)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_path"]


def fsync_path(path: str | Path) -> None:
    """``fsync`` the file or directory at ``path`` (a directory: its entries, e.g. after a rename in it).

    Raises:
        OSError: the path cannot be opened or synced.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
