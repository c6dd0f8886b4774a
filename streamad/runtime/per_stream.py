"""``streamad fit --per-stream``: one model per camera, fitted in one command.

Every entry of ``fit.train`` is one camera's training footage and gets its own model: the config is fitted once
per entry (:func:`streamad.runtime.jobs.fit`) with ``fit.train`` = that entry alone.

* **Stream id**: the entry's ``id`` (required: it names the model and pairs the footage).
* **Validation**: the ``fit.validation`` entries whose ``id`` equals the train entry's id, plus every validation
  entry without an ``id`` (footage shared by all cameras). A train entry with no validation of its own and none
  shared is fitted without validation (then ``fit.threshold.method`` must be ``manual``; the error says so).
* **Model directory** (first that is set): the train entry's ``model_dir``; the ``model_dir`` of the ``streams``
  entry with the same ``id`` (so ``serve`` finds the model where the stream names it); the ``-o`` directory of the
  command (``{stream}`` replaced by the id; without ``{stream}``, the id is appended as a sub-folder). ``{stream}``
  is replaced by :func:`~streamad.models.model_set.stream_path_part` of the id, as ``serve`` does.

The fits run in parallel in worker processes, at most ``os.cpu_count()`` of them processing footage at once (each
fit is single-process, so this uses the cores a single fit leaves idle). When cameras are to be recorded (``kind:
live`` entries, no ``--refresh``), every camera gets its own worker (up to :data:`MAX_RECORDING_WORKERS`) so all
are recorded at the same time, waiting only in real time, and the workers take turns on the cores for the fitting
(a semaphore of ``os.cpu_count()`` slots, held after the recording): 20 cameras recorded for 10 minutes take 10
minutes of recording, not 100 on two cores. A stream that fails does not stop the others: the failures are
collected and reported together at the end (:class:`PerStreamFitError`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamad.config import PipelineConfig, load_config
from streamad.errors import ConfigError, StreamadError
from streamad.models.model_set import resolve_model_dir

__all__ = ["PerStreamFit", "PerStreamFitError", "fit_per_stream", "per_stream_plan", "MAX_RECORDING_WORKERS"]

log = logging.getLogger("streamad.fit")

MAX_RECORDING_WORKERS = 32
"""Most worker processes of ``fit --per-stream`` (cameras recorded at the same time)."""

_CPU_SLOTS: Any = None  # in a worker: the semaphore of the fits that process footage at once (_init_worker)


def _init_worker(slots: Any) -> None:
    global _CPU_SLOTS
    _CPU_SLOTS = slots


@dataclass
class PerStreamFit:
    """Outcome of :func:`fit_per_stream`.

    Attributes:
        models: ``{stream id: model directory written}``.
        errors: ``{stream id: why its fit failed}`` (empty when every fit succeeded).
        seconds: ``{stream id: seconds its fit took}``.
    """

    models: dict[str, Path] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


class PerStreamFitError(StreamadError):
    """Some per-stream fits failed (each named with its reason; the others' models were written). ``exit_code``
    is the failures' own exit code when they all share one, else 1."""

    def __init__(self, result: PerStreamFit, codes: list[int]) -> None:
        self.result = result
        self.exit_code = codes[0] if codes and all(c == codes[0] for c in codes) else 1
        why = "; ".join(f"stream {sid}: {msg}" for sid, msg in result.errors.items())
        super().__init__(f"fit --per-stream: {len(result.errors)} of {len(result.errors) + len(result.models)} "
                         f"stream(s) failed: {why}")


def per_stream_plan(cfg: PipelineConfig, output: Path | None) -> list[tuple[int, str, Path]]:
    """``(fit.train index, stream id, model directory)`` of each train entry (module doc for the rules).

    Raises:
        ConfigError: no ``fit`` section, an entry without ``id``, two entries with one id, or no model directory
            for an entry (each names the entry).
    """
    if cfg.fit is None or not cfg.fit.train:
        raise ConfigError(f"{cfg.path}: fit --per-stream: no fit.train entries (one per camera)")
    served = {c.id: getattr(c, "model_dir", None) for c in cfg.streams if c.id}
    plan, seen = [], set()
    for i, c in enumerate(cfg.fit.train):
        where = f"{cfg.path}: fit.train[{i}]"
        if not c.id:
            raise ConfigError(f"{where}: fit --per-stream needs an id on every training stream (the camera's "
                              f"stream id: it names the model and pairs fit.validation entries)")
        if c.id in seen:
            raise ConfigError(f"{where}: stream id {c.id!r} repeated: fit --per-stream fits one model per id")
        seen.add(c.id)
        template = c.model_dir or served.get(c.id)
        if template is None and output is not None:
            template = str(output) if "{stream}" in str(output) else str(Path(output) / "{stream}")
        if template is None:
            raise ConfigError(f"{where} (stream {c.id}): no model directory: set model_dir on this entry or on the "
                              f"streams entry with id {c.id!r}, or give -o DIR")
        plan.append((i, c.id, resolve_model_dir(template, c.id, None)))  # type: ignore[arg-type]
    return plan


def _stream_config(cfg: PipelineConfig, index: int) -> PipelineConfig:
    """``cfg`` with ``fit.train`` = entry ``index`` and ``fit.validation`` = its own and the shared entries."""
    fit = cfg.fit
    train = fit.train[index]
    validation = [v for v in fit.validation if not v.id or v.id == train.id]
    spec = cfg.spec.model_copy(update={"fit": fit.model_copy(update={"train": [train], "validation": validation})})
    return PipelineConfig(spec, cfg.path, cfg.raw_streams)


def _fit_one(path: str, env: dict[str, str] | None, index: int, model_dir: str, quiet: bool,
             refresh: bool = False) -> tuple[str | None, int, float]:
    """In a worker: fit train entry ``index`` of the config at ``path`` into ``model_dir``; returns
    ``(error message or None, exit code, seconds)``."""
    import time

    from streamad.redact import redact
    from streamad.runtime.jobs import fit

    t0 = time.perf_counter()
    try:
        cfg = _stream_config(load_config(path, env=env), index)
        fit(cfg, Path(model_dir), quiet=quiet, refresh=refresh, cpu_slot=_CPU_SLOTS)
    except StreamadError as exc:
        return redact(str(exc)), exc.exit_code, time.perf_counter() - t0
    except Exception as exc:  # reported with the stream's name, the other fits go on
        return redact(f"{type(exc).__name__}: {exc}"), 1, time.perf_counter() - t0
    return None, 0, time.perf_counter() - t0


def fit_per_stream(cfg: PipelineConfig, output: Path | None = None, quiet: bool = True,
                   workers: int | None = None, env: dict[str, str] | None = None,
                   refresh: bool = False, cores: int | None = None) -> PerStreamFit:
    """Fit one model per ``fit.train`` entry of ``cfg`` into each stream's model directory (module doc).

    Args:
        cfg: a config read from a file (the workers read it again). output: the ``-o`` directory (a template
            with ``{stream}``, else the parent of one folder per stream id). quiet: no progress bars.
        workers: worker processes (default: one per entry up to :data:`MAX_RECORDING_WORKERS` when cameras are
            recorded, else ``min(entries, cores)``; 1 fits in this process, one after the other).
        cores: fits processing footage at once (default ``os.cpu_count()``). env: the variables the config was interpolated with (default the environment).
        refresh: fit each stream on its newest recording under ``fit.record_dir`` instead of recording again
            (``fit --per-stream --refresh``, :func:`streamad.runtime.jobs.fit`).

    Returns:
        what was written, per stream id.

    Raises:
        ConfigError: what :func:`per_stream_plan` raises (nothing is fitted then), or a config not read from a file.
        PerStreamFitError: some fits failed (after all of them ran; each failure named).
    """
    if cfg.path is None:
        raise ConfigError("fit --per-stream needs a config file (its workers read it)")
    plan = per_stream_plan(cfg, output)
    cores = cores or os.cpu_count() or 1
    records = not refresh and any(getattr(c, "kind", None) == "live"
                                  for c in [*cfg.fit.train, *cfg.fit.validation])  # type: ignore[union-attr]
    n = workers or min(len(plan), MAX_RECORDING_WORKERS if records else cores)
    res = PerStreamFit()
    codes: list[int] = []
    outcomes: dict[str, tuple[str | None, int, float]] = {}
    args = [(str(cfg.path), env, i, str(d), quiet, refresh) for i, _, d in plan]
    if n <= 1:
        for (i, sid, _), a in zip(plan, args):
            outcomes[sid] = _fit_one(*a)
    else:
        ctx = multiprocessing.get_context("spawn")
        slots = ctx.BoundedSemaphore(cores)
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker, initargs=(slots,)) as pool:
            futures = {sid: pool.submit(_fit_one, *a) for (_, sid, _), a in zip(plan, args)}
            for sid, fut in futures.items():
                try:
                    outcomes[sid] = fut.result()
                except Exception as exc:  # a worker that died (killed, out of memory)
                    outcomes[sid] = (f"the fit's worker process failed: {type(exc).__name__}: {exc}", 1, 0.0)
    for _, sid, d in plan:
        err, code, seconds = outcomes[sid]
        res.seconds[sid] = seconds
        if err is None:
            res.models[sid] = d
        else:
            res.errors[sid] = err
            codes.append(code)
            log.error("fit --per-stream: stream %s failed: %s", sid, err)
    if res.errors:
        raise PerStreamFitError(res, codes)
    return res
