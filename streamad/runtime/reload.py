"""Config reload of ``streamad serve``: on SIGHUP or a change of the config file, the ``streams`` section is
re-read and applied to the running pipeline.

* A stream whose config entry did not change keeps running untouched: same source, connection, operator state
  (windows, smoothing, open alert events). Entries are compared by their whole validated content and the data root
  they resolve against.
* A stream whose entry disappeared is drained and stopped (its open events end, as at the end of a file); once its
  end was delivered, its metric series (``stream="<id>"``) are removed from ``/metrics``, and ``/readyz`` stops
  listing it (also when it had failed). A changed entry that keeps its stream id keeps its series.
* A new or changed entry starts a new stream (a changed one after the old one drained, waiting up to 30 s).
* Only entries whose streams actually started are recorded as served. A stream that does not start (its old self
  did not drain in time) is logged as an error naming it (:class:`StreamStartError`), the other changes stay
  applied, and the next reload retries it: with ``runtime.watch_config`` at the next check of the file, otherwise at
  the next SIGHUP. ``serve --group`` applies partition assignments the same way and retries after 5 s.
* A new config that does not load (bad YAML, unknown key, missing file, unset variable) or whose streams cannot be
  built is logged as an error and changes nothing: the running pipeline goes on as it was.
* Changes to other sections (``operators``, ``sinks``, ``runtime`` ...) need a restart; reload says so in the log
  and applies the stream changes only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from streamad.config import PipelineConfig, load_config
from streamad.errors import StreamadError
from streamad.parts import BuildContext, PartConfig, Source
from streamad.redact import redact
from streamad.runtime.loop_thread import LoopThread
from streamad.runtime.pipeline import Pipeline
from streamad.runtime.ratecap import RateCap

__all__ = ["StreamSet", "ReloadPlan", "StreamStartError", "ConfigReloader", "other_sections_changed"]

log = logging.getLogger("streamad.reload")


def _key(config: PartConfig, data_root: Path | None) -> str:
    return json.dumps({"stream": config.model_dump(mode="json"), "data_root": str(data_root)}, sort_keys=True)


@dataclass
class _Entry:
    key: str
    stream_ids: list[str]


@dataclass
class ReloadPlan:
    """What applying a new ``streams`` section does: ``removed`` stream ids, ``added`` ``(source, rate cap)``
    pairs, ``kept`` stream ids (untouched), and the resulting entries."""

    removed: list[str] = field(default_factory=list)
    added: list[tuple[Source, RateCap | None]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    entries: list[_Entry] = field(default_factory=list)


class StreamSet:
    """The stream config entries a pipeline serves, and the stream ids each one expanded to."""

    def __init__(self) -> None:
        self.entries: list[_Entry] = []

    def build(self, configs: Sequence[PartConfig], ctx: BuildContext, where: str
              ) -> list[tuple[Source, RateCap | None]]:
        """Build every entry's streams (a dataset split is several) with its frame-rate cap; remember them.

        Raises:
            ConfigError, DataNotFoundError: from the entries' ``build``.
        """
        plan = self.plan(configs, ctx, where)
        self.entries = plan.entries
        return plan.added

    def plan(self, configs: Sequence[PartConfig], ctx: BuildContext, where: str) -> ReloadPlan:
        """Compare ``configs`` with the entries served now; build the sources of new and changed entries.

        Nothing runs or stops here, so a plan that raises leaves the pipeline as it was.

        Raises:
            ConfigError, DataNotFoundError: a new entry cannot be built.
            ValueError: two streams of the new section share an id.
        """
        old = {e.key: e for e in self.entries}
        plan = ReloadPlan()
        for i, cfg in enumerate(configs):
            key = _key(cfg, ctx.data_root)
            entry = old.pop(key, None)
            if entry is not None:
                plan.kept.extend(entry.stream_ids)
                plan.entries.append(entry)
                continue
            sources = cfg.build(ctx, f"{where}[{i}]")  # type: ignore[attr-defined]
            ctx.assign_models(cfg, sources)  # serve: which model directory each new stream uses
            plan.added.extend((s, RateCap.of(cfg)) for s in sources)  # one cap (and its state) per stream
            plan.entries.append(_Entry(key, [s.stream_id for s in sources]))
        ids = plan.kept + [s.stream_id for s, _ in plan.added]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"{where}: stream ids must be unique; repeated: {', '.join(dup)}")
        plan.removed = [sid for e in old.values() for sid in e.stream_ids]
        return plan

    def apply(self, plan: ReloadPlan, pipeline: Pipeline, wait_s: float = 30.0) -> None:
        """Stop the removed streams, start the added ones (a changed stream restarts once its old self drained,
        waiting up to ``wait_s`` seconds for that).

        Only entries whose streams all started are recorded as served, so the next :meth:`plan` builds the others
        again and the next apply retries them. An entry that started only some of its streams (a dataset split) has
        those stopped again. A removed stream id that the new section does not serve any more has its metric series
        removed once its end was delivered (:meth:`Pipeline.remove_stream`).

        Raises:
            StreamStartError: some streams did not start (names each stream and why, e.g. its previous self did
                not drain within ``wait_s``); every other change was applied.
        """
        served = set(plan.kept) | {src.stream_id for src, _ in plan.added}
        for sid in plan.removed:
            pipeline.remove_stream(sid, forget_metrics=sid not in served)
        failed: dict[str, str] = {}
        for src, cap in plan.added:
            try:
                pipeline.add_source(src, cap, wait_s=wait_s)
            except (TimeoutError, ValueError, RuntimeError) as exc:
                failed[src.stream_id] = redact(str(exc))
        self.entries = [e for e in plan.entries if not failed.keys() & set(e.stream_ids)]
        for e in plan.entries:
            if failed.keys() & set(e.stream_ids):  # a partly started entry: stop the rest, retried as a whole
                for sid in e.stream_ids:
                    if sid not in failed:
                        pipeline.remove_stream(sid)
        started = len(plan.added) - len(failed)
        log.info("streams: %d kept, %d stopped, %d started, %d not started", len(plan.kept), len(plan.removed),
                 started, len(failed))
        if failed:
            raise StreamStartError(failed)


class StreamStartError(RuntimeError):
    """Streams of a reload (or of a group assignment) did not start; a later reload retries them.

    Attributes:
        failed: ``{stream id: why}``.
    """

    def __init__(self, failed: dict[str, str]) -> None:
        self.failed = dict(failed)
        why = "; ".join(f"{sid}: {msg}" for sid, msg in self.failed.items())
        super().__init__(f"{len(self.failed)} stream(s) not started, retried at the next reload: {why}")


def other_sections_changed(old: PipelineConfig, new: PipelineConfig) -> list[str]:
    """Top-level sections other than ``streams`` whose content differs (secrets compare as masked)."""
    a = old.spec.model_dump(mode="json")
    b = new.spec.model_dump(mode="json")
    return sorted(k for k in set(a) | set(b) if k != "streams" and a.get(k) != b.get(k))


def _fingerprint(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class ConfigReloader(LoopThread):
    """A thread that re-reads ``path`` on request (SIGHUP) or when its content changes, and hands each valid new
    config to ``on_config``; a config that fails to load or apply is logged and ignored. :meth:`start` starts
    watching; :meth:`stop` stops (waiting up to 60 s for a reload in progress).

    Args:
        path: the pipeline.yaml being served.
        on_config: applies a loaded config (raises :class:`StreamadError`, ``ValueError`` ... to reject it).
        requests: an event set by the SIGHUP handler (cleared here); ``None`` = no signal requests.
        watch_interval_s: check the file's content this often (seconds); ``None`` = only on request.

    Attributes:
        reloads: configs applied; failures: configs rejected (both counts since start).
    """

    def __init__(self, path: Path, on_config: Callable[[PipelineConfig], None],
                 requests: threading.Event | None = None, watch_interval_s: float | None = 1.0) -> None:
        super().__init__("config-reload", join_timeout_s=60)
        self.path = Path(path)
        self.on_config = on_config
        self.requests = requests
        self.watch_interval_s = watch_interval_s
        self.reloads = 0
        self.failures = 0
        self._seen = _fingerprint(self.path)

    def _loop(self) -> None:
        next_check = time.monotonic() + (self.watch_interval_s or 0.0)
        while not self._stop.wait(0.1):
            reason = None
            if self.requests is not None and self.requests.is_set():
                self.requests.clear()
                reason = "SIGHUP"
            elif self.watch_interval_s is not None and time.monotonic() >= next_check:
                next_check = time.monotonic() + self.watch_interval_s
                if _fingerprint(self.path) != self._seen:
                    reason = "the file changed"
            if reason is not None:
                self.reload(reason)

    def reload(self, reason: str = "request") -> bool:
        """Load and apply the config now; ``True`` when it was applied."""
        self._seen = _fingerprint(self.path)
        try:
            cfg = load_config(self.path)
            self.on_config(cfg)
        except StreamStartError as exc:
            self.failures += 1
            self._seen = None  # counts as changed: the next check of the file retries the streams not started
            log.error("config reload (%s) from %s applied in part: %s", reason, self.path, redact(exc))
            return False
        except (StreamadError, ValueError, TimeoutError, RuntimeError, OSError) as exc:
            self.failures += 1
            log.error("config reload (%s) from %s failed; the running pipeline goes on unchanged: %s", reason,
                      self.path, redact(exc))
            return False
        self.reloads += 1
        log.info("config reloaded (%s) from %s", reason, self.path)
        return True

