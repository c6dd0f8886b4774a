"""The ``streamad`` command line: ``fit``, ``eval``, ``serve``, ``export``.

Thin by design: parse arguments, load the config, call :mod:`streamad.runtime.jobs`, print the result. Errors the
user can fix (bad config, missing data, missing model) print one message and exit non-zero without a traceback:
2 for config errors, 3 for missing data, 4 for model problems, 1 otherwise.

``serve`` also exits 5 (:data:`~streamad.errors.EXIT_UNDELIVERED`) when alerts it accepted were not delivered by
the time it stopped (kept in a Kafka sink's spool for the next start with the same ``spool_dir``, or in its
dead-letter file, or refused by a sink; the log says which), and 1 when a stream ended with an error. When both
happen it exits 5: undelivered alerts need the operator to act (restart with the same spool) before anything else,
and a failed stream is printed either way.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import click

from streamad import __version__
from streamad.errors import EXIT_UNDELIVERED, StreamadError

__all__ = ["main"]


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StreamadError as exc:
            from streamad.redact import redact

            click.echo(f"error: {redact(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        except (ValueError, OSError) as exc:
            from streamad.redact import redact

            click.echo(f"error: {redact(str(exc))}", err=True)
            sys.exit(1)

    return wrapper


def _load(config: str) -> Any:
    from streamad.config import load_config

    return load_config(config)


@click.group()
@click.version_option(__version__, prog_name="streamad")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def cli(log_level: str) -> None:
    """Streaming video anomaly detection: video in, anomaly alerts out."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    from streamad.redact import redact_logging

    redact_logging()  # every log line, of every library, goes through redact(): no credentials in the logs
    # kafka-python logs an ERROR per failed connection attempt; the Kafka sink reports retries itself (redacted)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "model_dir", type=click.Path(file_okay=False), default=None,
              help="Model directory to write (default: the config's model_dir, else runs/<name>/model).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--refresh", is_flag=True,
              help="Refit live streams on their newest recordings under fit.record_dir instead of recording again.")
@click.option("--per-stream", "per_stream", is_flag=True,
              help="Fit one model per fit.train entry (by its id) into each stream's model_dir (-o DIR: "
                   "DIR/<id> or a path with {stream}), in parallel; failures are listed together at the end.")
@_handle_errors
def fit(config: str, model_dir: str | None, quiet: bool, refresh: bool = False, per_stream: bool = False) -> None:
    """Fit the models CONFIG uses on its training split and write a model directory. Live streams (kind: live,
    bounded by duration_s or max_frames) are recorded first, to fit.record_dir when set."""
    from streamad.runtime.jobs import fit as run_fit

    cfg = _load(config)
    if per_stream:  # one model per camera (streamad.runtime.per_stream)
        _fit_per_stream(cfg, model_dir, quiet, refresh)
        return
    res = run_fit(cfg, Path(model_dir) if model_dir else None, quiet=quiet, refresh=refresh)
    p = res.postprocess
    click.echo(f"fitted on {res.train_clips} clips ({res.train_regions} regions) in {res.seconds:.1f} s; "
               f"image threshold {p.image_threshold:.4g} ({p.threshold_method}), "
               f"min {p.min:.4g}, max {p.max:.4g} from {res.validation_frames} frames of {p.statistics_from}")
    click.echo(f"model written to {res.model_dir}")


def _fit_per_stream(cfg: Any, model_dir: str | None, quiet: bool, refresh: bool) -> None:
    """``fit --per-stream``: print each stream's model directory; failures raise (all listed, non-zero exit)."""
    from streamad.runtime.per_stream import PerStreamFitError, fit_per_stream

    try:
        res = fit_per_stream(cfg, Path(model_dir) if model_dir else None, quiet=quiet, refresh=refresh)
    except PerStreamFitError as exc:
        for sid, d in exc.result.models.items():
            click.echo(f"stream {sid}: model written to {d} ({exc.result.seconds[sid]:.1f} s)")
        raise
    for sid, d in res.models.items():
        click.echo(f"stream {sid}: model written to {d} ({res.seconds[sid]:.1f} s)")


@cli.command(name="eval")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--model", "model_dir", type=click.Path(file_okay=False), default=None,
              help="Fitted model directory (default: the config's model_dir).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write the metrics as JSON (frame_auroc, frame_aupr, f1, frames, fps, ...; image datasets: "
                   "image_auroc, image_aupr, image_f1, pixel_auroc, pixel_aupro, ...).")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), default=None,
              help="Write roc.png and one score-over-time PNG per test clip here (image datasets: roc.png and "
                   "heat-map PNGs of the worst cases).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_handle_errors
