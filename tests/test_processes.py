"""Servers the platform and its tests start: a port another process takes first is replaced, never fatal."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nexus_cli.processes import PortTaken, Server, http_ok, running, venv_bin


def _http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]


@pytest.fixture
def taken_port():
    """A port another process holds (listening), as a busy machine's other jobs do."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_server_that_cannot_bind_says_its_port_was_taken(taken_port: int, tmp_path: Path):
    url = f"http://127.0.0.1:{taken_port}"
    server = Server("http", _http_server(taken_port), lambda: http_ok(url), log_path=tmp_path / "http.log")
    with pytest.raises(PortTaken, match="http: its port was taken"):
        server.start(timeout=30)


def test_running_starts_the_server_again_on_a_fresh_port_when_its_port_is_taken(taken_port: int, tmp_path: Path):
    ports: list[int] = []

    def command(port: int) -> list[str]:
        ports.append(port)
        return _http_server(taken_port if len(ports) == 1 else port)  # the first attempt collides

    with (
        running(command, "/", cwd=tmp_path, log_path=tmp_path / "http.log") as url,
        urllib.request.urlopen(url, timeout=10) as response,
    ):
        assert response.status == 200
    assert len(ports) == 2 and url.endswith(f":{ports[1]}") and ports[1] != taken_port
    assert not http_ok(url), "the server stops with the block"


def test_a_server_failing_for_another_reason_is_not_retried(tmp_path: Path):
    calls: list[int] = []

    def command(port: int) -> list[str]:
        calls.append(port)
        return [sys.executable, "-c", "raise SystemExit('no config')"]

    with pytest.raises(RuntimeError, match="exited with 1 before it was ready"), running(command, "/"):
        pass
    assert len(calls) == 1


def test_nexus_dev_refuses_a_bad_config_before_starting_naming_the_file_and_key(tmp_path: Path):
    config = tmp_path / "nexus.yaml"
    config.write_text("dataset:\n  name: churn\nmodel:\n  registered_name: m\n  seed: many\n")
    env = {**os.environ, "NEXUS_HOME": str(tmp_path / "home"), "NEXUS_CONFIG": str(config)}
    done = subprocess.run(
        [venv_bin("nexus"), "dev", "--port", "0"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert str(config) in done.stderr and "model.seed" in done.stderr and "dataset.source" in done.stderr
    assert "dagster" not in done.stdout.lower()


def test_nexus_dev_stops_on_sigterm_even_started_where_sigint_is_ignored(tmp_path: Path):
    """A background job of a script (or nohup) ignores SIGINT; Dagster gives SIGTERM SIGINT's handler, so without
    `nexus dev` restoring it, `dagster dev` there ignored SIGTERM for good."""
    log = tmp_path / "dev.log"
    env = {**os.environ, "NEXUS_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "home" / "dagster")}
    with log.open("w") as out:
        dev = subprocess.Popen(
            [venv_bin("nexus"), "dev", "--port", "0"],  # 0: Dagster's webserver takes a free port
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        deadline = time.monotonic() + 180
        while "Serving dagster-webserver on" not in log.read_text() and dev.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        assert dev.poll() is None, log.read_text()[-3000:]
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(timeout=90) == 0, log.read_text()[-3000:]  # Dagster's own grace is 60 s a service
        assert "Dagster services shut down." in log.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(dev.pid, signal.SIGKILL)
