"""End-to-end latency of a 10 frames/s live RTSP stream through fitted pipelines (issue 21).

    PYTHONPATH=. STREAMAD_DATA=../shared/data python benchmarks/live_latency.py \\
        [--configs examples/ped2.yaml examples/ped2_aivad.yaml] [--frames 1200] [--work runs/live_latency] \\
        [--model-dir examples/ped2.yaml=/path/to/model ...] [--smooth-mode causal] [--json runs/live_latency/latency.json]

Run it from the repository root (the examples' ``${STREAMAD_MODELS:-../shared/models}`` network paths are relative
to the working directory, as for ``streamad``).

What it does:

1. Makes an H.264 MP4 at 10 frames/s from the UCSD Ped2 test clips (Test001, Test002, ... concatenated until the
   video is at least 60 s and at least ``--frames`` + 10 s long; 360x240 pixels) in the work folder (kept and
   reused): the frames are written with OpenCV (MJPEG) and re-encoded by ``tests/servers.py``'s
   :func:`transcode_h264` (x264, no B-frames, a key frame every 25 frames).
2. Serves it with the project's GStreamer RTSP server (``tests/servers.py`` :class:`RtspServer`, run by Debian's
   ``/usr/bin/python3``) on 127.0.0.1, streamed at the file's own rate (10 frames/s), one fresh server per config
   so each run sees the video from its start.
3. For each config, writes ``<work>/<name>_live.yaml``, which ``extends`` the example (its operators, model settings
   and runtime) and replaces ``streams`` with one ``kind: live`` stream on the RTSP URL (TCP) with ``max_frames``
   ``--frames``; loads it with :func:`streamad.config.load_config` as the CLI does and runs it through
   :func:`streamad.bench.run.bench` with the fitted model (default: the example's ``model_dir`` relative to the
   repository, e.g. ``runs/ped2/model``; ``--model-dir CONFIG=DIR`` overrides it).

What "end to end" covers: for every scored frame, bench's latency is the Unix time the ``Scores`` message reaches
the sink side of the pipeline (where alerts are delivered; bench runs no sinks) minus the frame's
``Frame.wall_time``, which for a live frame is the Unix time PyAV finished decoding it. So it covers queueing in the
ingress queue, every operator (clip window, regions, flow, features, model, smoothing, threshold, alert) and the
hand-over to delivery. It does not cover the camera side: encoding, the RTSP/RTP transport over loopback,
FFmpeg's demuxing and the decode itself (each a few ms here; no B-frames, so no reorder delay), nor a sink's own
write (stdout, JSONL, Kafka).

Part of the latency is held by design, not computed: a ``centered`` ``smooth`` operator passes frame t on only once
frame t + r has been scored (r = ceil(truncate * sigma) = 9 frames for sigma 3: 900 ms at 10 frames/s). ``alert``
holds no frame (the ``end`` of an event still open when a stream ends travels on its ``EndOfStream``). The
``held ms`` column is
the smoothing's hold, from the config (:func:`held_frames`); ``--smooth-mode causal`` measures the same configs with
causal smoothing (no delay, but not the scores the fitted thresholds were calibrated on).

Why 1,200 frames (2 minutes) by default: the first frames of a stream wait for the first clip to fill and for the
networks' first calls (about 200 ms with full AI-VAD on 2026-12-06). Over 300 frames the p99 is the third-worst frame,
so it measures the stream's start; over 1,200 the start's half-dozen frames fall under the 1 % and p99 describes a
camera that keeps running. The start is still in the ``max`` column.

Printed: one row per config with the frames scored, delivered frames/s (scored frames over the wall time of the run,
connection included; at most about 10 for this stream), p50 / p99 / max latency in ms, the held ms, the stage with
the largest mean time per message (ms), and the frames dropped before scoring (a live stream's ingress queue full:
``runtime.live_policy`` ``drop_oldest``); plus the machine (processor, cores) and its 1 / 5 / 15 minute load average
at the start and the end, since other work on the machine moves every figure. ``--json OUT`` writes the same, with
bench's full result per config (every stage's ms/message and CPU share). Nothing is compared with a limit: the
figures are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from streamad.bench.run import BenchResult, bench  # noqa: E402
from streamad.config import PipelineConfig, load_config  # noqa: E402
from tests.servers import RtspServer, transcode_h264  # noqa: E402

__all__ = ["FPS", "default_model_dir", "make_ped2_video", "live_config", "held_frames", "measure", "run", "format_table",
           "main"]

FPS = 10  # frames per second of the served stream
MIN_VIDEO_S = 60.0  # the video is at least this long (seconds)
DEFAULT_CONFIGS = ("examples/ped2.yaml", "examples/ped2_aivad.yaml")


def _data_root() -> Path:
    return Path(os.environ.get("STREAMAD_DATA", REPO.parent / "shared" / "data")).resolve()


def make_ped2_video(work: Path, min_frames: int, data_root: Path | None = None) -> Path:
    """An H.264 MP4 at :data:`FPS` frames/s of the UCSD Ped2 test clips in order (whole clips, at least
    ``min_frames`` frames), written to ``work`` as ``ped2_test_10fps_<frames>.mp4`` and reused when present.

    Raises:
        FileNotFoundError: the Ped2 test clips are not under ``data_root`` (default ``$STREAMAD_DATA``).
        MissingBinaryError: ffmpeg is missing. RuntimeError: ffmpeg or OpenCV failed.
    """
    import cv2

    test = (data_root or _data_root()) / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test"
    clips = sorted(p for p in test.glob("Test[0-9][0-9][0-9]") if p.is_dir())
    if not clips:
        raise FileNotFoundError(f"{test}: no UCSD Ped2 test clips (Test001 ...); set STREAMAD_DATA to the data folder")
    frames: list[Path] = []
    for clip in clips:
        frames += sorted(p for p in clip.iterdir() if p.suffix.lower() in (".tif", ".jpg", ".png", ".bmp"))
        if len(frames) >= min_frames:
            break
    if len(frames) < min_frames:
        raise FileNotFoundError(f"{test}: only {len(frames)} test frames, {min_frames} needed")
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"ped2_test_{FPS}fps_{len(frames)}.mp4"
    if out.is_file() and out.stat().st_size > 0:
        return out
    first = cv2.imread(str(frames[0]), cv2.IMREAD_COLOR)
    if first is None:
        raise RuntimeError(f"OpenCV cannot read {frames[0]}")
    h, w = first.shape[:2]
    mjpeg = work / "ped2_test_frames.avi"
    writer = cv2.VideoWriter(str(mjpeg), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {mjpeg} (MJPG)")
    try:
        for f in frames:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None or img.shape[:2] != (h, w):
                raise RuntimeError(f"{f}: unreadable or not {w}x{h}")
            writer.write(img)
    finally:
        writer.release()
    tmp = out.with_suffix(".tmp.mp4")
    transcode_h264(mjpeg, tmp, fps=FPS)
    tmp.replace(out)
    mjpeg.unlink()
    return out


def default_model_dir(example: Path) -> Path:
    """The example config's own ``model_dir``, relative to the repository (e.g. ``<repo>/runs/ped2/model``)."""
    cfg = load_config(example)
    if cfg.model_dir is None:
        raise ValueError(f"{example}: no model_dir; pass --model-dir {example}=DIR")
    return cfg.model_dir if cfg.model_dir.is_absolute() else REPO / cfg.model_dir


