"""Servers started as child processes on loopback, stopped with their whole process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    """Return once `url` answers 2xx; fail early if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"nothing answered {url} within {timeout} s")


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop a server started with `start_new_session=True`, workers included (they outlive a plain SIGTERM)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def venv_bin(program: str) -> str:
    """A console script of the running environment (its `bin` also goes on PATH: some servers re-exec by name)."""
    return str(Path(sys.executable).parent / program)


@contextmanager
def running(
    command: list[str],
    port: int,
    health_path: str,
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    log_path: Path | None = None,
    timeout: float = 120,
) -> Iterator[str]:
    """Run a server in its own session on 127.0.0.1:`port`; yield its URL once `health_path` answers."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, **(env or {}), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    with open(log_path or os.devnull, "w") as log:
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_http(url + health_path, process, timeout)
            yield url
        finally:
            stop_process_group(process)
