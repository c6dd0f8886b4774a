"""``streamad serve`` as a child process for the live-operation tests: writes the pipeline.yaml, starts the
process with its log in a file, reads its ``/metrics``, ``/healthz`` and ``/readyz`` (``runtime.http``), and stops
it by PID (signal, SIGKILL). Every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import yaml
from prometheus_client.parser import text_string_to_metric_families

from servers import ChildProcess, free_port

__all__ = ["REPO", "ServeProcess", "pipeline_yaml", "wait_until"]

REPO = Path(__file__).resolve().parents[1]


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)


def pipeline_yaml(path: Path, streams: list[dict], sinks: list[dict] | None = None,
                  runtime: dict | None = None, operator_overrides: dict[str, dict] | None = None) -> Path:
    """Write a pipeline.yaml that takes its operators from examples/ped2.yaml (the model the ``ped2_model``
    fixture fitted) and sets ``streams``, ``sinks`` and ``runtime``; ``operator_overrides`` changes fields of
    operators by kind (``{"alert": {"update_interval_s": 0.5}}``; only operators after ``score`` keep the model
    valid). Returns ``path``."""
    doc: dict[str, Any] = {"extends": str(REPO / "examples" / "ped2.yaml"), "streams": streams,
                           "sinks": sinks or []}
    if operator_overrides:
        ops = yaml.safe_load((REPO / "examples" / "ped2.yaml").read_text())["operators"]
        doc["operators"] = [{**op, **operator_overrides.get(op["kind"], {})} for op in ops]
    if runtime:
        doc["runtime"] = runtime
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class ServeProcess(ChildProcess):
    """``python -m streamad.cli serve CONFIG --model MODEL`` in ``workdir``.

    Args:
        config: the pipeline.yaml; its ``runtime.http.port`` must be ``http_port``.
        model_dir: fitted model directory.
        workdir: working directory (relative output paths) and where ``serve.log`` / ``serve.out`` go.
        http_port: the port of ``runtime.http`` (``/metrics``, ``/healthz``, ``/readyz``).
        env: extra environment variables.
        log_level: ``--log-level`` of the command.
    """

    def __init__(self, config: Path, model_dir: Path, workdir: Path, http_port: int,
                 env: dict[str, str] | None = None, log_level: str = "INFO") -> None:
        self.config, self.model_dir, self.workdir, self.http_port = config, model_dir, workdir, http_port
        self.env = {**os.environ, **(env or {})}
        # the checkout under test, not whatever streamad is installed (the child runs in another folder)
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), self.env.get("PYTHONPATH", "")) if p)
        self.log_level = log_level
        self.log_path = workdir / "serve.log"
        self.out_path = workdir / "serve.out"
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def port() -> int:
        """A free port for ``runtime.http``."""
        return free_port()

    def start(self, timeout_s: float = 60.0) -> "ServeProcess":
        """Start the process and wait until its HTTP endpoint answers."""
        self._launch([sys.executable, "-m", "streamad.cli", "--log-level", self.log_level, "serve", str(self.config),
                      "--model", str(self.model_dir)], self.http_port, "streamad serve", timeout_s, self.log_path,
                     env=self.env, cwd=self.workdir, stdout_path=self.out_path)
        return self

    # -- reading --------------------------------------------------------------------------------------------
    def get(self, path: str) -> tuple[int, str]:
        """``(HTTP status, body)`` of ``GET path`` on the endpoint (``(0, error)`` when it does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    def json(self, path: str) -> tuple[int, dict]:
        status, body = self.get(path)
        return status, (json.loads(body) if status else {})

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``/metrics``: ``{(name, sorted label pairs): value}`` (empty when it does not answer)."""
        status, body = self.get("/metrics")
        if status != 200:
            return {}
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(body) for s in fam.samples}

    def value(self, name: str, samples: dict | None = None, **labels: str) -> float:
        """One sample's value (0 when absent)."""
        samples = self.metrics() if samples is None else samples
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def log(self) -> str:
        """The process's stderr (its log) so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def out(self) -> str:
        """The process's stdout so far."""
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    # -- controlling ----------------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout_s: float) -> int:
        """Exit code, waiting up to ``timeout_s`` (``subprocess.TimeoutExpired`` after that)."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 30.0) -> int | None:  # type: ignore[override]
        """SIGTERM, wait ``timeout_s``, then SIGKILL; the exit code (``None`` if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def __exit__(self, *exc: object) -> None:
        self.kill()  # a test that got this far without stopping it failed: no drain needed
