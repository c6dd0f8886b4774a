"""pipeline.yaml: loading, ``${ENV}`` interpolation and validation.

A pipeline is ``streams`` (sources), an ordered list of ``operators`` and ``sinks``, plus what ``fit`` and ``eval``
need (training and validation streams, the threshold method). Every part is named by its registered ``kind``.

Errors are :class:`~streamad.errors.ConfigError` with one message per problem that names the file, the key path
(``operators[2].sigma``), the line in the file, and what was expected or allowed.

Reuse: a config may start with ``extends: other.yaml`` (a path relative to the config's folder); every top-level
key the config sets replaces the other file's value, the rest is inherited. Chains are followed; cycles are errors.

Interpolation: in every string value, ``${VAR}`` is replaced by the environment variable (an error when it is
unset) and ``${VAR:-default}`` falls back to ``default`` when it is unset or empty. ``$$`` gives a literal ``$``.
YAML is read with ``yaml.safe_load`` semantics: no Python objects are ever constructed from the file.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from streamad.builtin import load_builtin_parts
from streamad.errors import ConfigError
from streamad.registry import OPERATORS, SINKS, SOURCES, Registry

__all__ = ["PipelineConfig", "load_config", "load_config_text", "interpolate", "RuntimeConfig", "ThresholdConfig",
           "HttpConfig"]

log = logging.getLogger("streamad.config")

MAX_CONFIG_BYTES = 1 << 20
"""Largest pipeline.yaml read (bytes); a config is a few kilobytes."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and sequences in a config."""
MAX_YAML_NODES = 100_000
"""Most YAML nodes a config may stand for once its aliases are expanded (an alias bomb is refused before it is
built)."""
MAX_QUEUE_SIZE = 10_000
"""Largest ``runtime.queue_size`` (messages per queue: each may hold a decoded frame)."""

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, env: dict[str, str] | None = None, where: str = "") -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in ``text``.

    Raises:
        ConfigError: ``${VAR}`` names an unset variable and gives no default.
    """
    env = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(f"{where}: environment variable {name} is not set (write ${{{name}:-default}} "
                                  f"to give a default)")
            return default
        return value

    return _VAR.sub(sub, text)


class ThresholdConfig(BaseModel):
    """How the image threshold is set at fit time.

    Attributes:
        method: ``f1_adaptive`` picks the raw score maximising F1 on the labelled validation streams (anomalib
            ``F1AdaptiveThreshold``); ``manual`` uses ``value`` (raw model units, anomalib ``ManualThreshold``);
            ``false_alarm_rate`` and ``quantile`` need no labels: they use normal footage held out from training
            (``fit.validation``), see :mod:`streamad.models.label_free`.
        value: the manual threshold in raw score units.
        events_per_hour: ``false_alarm_rate``: the lowest threshold at which the pipeline's alert operator,
            replayed over the held-out footage, raises at most this many events per hour.
        q: ``quantile``: the threshold is this quantile of the held-out normal frame scores (0 < q < 1).
    """

    model_config = ConfigDict(extra="forbid")
    method: Literal["f1_adaptive", "manual", "false_alarm_rate", "quantile"] = "f1_adaptive"
    value: float | None = None
    events_per_hour: float | None = Field(None, gt=0, le=3600)
    q: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _setting_of_the_method(self) -> "ThresholdConfig":
        need = {"manual": "value", "false_alarm_rate": "events_per_hour", "quantile": "q"}.get(self.method)
        if need is not None and getattr(self, need) is None:
            raise ValueError(f"method {self.method} needs {need}")
        return self


class HttpConfig(BaseModel):
    """The operations endpoint of ``streamad serve`` (``/healthz``, ``/readyz``, ``/metrics``).

    Attributes:
        host: address to bind; loopback unless set (``0.0.0.0`` exposes it to the network).
        port: TCP port (``0`` = any free port).
    """

    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(8081, ge=0, le=65535)


class RuntimeConfig(BaseModel):
    """Dataflow engine settings.

    Attributes:
        queue_size: capacity (messages) of each bounded queue between stages.
        live_policy: what a live stream does when its ingress queue is full: ``drop_oldest`` (default),
            ``drop_newest`` or ``block``. File streams always block (lossless).
        max_active_streams: file streams decoded concurrently (others wait their turn); live streams are all active.
        grace_period_s: on SIGINT/SIGTERM, seconds allowed to drain queues and flush sinks before exiting.
        batch_size: most messages a batching stage (the model) handles in one call across streams; only messages
            already waiting are batched, never delayed (1 = off).
        http: serve ``/healthz``, ``/readyz`` and ``/metrics`` on this address (``serve`` only; off when unset).
        watch_config: ``serve`` re-reads the config file when it changes (SIGHUP always does).
        watch_interval_s: how often the config file is checked for changes (seconds).
        model_watch_interval_s: ``serve`` checks every model directory in use this often (seconds; the SHA-256
            of its ``model.json``) and swaps in a refitted model without a restart; 0 = only on SIGHUP.
    """

    model_config = ConfigDict(extra="forbid")
    queue_size: int = Field(16, ge=1, le=MAX_QUEUE_SIZE)
    live_policy: Literal["drop_oldest", "drop_newest", "block"] = "drop_oldest"
    max_active_streams: int = Field(4, ge=1, le=1024)
    grace_period_s: float = Field(10.0, gt=0, le=3600)
    batch_size: int = Field(1, ge=1, le=1024)
    http: HttpConfig | None = None
    watch_config: bool = True
    watch_interval_s: float = Field(1.0, gt=0, le=3600)
    model_watch_interval_s: float = Field(5.0, ge=0, le=86400)


def _union(registry: Registry, family: str) -> Any:
    configs = []
    for name, cls in registry.items():
        cfg = cls.Config
        kind_field = cfg.model_fields.get("kind")
        if kind_field is None or kind_field.annotation != Literal[name]:  # type: ignore[comparison-overlap]
            raise TypeError(f"{family} {name}: its Config.kind must be Literal[{name!r}]")
        configs.append(cfg)
    if len(configs) == 1:
        return configs[0]
    return Annotated[Union[tuple(configs)], Field(discriminator="kind")]  # type: ignore[return-value]


_MODEL_CACHE: dict[str, type[BaseModel]] = {}


def _pipeline_model() -> type[BaseModel]:
    """The pydantic model of a whole pipeline.yaml, built from the registered parts."""
    if "pipeline" in _MODEL_CACHE:
        return _MODEL_CACHE["pipeline"]
    load_builtin_parts()
    source_t = _union(SOURCES, "source")
    op_t = _union(OPERATORS, "operator")
    sink_t = _union(SINKS, "sink")
    fit_t = create_model(
        "FitConfig",
        __config__=ConfigDict(extra="forbid"),
        train=(list[source_t], ...),  # type: ignore[valid-type]
        validation=(list[source_t], []),  # type: ignore[valid-type]
        threshold=(ThresholdConfig, ThresholdConfig()),
        seed=(int, 0),
        record_dir=(Union[str, None], None),  # recordings of live fit streams (streamad.runtime.fit_streams)
    )
    eval_t = create_model(
        "EvalConfig",
        __config__=ConfigDict(extra="forbid"),
        streams=(list[source_t], ...),  # type: ignore[valid-type]
    )
    model = create_model(
        "PipelineConfig",
        __config__=ConfigDict(extra="forbid"),
        name=(str, "pipeline"),
        data_root=(Union[str, None], None),
        model_dir=(Union[str, None], None),
        streams=(list[source_t], []),  # type: ignore[valid-type]
        operators=(list[op_t], ...),  # type: ignore[valid-type]
        sinks=(list[sink_t], []),  # type: ignore[valid-type]
        fit=(Union[fit_t, None], None),  # type: ignore[valid-type]
        eval=(Union[eval_t, None], None),  # type: ignore[valid-type]
        runtime=(RuntimeConfig, RuntimeConfig()),
    )
    _MODEL_CACHE["pipeline"] = model
    return model


class PipelineConfig:
    """A validated pipeline config plus where it came from.

    Attributes:
        spec: the validated pydantic object (``.name``, ``.streams``, ``.operators``, ``.sinks``, ``.fit``,
            ``.eval``, ...); its fields are also read as attributes of this object (``cfg.name``).
        path: the file it was read from (``None`` for text).
        data_root: resolved data root: the config's ``data_root``, else ``$STREAMAD_DATA``, else ``None``.
        model_dir: the ``model_dir`` path (relative paths are relative to the working directory, like every
            output path in a config), or ``None``.
        raw_streams: the ``streams`` entries as written (after ``extends``, before ``${VAR}`` interpolation, so
            holding ``${CAM_PASSWORD}``, not the password), one per entry of ``spec.streams``; ``None`` for a
            config not read from YAML. ``serve --group`` fingerprints them (:mod:`streamad.runtime.group`).
    """

    def __init__(self, spec: Any, path: Path | None, raw_streams: list[Any] | None = None) -> None:
        self.spec = spec
        self.path = path
        self.raw_streams = raw_streams
        root = spec.data_root or os.environ.get("STREAMAD_DATA") or None
        self.data_root = Path(root).expanduser() if root else None
        self.model_dir = Path(spec.model_dir).expanduser() if spec.model_dir else None

    def __getattr__(self, item: str) -> Any:
        if item == "spec":  # not set yet (copy / unpickle): no recursion
            raise AttributeError(item)
        return getattr(self.spec, item)


def _interpolate_tree(node: Any, where: str, env: dict[str, str] | None) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, where)
    if isinstance(node, list):
        return [_interpolate_tree(v, f"{where}[{i}]", env) for i, v in enumerate(node)]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, f"{where}.{k}" if where else str(k), env) for k, v in node.items()}
    return node


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node of ``loc`` that exists in the YAML node tree."""
    node, line = root, None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(key):
                    nxt, line = v, k.start_mark.line + 1
                    break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        elif isinstance(node, yaml.SequenceNode):
            node = None
        else:
            # pydantic adds the union tag (e.g. 'clip_window') to the path: it is not a YAML key
            continue
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _format_loc(loc: tuple[Any, ...], kinds: set[str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in kinds:
            continue  # discriminator tag inserted by pydantic
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _format_errors(err: ValidationError, name: str, root: yaml.Node | None) -> str:
    kinds = set(OPERATORS.names()) | set(SINKS.names()) | set(SOURCES.names())
    lines = []
    for e in err.errors(include_url=False):
        loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x in kinds))
        where = _format_loc(loc, kinds)
        line = _line_of(root, loc)
        at = f"{name}:{line}" if line else name
        msg = e["msg"]
        if e["type"] == "union_tag_invalid":
            ctx = e.get("ctx", {})
            msg = f"unknown kind {ctx.get('tag')!r}; allowed: {ctx.get('expected_tags')}"
        elif e["type"] == "union_tag_not_found":
            msg = "missing 'kind' (which part this is)"
        elif e["type"] == "extra_forbidden":
            parent = e["loc"][:-1]
            msg = f"unknown key {e['loc'][-1]!r}" + _allowed_keys_hint(err, parent)
        elif "input" in e and not isinstance(e["input"], (dict, list)):
            msg = f"{msg}, got {e['input']!r}"
        lines.append(f"{at}: {where}: {msg}")
    return "\n".join(lines)


