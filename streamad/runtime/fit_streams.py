"""What ``streamad fit`` reads from live streams: bounded recordings of the cameras (a fit from a camera).

A ``kind: live`` stream in ``fit.train`` / ``fit.validation`` must be bounded (``duration_s`` and/or
``max_frames``). Before fitting, each such stream is recorded (:class:`~streamad.sources.recording.Recorder`) until
its bound, with a progress bar (frames, elapsed, ETA), and the fit then reads the recording as a ``video_file``
stream with the same id. So a fit is lossless (no live frame is dropped while the models are busy) and reproducible:
fitting again with ``kind: video_file`` streams on the recordings gives the same model. The recordings go to
``fit.record_dir`` (``<record_dir>/{train|validation}/<stream>/<UTC time>.mp4``, listed in ``model.json``), or to a
temporary folder removed after the fit when it is unset.

While recording, a camera reconnects at most :data:`FIT_MAX_RECONNECTS` times in a row without a frame; then the
fit ends with a :class:`~streamad.errors.SourceError` naming the key path, the URL (password masked) and the
reason. ``streamad fit --refresh`` records nothing: it fits on the newest recording of each live stream under
``fit.record_dir``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from streamad.errors import ConfigError, SourceError
from streamad.models.label_free import MIN_HELD_OUT_S
from streamad.parts import BuildContext, PartConfig
from streamad.redact import redact
from streamad.registry import SOURCES
from streamad.runtime.run import progress_bar
from streamad.sources.live import LiveSource, live_stream_id
from streamad.sources.recording import Recorder, newest_recording, recording_folder, recording_path

__all__ = ["FIT_MAX_RECONNECTS", "FitStreams", "check_live_bounds", "prepare_fit_streams", "expected_frames"]

log = logging.getLogger("streamad.fit")

FIT_MAX_RECONNECTS = 3
"""Most reconnects in a row without a frame a live stream gets while ``streamad fit`` records it."""


@dataclass
class FitStreams:
    """The stream configs a fit reads, live streams replaced by their recordings.

    Attributes:
        train, validation: the ``fit.train`` / ``fit.validation`` configs to read.
        recordings: per split, ``{stream id: recording path relative to record_dir}`` (empty without record_dir).
        record_dir: ``fit.record_dir`` as configured, or ``None``.
    """

    train: list[PartConfig]
    validation: list[PartConfig]
    recordings: dict[str, dict[str, str]] = field(default_factory=dict)
    record_dir: str | None = None
    _temp: Path | None = None

    def manifest(self) -> dict[str, Any] | None:
        """What ``model.json`` records under ``fit.recordings`` (``None`` when nothing was kept)."""
        if not self.record_dir or not any(self.recordings.values()):
            return None
        return {"record_dir": self.record_dir, **self.recordings}

    def cleanup(self) -> None:
        """Remove the temporary recordings (a fit without ``record_dir``); idempotent."""
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None


def _is_live(c: PartConfig) -> bool:
    return getattr(c, "kind", None) == "live"


def _stream_id(c: Any) -> str:
    return redact(c.id) if c.id else live_stream_id(c.url)


def check_live_bounds(cfg: Any) -> None:
    """Refuse unbounded live streams in ``fit.train`` / ``fit.validation``, and live held-out footage too short
    for ``fit.threshold.method: false_alarm_rate`` when every validation stream is live with ``duration_s``.

    Raises:
        ConfigError: names the key path (``fit.train[0]``) and what is needed.
    """
    for split in ("train", "validation"):
        for i, c in enumerate(getattr(cfg.fit, split)):
            if _is_live(c) and c.duration_s is None and c.max_frames is None:
                raise ConfigError(f"{cfg.path}: fit.{split}[{i}]: a live stream needs duration_s or max_frames to "
                                  f"be fitted on (how much of the camera to record)")
    val = cfg.fit.validation
    if (cfg.fit.threshold.method == "false_alarm_rate" and val
            and all(_is_live(c) and c.duration_s is not None for c in val)):
        seconds = sum(c.duration_s for c in val)
        if seconds < MIN_HELD_OUT_S:
            raise ConfigError(f"{cfg.path}: fit.validation: {seconds:g} s of held-out live footage (duration_s) is "
                              f"too short to calibrate false_alarm_rate: need at least {MIN_HELD_OUT_S:g} s")


def _file_config(path: Path, live: PartConfig, stream_id: str) -> PartConfig:
    """The ``video_file`` config reading the recording of ``live`` (all its frames) with the live stream's
    ``every_nth`` / ``max_fps`` cap, so the fit sees the frame rate ``serve`` scores that camera at."""
    return SOURCES.get("video_file").Config(kind="video_file", path=str(path.resolve()), id=stream_id,
                                             every_nth=live.every_nth, max_fps=live.max_fps,
                                             model_dir=live.model_dir)


def _record_one(source: LiveSource, path: Path, where: str, bar: Any, lock: threading.Lock,
                totals: dict[str, int]) -> Path:
    """Record ``source`` until its bound into ``path`` (atomic); returns the path.

    Raises:
        SourceError: the camera gave up (past :data:`FIT_MAX_RECONNECTS`) or delivered no frame.
    """
    recorder: Recorder | None = None
    try:
        for frame in source.frames():
            if recorder is None:  # connected: the stream's frame rate is known now
                recorder = Recorder(path, source.fps)
                with lock:
                    totals[source.stream_id] = source.expected_frames() or 0
                    if all(totals.values()):
                        bar.total = sum(totals.values())
                        bar.refresh()
            recorder.add(frame.image, frame.pts)
            bar.update(1)
    except SourceError as exc:
        if recorder is not None:
            recorder.abort()
        raise SourceError(f"{where}: cannot record live stream {source.stream_id}: {exc}") from None
    except BaseException:
        if recorder is not None:
            recorder.abort()
        raise
    out = recorder.close() if recorder is not None else None
    if out is None:
        raise SourceError(f"{where}: live stream {source.stream_id} ({source.where}) delivered no frame")
    log.info("%s: recorded %d frames of %s to %s", where, recorder.frames, source.stream_id, out)
    return out


def _record_split(cfgs: Sequence[PartConfig], split: str, root: Path, ctx: BuildContext, quiet: bool
                  ) -> dict[int, tuple[str, Path]]:
    """Record every live stream of one fit section at once; ``{position: (stream id, recording)}``."""
    jobs = []
    for i, c in enumerate(cfgs):
        if _is_live(c):
            where = f"fit.{split}[{i}]"
            (src,) = c.build(ctx, where)  # type: ignore[attr-defined]
            src.max_reconnects = (FIT_MAX_RECONNECTS if src.max_reconnects is None
                                  else min(src.max_reconnects, FIT_MAX_RECONNECTS))
            jobs.append((i, where, src))
    if not jobs:
        return {}
    bar = progress_bar(f"fit: record {split}", quiet)
    lock = threading.Lock()
    totals = {src.stream_id: 0 for _, _, src in jobs}
    out: dict[int, tuple[str, Path]] = {}
    errors: list[BaseException] = []

    def run(i: int, where: str, src: LiveSource) -> None:
        try:
            out[i] = (src.stream_id, _record_one(src, recording_path(root, split, src.stream_id), where, bar,
                                                 lock, totals))
        except BaseException as exc:  # reported below, in the caller's thread
            errors.append(exc)
            for _, _, other in jobs:
                other.close()  # one camera failed: stop recording the others

    threads = [threading.Thread(target=run, args=job, name=f"record-{job[2].stream_id}", daemon=True)
               for job in jobs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        for _, _, src in jobs:
            src.close()
        for t in threads:
            t.join()
        raise
    finally:
        bar.close()
    if errors:
        raise errors[0]
    return out


def _refresh_split(cfg: Any, split: str, root: Path) -> dict[int, tuple[str, Path]]:
    """The newest recording of every live stream of one fit section; ``{position: (stream id, recording)}``.

    Raises:
        ConfigError: a live stream has no recording (names the folder expected).
    """
    out = {}
    for i, c in enumerate(getattr(cfg.fit, split)):
        if _is_live(c):
            sid = _stream_id(c)
            folder = recording_folder(root, split, sid)
            newest = newest_recording(folder)
            if newest is None:
                raise ConfigError(f"{cfg.path}: fit.{split}[{i}]: --refresh found no recording of stream {sid} in "
                                  f"{folder}; run `streamad fit` without --refresh first to record it")
            out[i] = (sid, newest)
    return out


def prepare_fit_streams(cfg: Any, ctx: BuildContext, quiet: bool = False, refresh: bool = False) -> FitStreams:
    """The streams of a fit, with every live stream replaced by its recording (module doc): recorded now, or with
    ``refresh`` the newest ones under ``fit.record_dir``. Call :meth:`FitStreams.cleanup` when the fit is done.

    Raises:
        ConfigError: an unbounded live stream (:func:`check_live_bounds`); with ``refresh``, no ``record_dir`` or a
            live stream without a recording (names the folder).
        SourceError: a camera could not be recorded (key path, redacted URL, reason).
    """
    check_live_bounds(cfg)
    record_dir = getattr(cfg.fit, "record_dir", None)
    has_live = any(_is_live(c) for c in [*cfg.fit.train, *cfg.fit.validation])
    fs = FitStreams(list(cfg.fit.train), list(cfg.fit.validation), {"train": {}, "validation": {}}, record_dir)
    if refresh and not record_dir:
        raise ConfigError(f"{cfg.path}: fit.record_dir: --refresh refits on the recordings in fit.record_dir, "
                          f"which is not set")
    if not has_live:
        if refresh:
            raise ConfigError(f"{cfg.path}: fit: --refresh refits live streams on their recordings, but fit.train "
                              f"and fit.validation list no kind: live stream")
        return fs
    if record_dir:
        root = Path(record_dir).expanduser()
    else:
        fs._temp = root = Path(tempfile.mkdtemp(prefix="streamad-fit-"))
    try:
        for split in ("train", "validation"):
            got = _refresh_split(cfg, split, root) if refresh else _record_split(getattr(cfg.fit, split), split,
                                                                                 root, ctx, quiet)
            lst = fs.train if split == "train" else fs.validation
            for i, (sid, path) in got.items():
                lst[i] = _file_config(path, lst[i], sid)
                if record_dir:
                    fs.recordings[split][sid] = path.relative_to(root).as_posix()
                log.info("fit.%s[%d]: fitting on %s", split, i, path)
    except BaseException:
        fs.cleanup()
        raise
    return fs


def expected_frames(sources: Sequence[Any]) -> int | None:
    """Frames ``sources`` will deliver (a progress bar's total): video files' declared frame counts (bounded by
    ``max_frames``), live streams' :meth:`~streamad.sources.live.LiveSource.expected_frames`; ``None`` when one is
    unknown."""
    from streamad.sources.video_file import VideoFileSource, probe_video

    total = 0
    for s in sources:
        n = None
        if isinstance(s, VideoFileSource) and not s.loop:
            try:
                n = probe_video(s.path).frames
            except SourceError:
                n = None
        elif isinstance(s, LiveSource):
            n = s.expected_frames()
        if n is None:
            return None
        mf = getattr(s, "max_frames", None)
        total += min(n, mf) if mf else n
    return total
