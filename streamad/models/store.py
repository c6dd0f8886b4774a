"""Save and load a fitted model directory.

Layout::

    MODEL_DIR/model.json    metadata: format version, model kind/version/config/params, post-processing stats
                            (min, max, image threshold), the operators it was fitted with, fit statistics
    MODEL_DIR/weights.npz   named float arrays (numpy ``.npz``, loaded with ``allow_pickle=False``)
    MODEL_DIR/openvino/     optional: ``model.xml`` / ``model.bin`` + ``export.json`` written by ``streamad export``
                            (image models; :mod:`streamad.export`)
    MODEL_DIR/onnx/         optional: ``model.onnx`` + ``export.json``

Loading never unpickles and never imports code named by the file: the model kind must be a registered video model
(``VIDEO_MODELS``) or image model (``IMAGE_MODELS``). Image models store their fitted arrays (memory bank, Gaussians,
PCA) but not their backbone's weights, which come from the package or the configured file (checked by SHA-256).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from streamad import __version__
from streamad.errors import ModelError
from streamad.models.base import VideoModel
from streamad.models.image.base import ImageModel
from streamad.models.postprocess import PostProcess
from streamad.registry import MODEL_REGISTRIES

__all__ = ["save_model", "load_model", "load_model_of_kind", "read_metadata", "read_postprocess", "FORMAT",
           "FORMAT_VERSION"]

FORMAT = "streamad-model"
FORMAT_VERSION = 1


def save_model(model_dir: str | Path, model: VideoModel | ImageModel, postprocess: PostProcess,
               extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.json`` and ``weights.npz`` into ``model_dir`` (created if needed); returns the directory.

    Args:
        model: a fitted model.
        postprocess: the fitted post-processing (written as ``model.json["postprocess"]``,
            :meth:`PostProcess.to_json`).
        extra: more metadata (pipeline operators, fit statistics).
    """
    d = Path(model_dir)
    d.mkdir(parents=True, exist_ok=True)
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
    tmp = d / "weights.npz.tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
    os.replace(tmp, d / "weights.npz")
    (d / "model.json.tmp").write_text(json.dumps(meta, indent=2, sort_keys=False), encoding="utf-8")
    os.replace(d / "model.json.tmp", d / "model.json")
    for stale in ("openvino", "onnx"):  # exports of an earlier fit no longer match
        shutil.rmtree(d / stale, ignore_errors=True)
    return d


def read_metadata(model_dir: str | Path) -> dict[str, Any]:
    """The parsed ``model.json`` of ``model_dir``.

    Raises:
        ModelError: the directory or file is missing, not JSON, or not a streamad model of a known format version.
    """
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


def load_model(model_dir: str | Path) -> tuple[VideoModel | ImageModel, dict[str, Any]]:
    """Rebuild the fitted model of ``model_dir``; returns ``(model, metadata)``.

    Raises:
        ModelError: missing files, an unknown model kind, or weights that do not match the metadata.
    """
    meta = read_metadata(model_dir)
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
    wpath = Path(model_dir) / "weights.npz"
    try:
        with np.load(wpath, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{wpath}: cannot read weights: {exc}") from None
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