def _check_model_dir(example: Path, model_dir: Path) -> Path:
    if not (model_dir / "model.json").is_file():
        rel = os.path.relpath(example, REPO)
        raise FileNotFoundError(f"{model_dir}: no fitted model here (no model.json); fit it with "
                                f"`streamad fit {rel} -o {model_dir}` from {REPO}, or pass "
                                f"--model-dir {rel}=DIR")
    return model_dir


def live_config(example: Path, url: str, frames: int, work: Path, smooth_mode: str | None = None) -> PipelineConfig:
    """Write ``<work>/<name>_live.yaml``: ``extends`` ``example`` and has one live stream on ``url`` (RTSP over TCP,
    ``max_frames`` ``frames``, id ``ped2-live``) as its only stream; load it with the project's config loader.

    ``smooth_mode`` (``centered`` / ``causal``) replaces the ``mode`` of the example's ``smooth`` operators (its
    ``operators`` list is copied, with that one change); ``None`` keeps the example's operators as they are.

    Raises:
        ValueError: ``smooth_mode`` is given but ``example`` has no ``operators`` list of its own.
    """
    import yaml

    name = load_config(example).name
    work.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"extends": str(example.resolve()), "name": f"{name}_live",
                           "streams": [{"kind": "live", "url": url, "id": "ped2-live", "transport": "tcp",
                                        "max_frames": frames}]}
    if smooth_mode is not None:
        raw = yaml.safe_load(example.read_text(encoding="utf-8"))
        if not isinstance(raw.get("operators"), list):
            raise ValueError(f"{example}: --smooth-mode needs the config's own operators list (it has none)")
        doc["operators"] = [{**op, "mode": smooth_mode} if op.get("kind") == "smooth" else op
                            for op in raw["operators"]]
        name = f"{name}_{smooth_mode}"
    path = work / f"{name}_live.yaml"
    path.write_text("# written by benchmarks/live_latency.py\n" + yaml.safe_dump(doc, sort_keys=False),
                    encoding="utf-8")
    return load_config(path)