def _allowed_keys_hint(err: ValidationError, parent: tuple[Any, ...]) -> str:
    # The model class at 'parent' is not exposed by pydantic; list the keys of the kind instead when known.
    for part in reversed(parent):
        if isinstance(part, str):
            for reg in (OPERATORS, SINKS, SOURCES):
                if part in reg.names():
                    keys = [k for k in reg.get(part).Config.model_fields if k != "kind"]
                    return f"; allowed for {part}: {', '.join(keys)}"
    return ""


def _check_shape(text: str, name: str) -> None:
    """Refuse a config too large, nested too deeply or whose aliases expand to too many nodes, before PyYAML builds
    it (its composer recurses per level, and aliases expand exponentially when the tree is walked).

    Raises:
        ConfigError: over :data:`MAX_CONFIG_BYTES`, :data:`MAX_YAML_DEPTH` or :data:`MAX_YAML_NODES` (names the
            file and, for depth, the line).
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{name}: config is larger than {MAX_CONFIG_BYTES} bytes; a pipeline.yaml is a few KB")
    stack: list[list[Any]] = []  # open collections: [anchor, expanded node count]
    sizes: dict[str, int] = {}
    done = 0

    def add(n: int) -> None:
        nonlocal done
        if stack:
            stack[-1][1] += n
        else:
            done += n
        if done + sum(c for _, c in stack) > MAX_YAML_NODES:
            raise ConfigError(f"{name}: the YAML stands for more than {MAX_YAML_NODES} values once its aliases "
                              f"(*name) are expanded; refusing it")

    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            stack.append([ev.anchor, 1])
            if len(stack) > MAX_YAML_DEPTH:
                raise ConfigError(f"{name}:{ev.start_mark.line + 1}: YAML nested deeper than {MAX_YAML_DEPTH} "
                                  f"levels")
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, n = stack.pop()
            if anchor:
                sizes[anchor] = n
            add(n)
        elif isinstance(ev, yaml.ScalarEvent):
            if ev.anchor:
                sizes[ev.anchor] = 1
            add(1)
        elif isinstance(ev, yaml.AliasEvent):
            add(sizes.get(ev.anchor, 1))


def _parse(text: str, name: str) -> tuple[dict[str, Any], yaml.Node | None]:
    try:
        _check_shape(text, name)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{at}: malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a mapping with 'streams', 'operators' and 'sinks', "
                          f"got {type(data).__name__}")
    return data, root


def _resolve_extends(data: dict[str, Any], name: str, path: Path | None, seen: tuple[Path, ...] = ()) -> dict:
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data
    if not isinstance(parent_ref, str):
        raise ConfigError(f"{name}: extends: expected a file path, got {parent_ref!r}")
    base = path.parent if path is not None else Path.cwd()
    ppath = (base / parent_ref).resolve()
    if ppath in seen:
        raise ConfigError(f"{name}: extends: cycle through {ppath}")
    try:
        ptext = ppath.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{name}: extends: cannot read {ppath}: {exc.strerror or exc}") from None
    parent, _ = _parse(ptext, str(ppath))
    parent = _resolve_extends(parent, str(ppath), ppath, (*seen, ppath))
    return {**parent, **data}


def load_config_text(text: str, name: str = "<config>", path: Path | None = None,
                     env: dict[str, str] | None = None) -> PipelineConfig:
    """Parse, interpolate and validate a pipeline config given as YAML text.

    Raises:
        ConfigError: malformed YAML, unset variable, unknown kind, unknown key, wrong type (one line each).
    """
    data, root = _parse(text, name)
    if "extends" in data:
        root = None  # line numbers would point into the wrong file for inherited keys
    data = _resolve_extends(data, name, path)
    raw_streams = copy.deepcopy(data.get("streams"))
    try:
        data = _interpolate_tree(data, "", env)
    except ConfigError as exc:  # name the file too: the key path alone does not say which config
        raise ConfigError(f"{name}: {exc}") from None
    schema = _pipeline_model()
    _canonical_kinds(data, name)
    try:
        spec = schema.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, name, root)) from None
    return PipelineConfig(spec, path, raw_streams if isinstance(raw_streams, list) else None)


def _canonical_kinds(data: dict[str, Any], name: str) -> None:
    """Rename deprecated operator kinds (``score`` -> ``video_model``) in place, with a warning naming the file."""
    ops = data.get("operators")
    if not isinstance(ops, list):
        return
    for i, op in enumerate(ops):
        if isinstance(op, dict) and isinstance(op.get("kind"), str):
            kind, old = OPERATORS.canonical(op["kind"])
            if old:
                warnings.warn(f"{name}: operators[{i}]: kind {op['kind']!r} is deprecated; write kind: {kind}",
                              DeprecationWarning, stacklevel=3)
                log.warning("%s: operators[%d]: kind %r is deprecated; write kind: %s", name, i, op["kind"], kind)
                op["kind"] = kind


def load_config(path: str | Path, env: dict[str, str] | None = None) -> PipelineConfig:
    """Read and validate ``path``.

    Raises:
        ConfigError: the file is missing or unreadable, or its content is invalid (see :func:`load_config_text`).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config: {exc}") from None
    return load_config_text(text, name=str(p), path=p.resolve(), env=env)
