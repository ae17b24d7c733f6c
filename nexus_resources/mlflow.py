"""The one MLflow resource: tracking and registry, retries on transient errors, runs tagged back to Dagster."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from urllib.parse import quote

import dagster as dg
import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from requests.exceptions import RequestException

from nexus_core import registry
from nexus_core.config import REPO_ROOT
from nexus_core.settings import RegistryMissing, load_settings, reader_uri

_NOT_TRANSIENT = {
    "RESOURCE_DOES_NOT_EXIST",
    "RESOURCE_ALREADY_EXISTS",
    "INVALID_PARAMETER_VALUE",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "BAD_REQUEST",
}


class MlflowResource(dg.ConfigurableResource):
    """MLflow at `tracking_uri`; MLflow's own HTTP client retries 429, 5xx and refused connections with backoff.

    Credentials for a tracking server come from MLflow's environment variables
    (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` or `MLFLOW_TRACKING_TOKEN`), never from config.
    """

    tracking_uri: str
    registry_uri: str | None = None
    artifact_location: str | None = None
    ui_url: str = "http://127.0.0.1:5000"  # where metadata links point: the MLflow UI over the same store
    experiment_prefix: str = "nexus"
    max_retries: int = 5
    backoff_factor: int = 1
    request_timeout: int = 30

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.activate()

    def activate(self) -> None:
        """Point the MLflow client library at this server, with this retry budget."""
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(self.max_retries)
        os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(self.backoff_factor)
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(self.request_timeout)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri or self.tracking_uri)

    @property
    def retry_budget_seconds(self) -> float:
        """Roughly how long MLflow keeps retrying one request (urllib3 doubles the wait, capped at 120 s)."""
        waits = [min(120.0, self.backoff_factor * 2**n) for n in range(self.max_retries)]
        return sum(waits) + self.request_timeout

    def run_url(self, run_id: str) -> str:
        """The run's page in the MLflow UI."""
        experiment = self.client().get_run(run_id).info.experiment_id
        return f"{self.ui_url}/#/experiments/{experiment}/runs/{run_id}"

    def artifact_url(self, run_id: str, path: str) -> str:
        """An artifact's page in the MLflow UI (an HTML report renders there)."""
        return f"{self.run_url(run_id)}/artifactPath/{path}"

    def monitoring_run(self, dataset_name: str, name: str, version: str) -> str:
        """The MLflow run that collects a registered version's monitoring (drift reports and metrics per
        partition), created on first use."""
        client, key = self.client(), f"{name}:{version}"
        experiment = self.experiment_id(dataset_name)
        with self.reporting_failures(f"open the monitoring run of {name} version {version}"):
            found = client.search_runs([experiment], f"tags.`nexus.monitoring` = '{key}'", max_results=1)
            if found:
                return found[0].info.run_id
            tags = {"nexus.monitoring": key, "nexus.registered_model": name, "nexus.model_version": version}
            run = client.create_run(experiment, run_name=f"monitoring {name} v{version}", tags=tags)
            client.set_terminated(run.info.run_id)
            return run.info.run_id

    def version_url(self, name: str, version: str) -> str:
        """A registered version's page in the MLflow UI."""
        return f"{self.ui_url}/#/models/{quote(name)}/versions/{version}"

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri or self.tracking_uri)

    def reader(self) -> MlflowClient:
        """A client for what only reads the registry (the sensors): it never creates a missing store."""
        registry = reader_uri(self.registry_uri or self.tracking_uri)
        return MlflowClient(tracking_uri=reader_uri(self.tracking_uri), registry_uri=registry)

    def experiment_id(self, dataset_name: str) -> str:
        """The dataset's experiment, created on first use."""
        name = f"{self.experiment_prefix}/{dataset_name}"
        with self.reporting_failures(f"open experiment {name}"):
            experiment = mlflow.get_experiment_by_name(name)
            if experiment is not None:
                return experiment.experiment_id
            return mlflow.create_experiment(name, artifact_location=self.artifact_location)

    @contextmanager
    def start_run(
        self,
        context: dg.AssetExecutionContext,
        dataset_name: str,
        run_name: str,
        tags: dict[str, str],
    ) -> Iterator[mlflow.ActiveRun]:
        """An MLflow run tagged with the Dagster run, the asset, the code version and the caller's data tags."""
        lineage = {
            "dagster.run_id": context.run.run_id,
            "dagster.asset_key": context.asset_key.to_user_string(),
            "nexus.code_version": code_version(),
            **tags,
        }
        experiment_id = self.experiment_id(dataset_name)
        with (
            self.reporting_failures(f"track run {run_name}"),
            mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=lineage) as run,
        ):
            yield run

    def aliases(self, name: str, missing_ok: bool = True) -> dict[str, str] | None:
        """The registered model's aliases, read-only; None while the tracking store does not exist (nothing trained
        yet) if `missing_ok`."""
        with self.reporting_failures(f"read the aliases of {name}"):
            try:
                return registry.aliases(self.reader(), name)
            except RegistryMissing:
                if missing_ok:
                    return None
                raise

    @contextmanager
    def reporting_failures(self, action: str) -> Iterator[None]:
        """Turn an MLflow or network error, after MLflow's own retries, into a failure that says what to do."""
        try:
            yield
        except MlflowException as exc:
            if exc.error_code in _NOT_TRANSIENT:
                raise dg.Failure(description=f"MLflow refused to {action}: {exc.message}") from exc
            raise self._unreachable(action, exc) from exc
        except (RequestException, ConnectionError) as exc:
            raise self._unreachable(action, exc) from exc
        except RegistryMissing as exc:
            raise dg.Failure(
                description=f"cannot {action}: {exc} (nothing trained yet, or the store is away); it is not created "
                "here: the next training run creates it, or restore it and the next tick reads it"
            ) from exc

    def _unreachable(self, action: str, exc: Exception) -> dg.Failure:
        return dg.Failure(
            description=(
                f"MLflow at {self.tracking_uri} failed to {action} after {self.max_retries} retries "
                f"(about {self.retry_budget_seconds:.0f} s): {str(exc).splitlines()[0][:300]}. "
                "Check that the tracking server is up and MLFLOW_TRACKING_URI is right, then re-run: "
                "a re-run registers no duplicate version."
            ),
        )


@cache
def code_version() -> str:
    """`NEXUS_CODE_VERSION`, else the git commit of the checkout, else the package version."""
    if version := load_settings().code_version:
        return version
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        if out.returncode == 0 and out.stdout.strip():
            return f"git:{out.stdout.strip()}"
    except OSError:
        pass
    return f"nexusml:{metadata.version('nexusml')}"
