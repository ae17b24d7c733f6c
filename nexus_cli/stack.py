"""The production stack of docker/docker-compose.yml as local processes on loopback, for machines without Docker.

PostgreSQL is the machine's own (one fresh database per purpose); an S3 endpoint (moto's server standing in for
MinIO), `mlflow server` with basic auth, the user-code gRPC server, dagster-webserver, dagster-daemon, the
BentoML service, the metrics exporter, Prometheus with the alert rules, Alertmanager, the Blackbox exporter and a
Dask scheduler with two workers (for datasets with `compute.scheduler: ${NEXUS_DASK_SCHEDULER}`) run as child
processes, each in its own process group.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families

from nexus_cli.processes import PORT_ATTEMPTS, PortTaken, Relay, Server, http_ok, reserved_port, venv_bin
from nexus_core.config import REPO_ROOT, NexusConfig
from nexus_core.settings import load_settings

BUCKETS = ("nexus", "mlflow")
DASK_WORKERS = 2
DATABASES = ("dagster", "mlflow", "app")
LOCATION = "nexusml"
DOCKER = REPO_ROOT / "docker"


class LocalStack:
    """Start with `with LocalStack(folder, admin_url) as stack:`; everything stops (and the databases go) on exit."""

    def __init__(
        self,
        folder: Path,
        pg_admin_url: str,
        config_path: Path | None = None,
        *,
        serving_token: str | None = None,
        alert_webhook_url: str | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.folder, self.admin_url, self.log = folder.resolve(), pg_admin_url, log
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path = config_path or REPO_ROOT / "nexus.yaml"
        self._choose_ports()
        self.databases = {purpose: f"nexus_stack_{purpose}_{uuid.uuid4().hex[:8]}" for purpose in DATABASES}
        self.dagster_home = self.folder / "dagster-home"
        self.mlflow_password = uuid.uuid4().hex
        self.serving_token = serving_token
        self.alert_webhook_url = alert_webhook_url or os.environ.get("NEXUS_ALERT_WEBHOOK_URL")
        self.servers: dict[str, Server] = {}

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def database_url(self, purpose: str, driver: str = "postgresql+psycopg2") -> str:
        url = sa.make_url(self.admin_url).set(drivername=driver, database=self.databases[purpose])
        return url.render_as_string(hide_password=False)

    @property
    def env(self) -> dict[str, str]:
        """The production environment every NexusML process of the stack gets (and a client of it needs)."""
        return {
            "NEXUS_MODE": "production",
            "NEXUS_CONFIG": str(self.config_path),
            "NEXUS_DAGSTER_PG_URL": self.database_url("dagster", "postgresql"),
            "NEXUS_APP_DB_URL": self.database_url("app"),
            "NEXUS_S3_BUCKET": "nexus",
            "NEXUS_S3_ENDPOINT_URL": self.url("s3"),
            "NEXUS_SERVING_URL": self.url("serving"),
            "NEXUS_SERVING_TOKEN": self.serving_token or "",
            "MLFLOW_TRACKING_URI": self.url("mlflow"),
            "MLFLOW_TRACKING_USERNAME": "nexus-admin",
            "MLFLOW_TRACKING_PASSWORD": self.mlflow_password,
            "MLFLOW_S3_ENDPOINT_URL": self.url("s3"),
            "AWS_ACCESS_KEY_ID": "nexus-stack",
            "AWS_SECRET_ACCESS_KEY": "nexus-stack",
            "AWS_REGION": "us-east-1",
            "DAGSTER_HOME": str(self.dagster_home),
            "BENTOML_HOME": str(self.folder / "bentoml"),
            "DO_NOT_TRACK": "1",
            "NEXUS_LOG_FORMAT": "json",
            "NEXUS_DASK_SCHEDULER": f"tcp://{self._address('dask')}",
        }

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Every service on its own port; when another process takes one of them first, all start again on fresh
        ports (the others' settings name it)."""
        self._create_databases()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                return self._start_services()
            except PortTaken as exc:
                if attempt == PORT_ATTEMPTS:
                    raise
                self.log(f"{exc}; starting the stack again on other ports")
                self._stop_services()
                self._choose_ports()

    def _choose_ports(self) -> None:
        services = ("moto", "mlflow", "user-code", "webserver", "serving", "exporter", "prometheus")
        services += ("alertmanager", "alertmanager-cluster", "blackbox", "dask", "dask-dashboard")
        self.ports = {name: reserved_port() for name in services}
        # Clients reach S3 through a relay, so a test can take the endpoint away and bring it back with its data.
        self.s3 = Relay(self.ports["moto"])
        self.ports["s3"] = self.s3.port

    def _start_services(self) -> None:
        """Waves, each started at once: what needs nothing, then what needs the gRPC server or MLflow, then
        Prometheus, once what it scrapes answers (on a busy machine the service took over a minute to start, and
        Prometheus, started first, had already fired NexusServingDown)."""
        self.s3.open()
        self._wave(
            self._moto(), self._mlflow(), self._user_code(), self._exporter(),
            self._alertmanager(), self._blackbox(), self._dask_scheduler(),
        )  # fmt: skip
        s3 = boto3.client("s3", endpoint_url=self.url("s3"), region_name="us-east-1", **self._s3_keys())
        for bucket in BUCKETS:
            s3.create_bucket(Bucket=bucket)
        self._wave(self._webserver(), self._daemon(), self._serving(), self._dask_workers())
        self._wave(self._prometheus())

    def stop(self) -> None:
        self._stop_services()
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for name in self.databases.values():
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    def _stop_services(self) -> None:
        for name, server in reversed(list(self.servers.items())):
            self.log(f"stopping {name}")
            server.stop()
        self.servers.clear()
        self.s3.close()

    def _s3_keys(self) -> dict[str, str]:
        return {"aws_access_key_id": "nexus-stack", "aws_secret_access_key": "nexus-stack"}

    def _create_databases(self) -> None:
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for name in self.databases.values():
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()

    def _server(self, name: str, command: list[str], health: str | Callable[[], bool], env: dict | None = None):
        ready = health if callable(health) else (lambda: http_ok(self.url(name) + health))
        server = Server(
            name, command, ready, env={**self.env, **(env or {})}, cwd=REPO_ROOT, log_path=self.folder / f"{name}.log"
        )
        self.servers[name] = server
        return server

    def _wave(self, *servers: Server) -> None:
        self.log("starting " + ", ".join(server.name for server in servers))
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready()

    def _moto(self) -> Server:
        command = [venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(self.ports["moto"])]
        return self._server("moto", command, "/moto-api/")

    def _mlflow(self) -> Server:
        auth_ini = self.folder / "mlflow-auth.ini"
        settings = (DOCKER / "mlflow" / "basic_auth.ini").read_text()
        auth_ini.write_text(settings.replace("sqlite:////var/lib/mlflow-auth/", f"sqlite:///{self.folder}/mlflow-"))
        command = [venv_bin("mlflow"), "server", "--app-name", "basic-auth", "--host", "127.0.0.1"]
        command += ["--port", str(self.ports["mlflow"]), "--workers", "1"]
        command += ["--backend-store-uri", self.database_url("mlflow"), "--artifacts-destination", "s3://mlflow/art"]
        env = {
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
            "MLFLOW_AUTH_ADMIN_USERNAME": self.env["MLFLOW_TRACKING_USERNAME"],
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.mlflow_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
        }
        return self._server("mlflow", command, "/health", env)

    def _user_code(self) -> Server:
        self.dagster_home.mkdir(exist_ok=True)
        shutil.copy(DOCKER / "dagster.production.yaml", self.dagster_home / "dagster.yaml")
        port = str(self.ports["user-code"])
        command = [venv_bin("dagster"), "code-server", "start", "--host", "127.0.0.1", "--port", port]
        command += ["--module-name", "nexus_defs.definitions", "--location-name", LOCATION]
        return self._server(
            "user-code", command, self._succeeds([venv_bin("dagster"), "api", "grpc-health-check", "-p", port])
        )

    def _webserver(self) -> Server:
        command = [venv_bin("dagster-webserver"), "--host", "127.0.0.1", "--port", str(self.ports["webserver"])]
        return self._server("webserver", [*command, "--workspace", str(self._workspace())], "/server_info")

    def _daemon(self) -> Server:
        command = [venv_bin("dagster-daemon"), "run", "--workspace", str(self._workspace())]
        return self._server("daemon", command, self._succeeds([venv_bin("dagster-daemon"), "liveness-check"]))

    def _serving(self) -> Server:
        """The newest Bento of the stack's store (`base` until serving_bento builds a champion's), as in compose."""
        command = [venv_bin("nexus"), "serve", "--host", "127.0.0.1", "--port", str(self.ports["serving"])]
        return self._server("serving", command, "/livez")

    def _dask_scheduler(self) -> Server:
        command = [venv_bin("dask"), "scheduler", "--host", "127.0.0.1", "--port", str(self.ports["dask"])]
        command += ["--dashboard-address", self._address("dask-dashboard")]
        return self._server("dask", command, lambda: http_ok(self.url("dask-dashboard") + "/health"))

    def _dask_workers(self) -> Server:
        """Two worker processes of one thread each under one nanny process, as the compose file's `dask-worker`."""
        command = [venv_bin("dask"), "worker", self.env["NEXUS_DASK_SCHEDULER"], "--nworkers", str(DASK_WORKERS)]
        command += ["--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"]
        command += ["--local-directory", str(self.folder / "dask-worker")]
        return self._server("dask-workers", command, lambda: self.dask_workers() == DASK_WORKERS)

    def dask_workers(self) -> int:
        """The workers the scheduler has, from its Prometheus metrics."""
        workers = [family for family in self.dask_metrics() if family.name == "dask_scheduler_workers"]
        return int(sum(sample.value for family in workers for sample in family.samples))

    def dask_metrics(self) -> list:
        """The Dask scheduler's Prometheus metrics (workers, tasks run by prefix), or none while it is down."""
        try:
            with urllib.request.urlopen(self.url("dask-dashboard") + "/metrics", timeout=2) as response:
                return list(text_string_to_metric_families(response.read().decode()))
        except OSError:
            return []

    def _exporter(self) -> Server:
        command = [venv_bin("nexus"), "exporter", "--host", "127.0.0.1", "--port", str(self.ports["exporter"])]
        return self._server("exporter", command, "/metrics")

    def _prometheus(self) -> Server:
        """docker/prometheus/ pointed at the local ports, scraping and evaluating the alert rules every second."""
        _require("prometheus")
        scrape = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
        scrape["global"].update(scrape_interval="1s", evaluation_interval="1s")
        scrape["rule_files"] = [str(DOCKER / "prometheus" / "alerts.yml")]
        scrape["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [self._address("alertmanager")]}]
        targets = {
            "nexus-monitoring": self._address("exporter"),
            "nexus-serving": self._address("serving"),
            "blackbox": self._address("blackbox"),
            "nexus-probe-ready": self.url("serving") + "/readyz",
            "nexus-probe-predict": self.url("serving") + "/predict",
        }
        for job in scrape["scrape_configs"]:
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
            for relabel in job.get("relabel_configs", []):
                if relabel.get("target_label") == "__address__":
                    relabel["replacement"] = self._address("blackbox")
        config = self.folder / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape))
        command = ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={self.folder / 'prometheus'}"]
        return self._server("prometheus", [*command, f"--web.listen-address={self._address('prometheus')}"], "/-/ready")

    def _alertmanager(self) -> Server:
        """docker/alertmanager/ with the webhook from the environment (none: alerts show in its UI only)."""
        _require("prometheus-alertmanager")
        config = self.folder / "alertmanager.yml"
        config.write_text(yaml.safe_dump(alertmanager_config(self.alert_webhook_url)))
        command = ["prometheus-alertmanager", f"--config.file={config}"]
        command += [f"--storage.path={self.folder / 'alertmanager'}"]
        command += [f"--web.listen-address={self._address('alertmanager')}"]
        command += [f"--cluster.listen-address={self._address('alertmanager-cluster')}"]
        return self._server("alertmanager", command, "/-/ready")

    def _blackbox(self) -> Server:
        _require("prometheus-blackbox-exporter")
        probes = yaml.safe_load((DOCKER / "blackbox" / "blackbox.yml").read_text())
        token = self.folder / "serving-token"
        token.write_text(self.serving_token or "")
        token.chmod(0o600)
        probes["modules"]["nexus_predict"]["http"]["authorization"]["credentials_file"] = str(token)
        config = self.folder / "blackbox.yml"
        config.write_text(yaml.safe_dump(probes))
        command = ["prometheus-blackbox-exporter", f"--config.file={config}"]
        return self._server("blackbox", [*command, f"--web.listen-address={self._address('blackbox')}"], "/-/ready")

    def _address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def _workspace(self) -> Path:
        """The compose file's workspace (docker/workspace.yaml) pointed at the local gRPC server."""
        workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
        workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=self.ports["user-code"])
        path = self.folder / "workspace.yaml"
        path.write_text(yaml.safe_dump(workspace))
        return path

    def _succeeds(self, command: list[str]) -> Callable[[], bool]:
        return lambda: subprocess.run(command, capture_output=True, env={**os.environ, **self.env}).returncode == 0