def held_frames(cfg: PipelineConfig) -> dict[str, int]:
    """Frames the config's operators hold each frame back by design, ``{operator: frames}``: a ``centered``
    ``smooth`` waits for ``ceil(truncate * sigma)`` later frames (its kernel's right half). (``alert`` holds a
    frame only while an event is open, so not on a normal stream.) At :data:`FPS` frames/s each held frame adds
    ``1000 / FPS`` ms to the latency whatever the machine's speed."""
    import math

    held: dict[str, int] = {}
    for op in cfg.operators:
        if op.kind == "smooth" and getattr(op, "mode", "centered") == "centered":
            held["smooth"] = held.get("smooth", 0) + math.ceil(op.truncate * op.sigma)  # type: ignore[attr-defined]
    return held


def _largest_stage(result: BenchResult) -> tuple[str, float]:
    if not result.stages:
        return "-", 0.0
    name = max(result.stages, key=lambda k: result.stages[k]["ms_per_message"])
    return name, float(result.stages[name]["ms_per_message"])


def measure(example: Path, model_dir: Path, video: Path, frames: int, work: Path,
            smooth_mode: str | None = None) -> dict[str, Any]:
    """Serve ``video`` over RTSP, bench the live version of ``example`` (``smooth_mode``: :func:`live_config`) on it
    for ``frames`` frames; one row.

    Returns:
        ``{"config", "model", "smooth_mode", "frames_read", "frames", "seconds", "fps",
        "latency_ms": {"p50", "p99", "max"}, "held_frames": {operator: frames}, "held_ms",
        "largest_stage": {"name", "ms_per_message"}, "dropped": {reason: frames}, "errors", "bench": {...}}``;
        times in seconds unless named ``_ms``. ``frames`` counts the scored frames delivered.

    Raises:
        FileNotFoundError: no fitted model in ``model_dir`` (the message names the fit command).
    """
    _check_model_dir(example, model_dir)
    with RtspServer(work, video, mount="/ped2") as server:
        cfg = live_config(example, server.url, frames, work, smooth_mode)
        result = bench(cfg, model_dir)
    stage, stage_ms = _largest_stage(result)
    held = held_frames(cfg)
    modes = sorted({getattr(op, "mode") for op in cfg.operators if op.kind == "smooth"})
    return {"config": os.path.relpath(example, REPO), "model": str(model_dir), "smooth_mode": "/".join(modes) or None,
            "frames_read": frames, "frames": result.frames, "seconds": round(result.seconds, 3),
            "fps": round(result.fps, 2), "latency_ms": result.latency_ms, "held_frames": held,
            "held_ms": round(sum(held.values()) * 1000.0 / FPS, 1),
            "largest_stage": {"name": stage, "ms_per_message": stage_ms},
            "dropped": result.dropped, "errors": result.errors, "bench": result.to_json()}


def _machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"processor": model, "cores": os.cpu_count(), "host": platform.node()}


