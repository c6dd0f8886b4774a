"""One model per camera: the fitted models the streams of one pipeline use, each loaded once and shared.

A stream config may name its own model directory (``model_dir:``; ``{stream}`` in it is replaced by the stream
id made safe for paths, :func:`stream_path_part`); a stream that names none uses the pipeline's (``--model``, the
config's ``model_dir``, else ``runs/<name>/model``). :class:`ModelSet` maps each resolved directory to one loaded
:class:`~streamad.models.handle.ModelHandle`: streams naming the same directory share one model in memory.

The model operator reads :meth:`ModelSet.handle_for` once per clip, so a clip is scored wholly by one model; a
refit directory is swapped in by :meth:`ModelSet.reload` (called by :class:`~streamad.runtime.model_watch.
ModelWatcher`), which loads the new model completely before it replaces the reference. A directory that fails to
load is logged and counted (``streamad_model_load_errors_total{model_dir}``) and the old model stays.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from streamad.errors import ModelError
from streamad.models.handle import ModelHandle, read_handle
from streamad.redact import redact

if TYPE_CHECKING:
    from streamad.metrics import Metrics

__all__ = ["ModelSet", "resolve_model_dir", "stream_path_part"]

log = logging.getLogger("streamad.models")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def stream_path_part(stream_id: str) -> str:
    """``stream_id`` made safe as one path component: every run of characters other than letters, digits, ``.``,
    ``_`` and ``-`` becomes ``_`` (``10.0.0.5:554/live/ch1`` -> ``10.0.0.5_554_live_ch1``); never empty, never
    ``.`` or ``..``."""
    part = _UNSAFE.sub("_", stream_id).strip("_") or "stream"
    return "_" + part if part in (".", "..") else part


def resolve_model_dir(template: str | Path | None, stream_id: str, default: Path | None) -> Path | None:
    """The model directory of stream ``stream_id``: its own ``template`` (``{stream}`` replaced by
    :func:`stream_path_part` of the id; ``~`` expanded; relative paths stay relative to the working directory),
    else ``default`` (the pipeline's)."""
    if template is None or str(template) == "":
        return default
    return Path(str(template).replace("{stream}", stream_path_part(stream_id))).expanduser()


class ModelSet:
    """The models of one pipeline's streams, one loaded handle per model directory (module doc).

    Args:
        default_dir: the pipeline's model directory (streams that name none use it); ``None`` = none.
        metrics: where to count loads (``streamad_model_loads_total{model_dir}``), failures
            (``streamad_model_load_errors_total{model_dir}``) and publish ``streamad_model_age_seconds{stream}``.

    Attributes:
        loads: ``{model_dir: successful loads}`` (also without metrics): 1 per directory until a swap.
        load_errors: ``{model_dir: failed loads}``.
    """

    def __init__(self, default_dir: Path | None, metrics: "Metrics | None" = None) -> None:
        self.default_dir = Path(default_dir) if default_dir is not None else None
        self.metrics = metrics
        self.kind: str | None = None
        self.operator = "model"
        self.make_runner: Callable[[Any, dict[str, Any]], Any] | None = None
        self._streams: dict[str, Path] = {}
        self._handles: dict[Path, ModelHandle] = {}
        self._lock = threading.RLock()
        self.loads: dict[str, int] = {}
        self.load_errors: dict[str, int] = {}
        self._adopted: set[Path] = set()

    # -- streams -------------------------------------------------------------------------------------------
    def assign(self, stream_id: str, template: str | Path | None) -> Path | None:
        """Record which model directory stream ``stream_id`` uses (its ``template``, else the default) and
        publish its ``streamad_model_age_seconds``; returns the directory (``None``: no model at all). Before the
        model operator bound the set (at start) nothing is loaded (:meth:`load_all` does that); after it (a stream
        added by a reload or a group assignment) the directory is loaded first, so that a stream is never
        assigned a model that is not there.

        Raises:
            ModelError: (bound set only) the directory has no model that loads; the assignment is not changed.
        """
        d = resolve_model_dir(template, stream_id, self.default_dir)
        if d is not None and self.kind is not None:
            self.load(d, stream_id)
        with self._lock:
            if d is None:
                self._streams.pop(stream_id, None)
                return None
            self._streams[stream_id] = d
        if self.metrics is not None:
            self.metrics.model_age.labels(stream_id).set_function(lambda sid=stream_id: self.age_s(sid))
        return d

    def forget(self, stream_id: str) -> None:
        """Drop the assignment of stream ``stream_id`` (it then falls back to the default). Only for a stream that
        has fully ended: a stream still draining must keep its model. A model no stream uses stays loaded."""
        with self._lock:
            self._streams.pop(stream_id, None)

    def dir_for(self, stream_id: str) -> Path | None:
        """The model directory stream ``stream_id`` uses (assigned, else the default)."""
        return self._streams.get(stream_id, self.default_dir)

    def streams_of(self, model_dir: Path) -> list[str]:
        """The stream ids assigned to ``model_dir``."""
        return sorted(s for s, d in self._streams.items() if d == model_dir)

    @property
    def per_stream(self) -> bool:
        """Whether some stream uses another directory than the default."""
        return any(d != self.default_dir for d in self._streams.values())

    # -- models --------------------------------------------------------------------------------------------
    def bind(self, kind: str, operator: str, make_runner: Callable[[Any, dict[str, Any]], Any] | None = None) -> None:
        """Set the model kind the pipeline's model operator expects (every directory must hold one)."""
        self.kind, self.operator, self.make_runner = kind, operator, make_runner

    def dirs(self) -> list[Path]:
        """The model directories loaded now."""
        with self._lock:
            return list(self._handles)

    def wanted_dirs(self) -> list[Path]:
        """The directories the assigned streams use (the default when no stream is assigned), each once."""
        with self._lock:
            ds = list(dict.fromkeys(self._streams.values()))
        if not ds and self.default_dir is not None:
            ds = [self.default_dir]
        return ds

    def _read(self, d: Path) -> ModelHandle:
        if self.kind is None:
            raise ModelError(f"{d}: no model operator bound to this model set")
        h = read_handle(d, self.kind, self.operator, self.make_runner)
        if self.metrics is not None:
            h.inference = self.metrics.inference.labels(h.name)
        return h

    def _count(self, d: Path, ok: bool) -> None:
        book = self.loads if ok else self.load_errors
        book[str(d)] = book.get(str(d), 0) + 1
        if self.metrics is not None:
            (self.metrics.model_loads if ok else self.metrics.model_load_errors).labels(str(d)).inc()

    def load(self, model_dir: Path, stream_id: str | None = None) -> ModelHandle:
        """The handle of ``model_dir``, loaded now unless it is loaded already (then it is shared).

        Raises:
            ModelError: no fitted model there (naming the streams that use it), or one that cannot be loaded or
                holds another kind of model (counted in ``streamad_model_load_errors_total``).
        """
        d = Path(model_dir)
        with self._lock:
            h = self._handles.get(d)
            if h is not None:
                return h
            if not (d / "model.json").is_file():
                from streamad.models.store import recover_model_dir

                recover_model_dir(d)
            if not (d / "model.json").is_file():
                self._count(d, False)
                users = sorted(set(self.streams_of(d)) | ({stream_id} if stream_id else set()))
                who = f"stream {', '.join(users)}: " if users else ""
                raise ModelError(f"{who}model_dir {d}: no fitted model here (no model.json); run `streamad fit "
                                 f"CONFIG -o {d}` (or `streamad fit CONFIG --per-stream`) first")
            try:
                h = self._read(d)
            except ModelError:
                self._count(d, False)
                raise
            self._handles[d] = h
            self._count(d, True)
            log.info("model %s (%s) loaded from %s for %s", h.name, h.version, d,
                     ", ".join(self.streams_of(d)) or "the pipeline")
            return h

    def load_all(self) -> list[ModelHandle]:
        """Load every directory :meth:`wanted_dirs` lists that is not loaded yet; returns their handles.

        Raises:
            ModelError: the first directory that fails (see :meth:`load`).
        """
        return [self.load(d) for d in self.wanted_dirs()]

    def adopt(self, handle: ModelHandle) -> None:
        """Record a handle an operator loaded itself (``image_model``: the pipeline's model) under its directory,
        for ``streamad_model_age_seconds`` and ``streamad_model_loads_total``; it is not hot-swapped
        (:meth:`watched_dirs` leaves it out)."""
        if not handle.dir:
            return
        d = Path(handle.dir)
        with self._lock:
            if d not in self._handles:
                self._handles[d] = handle
                self._adopted.add(d)
                self._count(d, True)

    def watched_dirs(self) -> list[Path]:
        """The loaded directories a refit may be swapped into (all but adopted ones)."""
        with self._lock:
            return [d for d in self._handles if d not in self._adopted]

    def default_handle(self) -> ModelHandle:
        """The handle of the default directory when loaded, else of the first loaded one (the pipeline's
        ``ctx.model``: eval's thresholds, fit-time checks).

        Raises:
            ModelError: nothing loaded.
        """
        with self._lock:
            if self.default_dir in self._handles:
                return self._handles[self.default_dir]  # type: ignore[index]
            if self._handles:
                return next(iter(self._handles.values()))
        raise ModelError("no model loaded: give --model MODEL_DIR or model_dir on the streams")

    def handle_for(self, stream_id: str) -> ModelHandle:
        """The model that scores stream ``stream_id`` now. Read it once per clip: a swap replaces the reference,
        never the object, so one clip is scored wholly by one model.

        Raises:
            ModelError: the stream's directory is not loaded (a stream added by a reload whose model failed).
        """
        d = self.dir_for(stream_id)
        h = self._handles.get(d) if d is not None else None  # one dict read: atomic under the GIL
        if h is None:
            raise ModelError(f"stream {stream_id}: model_dir {d}: no model loaded")
        return h

    def reload(self, model_dir: Path) -> bool:
        """Load ``model_dir`` again off the hot path and swap it in for every stream that uses it; ``True`` when
        swapped. A directory that fails to load is logged (naming it and why) and counted; the old model stays."""
        d = Path(model_dir)
        old = self._handles.get(d)
        try:
            new = self._read(d)
        except (ModelError, OSError, ValueError) as exc:
            self._count(d, False)
            log.error("model_dir %s: the new model does not load, the old one (%s) stays: %s", d,
                      old.version if old is not None else "none", redact(str(exc)))
            return False
        with self._lock:
            self._handles[d] = new
        self._count(d, True)
        log.info("model_dir %s: swapped model %s -> %s for %s", d, old.version if old is not None else "none",
                 new.version, ", ".join(self.streams_of(d)) or "the pipeline")
        return True

    def age_s(self, stream_id: str) -> float:
        """Seconds since the ``model.json`` of stream ``stream_id``'s model was written (NaN when unknown)."""
        d = self.dir_for(stream_id)
        h = self._handles.get(d) if d is not None else None
        if h is None or not h.created:
            return math.nan
        return max(0.0, time.time() - h.created)
