"""Servers started as child processes on loopback, stopped with their whole process group."""

from __future__ import annotations

import contextlib
import functools
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from nexus_core.config import NexusConfig
from nexus_core.settings import load_settings

# How the servers we start say that their port is taken (Python, Go, gRPC, werkzeug).
_PORT_TAKEN = re.compile(r"address already in use|CouldNotBindGrpcServerToAddress|port \d+ is in use", re.IGNORECASE)
PORT_ATTEMPTS = 5


class PortTaken(RuntimeError):
    """A server could not bind the port it was given: another process took it first. Start it on another one."""


def reserved_port() -> int:
    """A port for a server we start, below the kernel's ephemeral range: no outgoing connection can take it before
    the server binds it or while it is briefly closed (an outage a test stages). Another process may still bind it
    first; a server that then fails raises `PortTaken` and its caller starts it again on a fresh port."""
    low, _ = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for port in random.sample(range(max(1024, low - 12_000), low), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port below the ephemeral range")


def log_path(name: str) -> Path:
    """`<name>.log` in the embedded folder's `logs/`, where the CLI keeps what it does not print."""
    folder = load_settings().home / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.log"


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, name: str, timeout: float = 90) -> None:
    """Return once `ready()` holds; fail early if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} before it was ready")
        if ready():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{name} was not ready within {timeout} s")


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop a server started with `start_new_session=True`, workers included (they outlive a plain SIGTERM)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def serve_command(port: int, target: str | None = None, host: str = "127.0.0.1") -> list[str]:
    """`bentoml serve` of `target` (a Bento tag; default the checkout's service) on `host`:`port`, with metric
    files of its own (`nexus_cli/bentoml_serve.py`)."""
    from serving import SERVICE

    return [sys.executable, "-m", "nexus_cli.bentoml_serve", target or SERVICE, "--host", host, "--port", str(port)]


def served_bento(config: NexusConfig) -> str:
    """The tag of the newest serving Bento, with the environment set so that it runs against this checkout's
    settings: a Bento carries its own copy of the code and `nexus.yaml`, so the embedded folder and the config
    file are passed as absolute paths."""
    from serving import bento

    settings = load_settings()
    os.environ["NEXUS_CONFIG"] = str(config.path.resolve())
    if settings.mode == "embedded":
        os.environ["NEXUS_HOME"] = str(settings.home.resolve())
    settings.use_embedded_bentoml_store()
    return str(bento.newest(config.model.registered_name).tag)


def venv_bin(program: str) -> str:
    """A console script of the running environment (its `bin` also goes on PATH: some servers re-exec by name)."""
    return str(Path(sys.executable).parent / program)


class Server:
    """A server in its own session (so its workers stop with it), restartable with the same command and port."""

    def __init__(
        self,
        name: str,
        command: list[str],
        ready: Callable[[], bool],
        *,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.name, self.command, self.ready, self.cwd = name, command, ready, cwd
        # Its output goes to a file even when nobody reads it: a port taken is told apart from other failures there.
        self._own_log = log_path is None
        self.log_path = log_path or Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, **(env or {}), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        self._logged = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = 120) -> None:
        try:
            wait_until(self.ready, self.process, f"{self.name} (its output: {self.log_path})", timeout)
        except RuntimeError as exc:
            self._halt()  # its output stays, for the message's reader
            if self._port_taken():
                raise PortTaken(f"{self.name}: its port was taken by another process") from exc
            raise
        except BaseException:
            self._halt()
            raise

    def _port_taken(self) -> bool:
        with open(self.log_path, errors="replace") as log:
            log.seek(self._logged)
            return bool(_PORT_TAKEN.search(log.read()))

    def stop(self) -> None:
        self._halt()
        if self._own_log:
            self.log_path.unlink(missing_ok=True)

    def _halt(self) -> None:
        if self.process is not None:
            stop_process_group(self.process)

    def restart(self, timeout: float = 120) -> None:
        self.stop()
        self.start(timeout)


@contextmanager
def running(
    command: Callable[[int], list[str]],
    health_path: str,
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    log_path: Path | None = None,
    timeout: float = 120,
) -> Iterator[str]:
    """Run `command(port)` on 127.0.0.1; yield its URL once `health_path` answers. A port another process takes
    first is replaced by a fresh one."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        url = f"http://127.0.0.1:{(port := reserved_port())}"
        args = command(port)
        ready = functools.partial(http_ok, url + health_path)
        server = Server(Path(args[0]).name, args, ready, env=env, cwd=cwd, log_path=log_path)
        try:
            server.start(timeout)
        except PortTaken:
            if attempt == PORT_ATTEMPTS:
                raise
            continue
        try:
            yield url
        finally:
            server.stop()
        return


class Relay:
    """A TCP relay on loopback in front of a server. Closing it is an outage of that server as its clients see
    it (connections refused and cut), while the server behind keeps its data, like MinIO restarting on its volume.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, reserved_port()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", self.port))
        except OSError as exc:
            listener.close()
            raise PortTaken(f"the relay's port {self.port} was taken by another process") from exc
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone leaves the port bound until it returns.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with self._lock:
            self._connections.discard(source)
        source.close()
