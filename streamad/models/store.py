"""Save and load a fitted model directory.

Layout::

    MODEL_DIR/model.json    metadata: format version, model kind/version/config/params, post-processing stats
                            (min, max, image threshold), the operators it was fitted with, fit statistics
    MODEL_DIR/weights.npz   named float arrays (numpy ``.npz``, loaded with ``allow_pickle=False``)
    MODEL_DIR/openvino/     optional: ``model.xml`` / ``model.bin`` + ``export.json`` written by ``streamad export``
                            (image models; :mod:`streamad.export`)
    MODEL_DIR/onnx/         optional: ``model.onnx`` + ``export.json``

Saving is atomic: the whole directory is written as a temporary sibling ``.NAME.new-TOKEN`` (files and directory
fsynced), then swapped in with two renames (``NAME`` -> ``.NAME.old-TOKEN``, ``.NAME.new-TOKEN`` -> ``NAME``, the
parent fsynced) and the old copy removed. A crash at any point leaves ``NAME`` holding the complete old or the complete
new model, never ``weights.npz`` of one fit with ``model.json`` of another; in the instant between the two renames
``NAME`` is missing, and :func:`recover_model_dir` (called by every load and save) puts the complete copy back.
The next save removes leftovers. Exports (``openvino/``, ``onnx/``) belong to the old weights and are not carried
over; any other file of the old directory is copied into the new one. Because the directory is replaced as a whole,
saving needs write access to its parent, a symlinked ``MODEL_DIR`` is replaced by a real directory, and a process
whose working directory is ``MODEL_DIR`` keeps the old (deleted) one.

Loading never unpickles and never imports code named by the file: the model kind must be a registered video model
(``VIDEO_MODELS``) or image model (``IMAGE_MODELS``). Image models store their fitted arrays (memory bank, Gaussians,
PCA) but not their backbone's weights, which come from the package or the configured file (checked by SHA-256).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from streamad import __version__
from streamad.errors import ModelError
from streamad.fsync import fsync_path
from streamad.models.base import VideoModel
from streamad.models.image.base import ImageModel
from streamad.models.postprocess import PostProcess
from streamad.registry import MODEL_REGISTRIES

__all__ = ["save_model", "recover_model_dir", "load_model", "load_model_of_kind", "read_metadata", "read_postprocess",
           "FORMAT", "FORMAT_VERSION"]

FORMAT = "streamad-model"
FORMAT_VERSION = 1


_NEW, _OLD = ".new-", ".old-"
_STALE = ("openvino", "onnx")  # exports of an earlier fit: they no longer match new weights



def _leftovers(d: Path, marker: str) -> list[Path]:
    """Siblings ``.NAME<marker>TOKEN`` of ``d`` left by an interrupted save, newest token last."""
    prefix = f".{d.name}{marker}"
    if not d.parent.is_dir():
        return []
    return sorted(p for p in d.parent.iterdir() if p.name.startswith(prefix))


def recover_model_dir(model_dir: str | Path) -> None:
    """Finish a save of ``model_dir`` that a crash interrupted between its two renames.

    When ``model_dir`` is missing but a save left ``.NAME.old-TOKEN`` (the complete old model, renamed away) and
    ``.NAME.new-TOKEN`` (the complete new one, written and fsynced before the first rename), the new one is renamed
    into place; with only the old one, it is renamed back. Does nothing when ``model_dir`` exists. Safe to call
    from several processes at once (a rename another process did first is not an error).
    """
    d = Path(os.path.abspath(model_dir))  # "." or "x/.." have no name of their own
    if d.exists():
        return
    for old in reversed(_leftovers(d, _OLD)):
        token = old.name[len(f".{d.name}{_OLD}"):]
        new = d.parent / f".{d.name}{_NEW}{token}"
        try:
            os.rename(new if new.is_dir() else old, d)
        except FileNotFoundError:
            continue  # another process recovered it first, or this pair is gone
        except OSError:
            if d.exists():
                return
            raise
        return


def _remove_leftovers(d: Path) -> None:
    for p in _leftovers(d, _NEW) + _leftovers(d, _OLD):
        shutil.rmtree(p, ignore_errors=True)


def save_model(model_dir: str | Path, model: VideoModel | ImageModel, postprocess: PostProcess,
               extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.json`` and ``weights.npz`` as directory ``model_dir`` atomically; returns the directory.

    The new directory is complete before it replaces the old one (see the module docstring): a reader sees the
    old model or the new one, never a mix. Files of the old directory other than ``model.json``, ``weights.npz``
    and the exports (``openvino/``, ``onnx/``, stale after a refit and dropped) are copied over. Leftovers of an
    interrupted earlier save are recovered (:func:`recover_model_dir`) or removed first.

    Args:
        model: a fitted model.
        postprocess: the fitted post-processing (written as ``model.json["postprocess"]``,
            :meth:`PostProcess.to_json`).
        extra: more metadata (pipeline operators, fit statistics).

    Raises:
        OSError: the directory or its parent cannot be written (the old model, if any, is left in place).
    """
    d = Path(os.path.abspath(model_dir))  # "." or "x/.." have no name of their own
    d.parent.mkdir(parents=True, exist_ok=True)
    recover_model_dir(d)
    _remove_leftovers(d)
    if d.exists() and not d.is_dir():
        raise NotADirectoryError(f"{d}: model directory path is a file")
    params, arrays = model.state()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "streamad_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "model": {"kind": model.kind, "version": model.version, "config": model.config.model_dump(mode="json"),
                  "params": params},
        "postprocess": postprocess.to_json(),
        **(extra or {}),
    }
    token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    new = d.parent / f".{d.name}{_NEW}{token}"
    new.mkdir()
    try:
        if d.is_dir():  # keep what else belongs to the directory (not the replaced files, not stale exports)
            for p in d.iterdir():
                if p.name in ("model.json", "weights.npz", *_STALE):
                    continue
                if p.is_dir() and not p.is_symlink():
                    shutil.copytree(p, new / p.name, symlinks=True)
                else:
                    shutil.copy2(p, new / p.name, follow_symlinks=False)
        with open(new / "weights.npz", "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
            fh.flush()
            os.fsync(fh.fileno())
        with open(new / "model.json", "w", encoding="utf-8") as fh:
            fh.write(json.dumps(meta, indent=2, sort_keys=False))
            fh.flush()
            os.fsync(fh.fileno())
        fsync_path(new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    old = d.parent / f".{d.name}{_OLD}{token}"
    had_old = d.is_dir()
    if had_old:
        os.rename(d, old)  # from here until the next rename, recover_model_dir() completes the swap
    try:
        os.rename(new, d)
    except FileNotFoundError:
        if not d.is_dir():  # else a concurrent load's recover_model_dir() did this rename for us
            raise
    fsync_path(d.parent)
    if had_old:
        shutil.rmtree(old, ignore_errors=True)
    return Path(model_dir)


def read_metadata(model_dir: str | Path) -> dict[str, Any]:
    """The parsed ``model.json`` of ``model_dir``.

    Raises:
        ModelError: the directory or file is missing, not JSON, or not a streamad model of a known format version.
    """
    recover_model_dir(model_dir)
    p = Path(model_dir) / "model.json"
    if not p.is_file():
        raise ModelError(f"{p}: no model.json (run `streamad fit CONFIG -o {model_dir}` first)")
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{p}: unreadable model metadata: {exc}") from None
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{p}: not a {FORMAT} v{FORMAT_VERSION} file "
                         f"(format={meta.get('format')!r}, version={meta.get('format_version')!r})")
    return meta


def _meta_changed(model_dir: str | Path, meta: dict[str, Any]) -> bool:
    try:
        return read_metadata(model_dir) != meta
    except ModelError:
        return True


def load_model(model_dir: str | Path) -> tuple[VideoModel | ImageModel, dict[str, Any]]:
    """Rebuild the fitted model of ``model_dir``; returns ``(model, metadata)``.

    ``model.json`` is read again after ``weights.npz``: when a concurrent :func:`save_model` replaced the directory
    in between, the new pair is read (at most three tries), so the pair returned is always of one save.

    Raises:
        ModelError: missing files, an unknown model kind, or weights that do not match the metadata.
    """
    for attempt in range(3):  # a save that swapped the directory while we read: read the new pair again
        meta = read_metadata(model_dir)
        wpath = Path(model_dir) / "weights.npz"
        try:
            with np.load(wpath, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            if attempt < 2 and _meta_changed(model_dir, meta):
                continue
            raise ModelError(f"{wpath}: cannot read weights: {exc}") from None
        if not _meta_changed(model_dir, meta):
            break
    else:
        raise ModelError(f"{model_dir}: the model was replaced three times while being read; try again")
    where = Path(model_dir) / "model.json"
    m = meta.get("model")
    if not isinstance(m, dict) or not all(k in m for k in ("kind", "config", "params")):
        raise ModelError(f"{where}: no 'model' object with kind, config and params; refit the model")
    kind = m.get("kind")
    cls: Any = next((reg.get(kind) for reg in MODEL_REGISTRIES if kind in reg.names()), None)
    if cls is None:
        known = ", ".join(n for reg in MODEL_REGISTRIES for n in reg.names())
        raise ModelError(f"{model_dir}: unknown model kind {kind!r}; known: {known}")
    try:
        config = cls.Config.model_validate(m["config"])
    except ValueError as exc:
        raise ModelError(f"{where}: model.config does not fit a {kind!r} model: {exc}") from None
    model = cls(config)
    model.load_state(m["params"], arrays)
    return model, meta


def read_postprocess(model_dir: str | Path | None) -> PostProcess:
    """The fitted :class:`~streamad.models.postprocess.PostProcess` of ``model_dir``.

    Raises:
        ModelError: no directory given, what :func:`read_metadata` raises, or missing / malformed ``postprocess``
            statistics.
    """
    if model_dir is None:
        raise ModelError("no model directory: give --model MODEL_DIR or set model_dir in the config")
    meta = read_metadata(model_dir)
    return PostProcess.from_json(meta.get("postprocess"), str(Path(model_dir) / "model.json"))


def load_model_of_kind(model_dir: str | Path | None, kind: str, operator: str
                       ) -> tuple[VideoModel | ImageModel, dict[str, Any]]:
    """:func:`load_model` for an operator whose config names model ``kind``.

    Raises:
        ModelError: no directory given, what :func:`load_model` raises, or a model of another kind (names the
            directory and ``operator``).
    """
    if model_dir is None:
        raise ModelError("no model directory: give --model MODEL_DIR or set model_dir in the config")
    model, meta = load_model(model_dir)
    if model.kind != kind:
        raise ModelError(f"{model_dir}: holds a {model.kind!r} model but the config's {operator} operator uses "
                         f"{kind!r}")
    return model, meta