def eval_cmd(config: str, model_dir: str | None, json_out: str | None, plots_dir: str | None, quiet: bool) -> None:
    """Score a labelled split and print frame-level AUROC, AUPR, F1, frames and frames/s (image datasets:
    image- and pixel-level AUROC, AUPR, F1 and pixel AUPRO)."""
    from streamad.runtime.jobs import evaluate

    cfg = _load(config)
    report, stats = evaluate(cfg, Path(model_dir) if model_dir else None,
                             Path(plots_dir) if plots_dir else None, quiet=quiet)
    click.echo(report.format_table())
    if stats.errors:
        click.echo(f"{len(stats.errors)} stream(s) failed: " + "; ".join(f"{k}: {v}" for k, v in stats.errors.items()),
                   err=True)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")


@cli.command(name="bench")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--model", "model_dir", type=click.Path(file_okay=False), default=None,
              help="Fitted model directory (default: the config's model_dir).")
@click.option("--streams", type=click.IntRange(min=1), default=1, show_default=True,
              help="Copies of the config's streams run side by side (stream ids get @1, @2, ...).")
@click.option("--realtime", is_flag=True, help="Pace files at their frame rate, as a camera delivers them "
                                               "(latency is then a live stream's).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Frames per stream.")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run the bench this many times in a row and print the median frames/s and the range; the table "
                   "is the median run's.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the figures as JSON.")
@_handle_errors
def bench_cmd(config: str, model_dir: str | None, streams: int, realtime: bool, max_frames: int | None,
              repeat: int, json_out: str | None) -> None:
    """Measure a pipeline with its fitted model: frames/s end to end, each stage's time per message and CPU share,
    peak memory, p50 / p99 end-to-end latency, and the accuracy of labelled streams (streamad.bench)."""
    from streamad.bench import bench, repeat_bench

    cfg = _load(config)
    runs = repeat_bench(lambda: bench(cfg, Path(model_dir) if model_dir else None, streams, realtime, max_frames),
                        repeat, (lambda i, r: click.echo(f"run {i} of {repeat}: {r.fps:.1f} frames/s, "
                                                          f"load average {r.machine.get('load_average')}"))
                        if repeat > 1 else None)
    result = runs.median_run
    click.echo(result.table())
    if repeat > 1:
        click.echo(runs.summary())
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        data = runs.to_json() if repeat > 1 else result.to_json()
        Path(json_out).write_text(json.dumps(data, indent=2), encoding="utf-8")
    if any(r.errors for r in runs.runs):
        raise SystemExit(1)


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--model", "model_dir", type=click.Path(file_okay=False), default=None,
              help="Fitted model directory (default: the config's model_dir).")
# --- scale-out options (streamad.runtime.group) ---
@click.option("--group", "group", default=None, metavar="NAME",
              help="Run as one worker of group NAME: the config's streams are spread over the group's workers "
                   "through the Kafka control topic streamad.control.NAME (README 'Scaling with --group').")
@click.option("--bootstrap", default=None, metavar="HOST:PORT",
              help="Kafka cluster of --group (default: the config's kafka sink's).")
@click.option("--control-topic", default=None, help="Control topic of --group (default streamad.control.NAME).")
@click.option("--session-timeout", "session_timeout_s", type=click.FloatRange(min=0.1), default=10.0,
              show_default=True, help="--group: seconds without heartbeat before a worker's streams move.")
# --- end of scale-out options ---
@_handle_errors
def serve(config: str, model_dir: str | None, group: str | None = None, bootstrap: str | None = None,
          control_topic: str | None = None, session_timeout_s: float = 10.0) -> None:
    """Run the pipeline until file streams end, or until SIGINT/SIGTERM for live ones (then drain and flush
    within runtime.grace_period_s). SIGHUP (or, with runtime.watch_config, a change of CONFIG) reloads the streams:
    unchanged streams keep running, removed ones drain, new ones start; an invalid config is logged and ignored.
    SIGHUP (and every runtime.model_watch_interval_s) also checks the model directories: a refitted one is swapped
    in between clips without a restart; one that does not load is logged and the old model stays.

    With --group NAME it is one worker of a group and runs until SIGINT/SIGTERM (no config reload).

    Exits 5 when alerts were not delivered by the time it stopped (they stay in the Kafka sink's spool and are
    sent by the next start with the same spool_dir; an alert too large for the spool is in its dead-letter.jsonl),
    else 1 when a stream ended with an error (the others were still served), else 0. Undelivered alerts win over a
    failed stream: both are printed."""
    from streamad.runtime.jobs import serve as run_serve

    cfg = _load(config)
    group_options = None  # --group (streamad.runtime.group)
    if group is not None:
        from streamad.runtime.group import GroupOptions

        group_options = GroupOptions.from_config(cfg, group, bootstrap, control_topic, session_timeout_s)
    stop = threading.Event()
    reload_requests = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        logging.getLogger("streamad").info("signal %s: draining and stopping", signal.Signals(signum).name)
        stop.set()

    def on_hangup(_signum: int, _frame: Any) -> None:
        logging.getLogger("streamad").info("signal SIGHUP: reloading %s", config)
        reload_requests.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    res = run_serve(cfg, Path(model_dir) if model_dir else None, stop=stop, reload_requests=reload_requests,
                    group=group_options)
    st = res.stats
    click.echo(f"served {st.delivered} frames in {st.seconds:.1f} s ({st.fps:.1f} frames/s)"
               + ("" if st.drained else "; stopped before the queues drained"))
    if res.report is not None:
        click.echo(res.report.format_table())
    for sid, err in st.errors.items():
        click.echo(f"stream {sid} failed: {err}", err=True)
    if st.undelivered:
        click.echo(f"{st.undelivered} alerts were not delivered; they stay in the sinks' spool and are sent at the "
                   f"next start with the same spool_dir (exit status {EXIT_UNDELIVERED})", err=True)
        sys.exit(EXIT_UNDELIVERED)
    if st.errors:
        sys.exit(1)


