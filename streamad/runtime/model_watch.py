"""Swap models without a restart: ``streamad serve`` notices a refitted model directory and swaps it in between
clips.

:class:`ModelWatcher` checks every model directory the :class:`~streamad.models.model_set.ModelSet` has loaded
every ``runtime.model_watch_interval_s`` seconds (and at once when :meth:`ModelWatcher.request` is called: SIGHUP)
by the SHA-256 of its ``model.json`` (``save_model`` replaces the directory atomically and writes a new
``created`` time, so every refit changes it). On a change the new model is loaded completely in this thread, off the
hot path, then its handle replaces the old one in the model set: the model operator reads the handle once per clip,
so each clip is scored wholly by the old or wholly by the new model; no frame is dropped and no stream restarts.
Alerts after the swap carry the new ``model.version``. A directory that does not load (half-copied by hand,
another model kind, deleted) is logged as an error naming it and why, counted in
``streamad_model_load_errors_total{model_dir}``, and the old model stays; it is tried again when ``model.json``
changes again (or at the next SIGHUP).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from streamad.models.model_set import ModelSet
from streamad.runtime.loop_thread import LoopThread

__all__ = ["ModelWatcher", "model_fingerprint"]

log = logging.getLogger("streamad.models")


def model_fingerprint(model_dir: Path) -> str | None:
    """SHA-256 (hex) of ``model_dir/model.json``, or ``None`` when it cannot be read."""
    try:
        return hashlib.sha256((Path(model_dir) / "model.json").read_bytes()).hexdigest()
    except OSError:
        return None


class ModelWatcher(LoopThread):
    """Watches the model directories of ``models`` and swaps refitted ones in (module doc).

    Args:
        models: the pipeline's model set (its loaded directories are watched, also those loaded later).
        interval_s: seconds between checks; 0 or ``None`` = only on :meth:`request`.

    Attributes:
        swaps: models swapped in; failures: refitted directories that did not load (both since start).
    """

    def __init__(self, models: ModelSet, interval_s: float | None) -> None:
        super().__init__("model-watch", join_timeout_s=60)
        self.models = models
        self.interval_s = interval_s or None
        self.swaps = 0
        self.failures = 0
        self._requested = threading.Event()
        self._seen: dict[Path, str | None] = {d: model_fingerprint(d) for d in models.watched_dirs()}

    def request(self) -> None:
        """Check every directory now (SIGHUP); returns at once, the check runs in the watcher's thread."""
        self._requested.set()

    def _loop(self) -> None:
        wait = self.interval_s if self.interval_s is not None else 3600.0
        while not self._stop.is_set():
            self._requested.wait(wait)
            if self._stop.is_set():
                return
            self._requested.clear()
            self.check()

    def stop(self) -> None:
        """Stop watching (waits for a load in progress, up to 60 s)."""
        self._stop.set()
        self._requested.set()
        super().stop()

    def check(self) -> int:
        """Compare each loaded directory's ``model.json`` with the last one seen and swap in those that changed;
        returns how many were swapped. A directory whose ``model.json`` is missing right now (a save between its
        two renames, or a directory removed) is left alone until it is back."""
        swapped = 0
        for d in self.models.watched_dirs():
            fp = model_fingerprint(d)
            if d not in self._seen:  # loaded after the watcher started (a stream added by a reload)
                self._seen[d] = fp
                continue
            if fp is None or fp == self._seen[d]:
                continue
            self._seen[d] = fp
            log.info("model_dir %s: model.json changed; loading the new model", d)
            if self.models.reload(d):
                self.swaps += 1
                swapped += 1
            else:
                self.failures += 1
        return swapped