def alertmanager_config(webhook_url: str | None) -> dict:
    """docker/alertmanager/alertmanager.yml with the webhook filled in, or without it when there is none."""
    config = yaml.safe_load((DOCKER / "alertmanager" / "alertmanager.yml").read_text())
    [receiver] = config["receivers"]
    if webhook_url:
        receiver["webhook_configs"][0]["url"] = webhook_url
    else:
        del receiver["webhook_configs"]
    return config


def _require(program: str) -> None:
    if shutil.which(program) is None:
        raise RuntimeError(f"{program} is not installed: `apt-get install {program}` (`make test` does it)")


def run(config: NexusConfig, args: argparse.Namespace) -> int:
    """`nexus stack`: the production stack on this machine until Ctrl-C."""
    folder = load_settings().home.resolve() / "stack"
    shutil.rmtree(folder, ignore_errors=True)  # its databases are new each time; so are the logs and the auth store
    with LocalStack(folder, args.postgres, config.path) as stack:
        for name in ("webserver", "mlflow", "serving", "prometheus", "alertmanager", "s3"):
            print(f"{name:10} {stack.url(name)}")
        dask = stack.env["NEXUS_DASK_SCHEDULER"]
        print(f"{'dask':10} {dask} (a dataset's compute.scheduler: ${{NEXUS_DASK_SCHEDULER}})")
        print(f"MLflow sign-in: {stack.env['MLFLOW_TRACKING_USERNAME']} / {stack.mlflow_password}")
        print(f"logs in {folder}; Ctrl-C stops everything and drops the stack's databases")
        try:
            while True:
                for name, server in stack.servers.items():
                    if server.process.poll() is not None:
                        print(f"{name} exited with {server.process.returncode}; see {folder / (name + '.log')}")
                        return 1
                time.sleep(2)
        except KeyboardInterrupt:
            return 0