def run(configs: Sequence[str | Path], frames: int = 1200, work: str | Path = REPO / "runs" / "live_latency",
        model_dirs: dict[str, Path] | None = None, smooth_mode: str | None = None) -> dict[str, Any]:
    """Measure every config (paths relative to the repository or absolute) on a 10 frames/s RTSP stream of
    ``frames`` frames; ``model_dirs`` maps a config (a path relative to the repository, or absolute) to its
    fitted model (default: the config's ``model_dir``, relative to the repository); ``smooth_mode``: as
    :func:`live_config` (``None``: the configs' own).

    Returns:
        ``{"machine": {..., "load_average_start": [1, 5, 15 min], "load_average_end": [...]}, "frames": frames,
        "stream_fps": 10, "rows": [measure(...) per config]}``.

    Raises:
        FileNotFoundError: a config, the Ped2 test clips or a fitted model is missing (the message names the path
            and, for a model, the fit command). ValueError: ``frames`` below 1, a ``model_dirs`` key that is none
            of the configs.
    """
    if frames < 1:
        raise ValueError(f"--frames must be at least 1, got {frames}")
    work = Path(work).resolve()
    model_dirs = dict(model_dirs or {})
    machine = _machine()
    machine["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    examples = [(Path(c) if Path(c).is_absolute() else REPO / c).resolve() for c in configs]
    overrides = {(Path(k) if Path(k).is_absolute() else REPO / k).resolve(): Path(v) for k, v in model_dirs.items()}
    unknown = [k for k, p in zip(model_dirs, overrides) if p not in examples]
    if unknown:
        raise ValueError(f"--model-dir {', '.join(unknown)}: not among the configs "
                         f"({', '.join(os.path.relpath(e, REPO) for e in examples)})")
    dirs: list[Path] = []
    for example in examples:
        if not example.is_file():
            raise FileNotFoundError(f"{example}: no such config")
        override = overrides.get(example)
        dirs.append(_check_model_dir(example, override if override else default_model_dir(example)))
    video = make_ped2_video(work, max(int(MIN_VIDEO_S * FPS), frames + 10 * FPS))
    rows = [measure(example, d, video, frames, work, smooth_mode) for example, d in zip(examples, dirs)]
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return {"machine": machine, "frames": frames, "stream_fps": FPS, "video": str(video), "rows": rows}


def format_table(report: dict[str, Any]) -> str:
    """The report of :func:`run` as text: one row per config, then the machine and its load average."""
    head = (f"{'config':<26}{'model':<34}{'frames':>7}{'frames/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
            f"{'held ms':>9}  {'largest stage (ms/msg)':<30}dropped")
    lines = [f"live RTSP stream, {report['stream_fps']} frames/s, {report['frames']} frames per config "
             "(latency: frame decoded -> scores at delivery)", "", head, "-" * len(head)]
    for r in report["rows"]:
        lat = r["latency_ms"] or {}
        stage = f"{r['largest_stage']['name']} ({r['largest_stage']['ms_per_message']:.1f})"
        dropped = ", ".join(f"{n} {k}" for k, n in r["dropped"].items()) or "0"
        model = r["model"] if len(r["model"]) <= 32 else "..." + r["model"][-29:]
        lines.append(f"{r['config']:<26}{model:<34}{r['frames']:>7}{r['fps']:>9.2f}{lat.get('p50', float('nan')):>9.1f}"
                     f"{lat.get('p99', float('nan')):>9.1f}{lat.get('max', float('nan')):>9.1f}{r['held_ms']:>9.0f}"
                     f"  {stage:<30}{dropped}")
        for sid, err in r["errors"].items():
            lines.append(f"  stream {sid} failed: {err}")
    modes = sorted({r["smooth_mode"] for r in report["rows"] if r["smooth_mode"]})
    lines += ["", "held ms: latency the operators add by design, whatever the machine (frames held x "
              f"{1000 // report['stream_fps']} ms): " + "; ".join(
                  f"{r['config']}: " + (", ".join(f"{k} {n}" for k, n in r["held_frames"].items()) or "none")
                  for r in report["rows"]) + (f"; smooth mode {'/'.join(modes)}" if modes else "")]
    m = report["machine"]
    lines += ["", f"machine: {m['processor']}, {m['cores']} cores ({m['host']}); load average (1/5/15 min) "
                  f"{' / '.join(map(str, m['load_average_start']))} at the start, "
                  f"{' / '.join(map(str, m['load_average_end']))} at the end"]
    return "\n".join(lines)


def _parse_model_dirs(items: Sequence[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items:
        config, sep, d = item.partition("=")
        if not sep or not config or not d:
            raise SystemExit(f"--model-dir: expected CONFIG=DIR, got {item!r}")
        out[config] = Path(d).expanduser().resolve()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                   help="pipeline configs (relative to the repository or absolute)")
    p.add_argument("--frames", type=int, default=1200,
                   help="frames read from the stream per config (10 per second; default 2 minutes)")
    p.add_argument("--work", default=str(REPO / "runs" / "live_latency"),
                   help="folder for the video, the live configs and the server logs")
    p.add_argument("--model-dir", action="append", default=[], metavar="CONFIG=DIR",
                   help="fitted model of CONFIG (default: its model_dir relative to the repository); repeatable")
    p.add_argument("--smooth-mode", choices=["centered", "causal"], default=None,
                   help="replace the mode of the configs' smooth operators (default: keep theirs; causal adds no "
                        "delay but changes the scores the fitted threshold was calibrated on)")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT", help="write the report as JSON")
    a = p.parse_args(argv)
    try:
        report = run(a.configs, a.frames, a.work, _parse_model_dirs(a.model_dir), a.smooth_mode)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(report))
    if a.json_out:
        Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json_out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 1 if any(r["errors"] for r in report["rows"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