@cli.command()
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["openvino", "onnx"]), default="openvino", show_default=True,
              help="openvino: MODEL_DIR/openvino/model.xml (serve and eval use it); onnx: MODEL_DIR/onnx/model.onnx.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
              help="fp16 halves the file; int8 quantises the backbone with NNCF (needs --calibration).")
@click.option("--calibration", "calibration", type=click.Path(dir_okay=False), default=None,
              help="Config whose fit.train streams give int8 calibration frames.")
@click.option("--calibration-frames", type=click.IntRange(1), default=300, show_default=True,
              help="Frames read for int8 calibration.")
@click.option("-o", "--output", type=click.Path(file_okay=False), default=None,
              help="Folder to write instead of MODEL_DIR/<format>.")
@_handle_errors
def export(model_dir: str, fmt: str, precision: str, calibration: str | None, calibration_frames: int,
           output: str | None) -> None:
    """Export the fitted image model in MODEL_DIR (preprocessing and anomaly-map head inside the graph)."""
    from streamad.export import export_model
    from streamad.runtime.jobs import calibration_frames as read_frames

    frames = read_frames(_load(calibration), calibration_frames) if calibration else None
    res = export_model(Path(model_dir), fmt, precision, frames, Path(output) if output else None)
    c = res.info["check"]
    click.echo(f"exported {res.info['model_kind']} ({fmt}, {precision}) to {res.path} in {res.seconds:.1f} s; "
               f"largest difference to torch on {c['images']} images: {c['normalised_max_diff']:.2e} of the "
               f"normalisation range")


# --- streamad alerts (streamad.alerts_tail) ---
@cli.group()
def alerts() -> None:
    """Read the alert events streamad published to Kafka."""


@alerts.command()
@click.option("--bootstrap", required=True, metavar="HOST:PORT[,HOST:PORT]", help="Kafka brokers.")
@click.option("--topic", default="streamad.alerts", show_default=True, help="Alert topic.")
@click.option("--stream", "stream", default=None, metavar="ID", help="Only this stream's events.")
@click.option("--since", default=None, metavar="DURATION|TIME",
              help="Start with the events since then: a duration back from now (30s, 10m, 2h, 1d) or an ISO 8601 "
                   "time; default: only events from now on.")
@click.option("--json", "json_out", is_flag=True, help="Print the alert JSON, one per line.")
@click.option("--max-events", type=click.IntRange(min=1), default=None, help="Stop after this many events.")
@click.option("--idle-timeout", "idle_timeout_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop when no event arrived for this many seconds (default: run until Ctrl-C).")
@_handle_errors
def tail(bootstrap: str, topic: str, stream: str | None, since: str | None, json_out: bool,
         max_events: int | None, idle_timeout_s: float | None) -> None:
    """Print alert events as they arrive (duplicates dropped by event_id, type and seq) until Ctrl-C."""
    from streamad.alerts_tail import parse_since, tail as run_tail
    from streamad.kafka_connection import KafkaConnection

    connection = KafkaConnection.from_bootstrap(bootstrap, "--bootstrap")
    try:
        start = parse_since(since) if since is not None else None
    except ValueError as e:
        raise click.BadParameter(str(e).removeprefix("--since: "), param_hint="--since") from None
    where = f"since {since}" if since is not None else "from now on"
    try:
        run_tail(connection, topic, stream=stream, since=start, json_out=json_out, max_events=max_events,
                 idle_timeout_s=idle_timeout_s, out=lambda line: click.echo(line),
                 on_ready=lambda: click.echo(f"tailing {topic} {where} (Ctrl-C to stop)", err=True))
    except KeyboardInterrupt:
        pass
# --- end of streamad alerts ---


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="streamad")


if __name__ == "__main__":
    main()
