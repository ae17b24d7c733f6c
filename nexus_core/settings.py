"""The environment, read in one place: every `NEXUS_*` variable and the MLflow endpoint, as one settings object.

The two modes come from here: embedded (one local folder, nothing to start) or production (PostgreSQL, S3,
an MLflow server). Secrets stay in the environment; `reader_client` is all the service needs of it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import mlflow
from mlflow.tracking import MlflowClient
from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from nexus_core.config import REPO_ROOT, ConfigError


class Settings(BaseSettings):
    """`NEXUS_<FIELD>` for each field (e.g. `NEXUS_MODE`, `NEXUS_SERVING_TOKEN`)."""

    model_config = SettingsConfigDict(env_prefix="NEXUS_", frozen=True, extra="ignore")

    mode: Literal["embedded", "production"] = "embedded"
    home: Path = Field(REPO_ROOT / ".nexus", description="The embedded folder: SQLite stores, files, MLflow.")
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_prefix: str = "nexus"
    app_db_url: str | None = None
    code_version: str | None = None
    mlflow_tracking_uri: str | None = Field(None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI"))
    mlflow_ui_url: str | None = Field(None, description="The MLflow UI that links in Dagster's metadata point to.")
    dagster_ui_path: str = Field(
        "", description="The path the Dagster UI is served under (`dagster-webserver --path-prefix`), for its links."
    )
    serving_model: str | None = Field(None, description="The registered model to serve; default the config's.")
    serving_token: str | None = None
    serving_max_records: int = Field(10_000, gt=0)
    serving_max_body_bytes: int = Field(8 * 1024 * 1024, gt=0, description="Larger request bodies get a 413.")
    serving_read_seconds: float = Field(5.0, gt=0, description="A request body must arrive within this time.")
    serving_poll_seconds: float = Field(1.0, gt=0)
    serving_trace_sample_rate: float = Field(0.0, ge=0, le=1)
    serving_workers: int = Field(1, gt=0)
    serving_url: str | None = Field(
        None, description="A running service that deploys wait for; `{dataset}` in it names each dataset's service."
    )
    serving_shadow_share: float = Field(
        0.0, ge=0, le=1, description="Share of live requests the `challenger` also answers, off the request's path."
    )
    serving_port: int = 3001
    openlineage_url: str | None = Field(None, validation_alias=AliasChoices("OPENLINEAGE_URL"))
    openlineage_config: str | None = Field(None, validation_alias=AliasChoices("OPENLINEAGE_CONFIG"))
    openlineage_transport: str | None = Field(None, validation_alias=AliasChoices("OPENLINEAGE__TRANSPORT__TYPE"))
    openlineage_disabled: bool = Field(False, validation_alias=AliasChoices("OPENLINEAGE_DISABLED"))
    sensor_interval_seconds: int | None = Field(
        None, gt=0, description="How often the sensors may tick; default each sensor's own (10-60 s)."
    )

    def use_embedded_bentoml_store(self) -> None:
        """In embedded mode BentoML's store is in the embedded folder; BentoML reads `BENTOML_HOME` when the store
        is first used, so call this before."""
        if self.mode == "embedded":
            os.environ.setdefault("BENTOML_HOME", str(self.home.resolve() / "bentoml"))

    @property
    def mlflow_ui(self) -> str:
        """`NEXUS_MLFLOW_UI_URL`, else the tracking server when it is one, else `make mlflow`'s address."""
        if self.mlflow_ui_url:
            return self.mlflow_ui_url.rstrip("/")
        if self.mode == "production" and (self.mlflow_tracking_uri or "").startswith("http"):
            return self.mlflow_tracking_uri.rstrip("/")
        return "http://127.0.0.1:5000"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking store: the embedded SQLite file, or the server of `MLFLOW_TRACKING_URI`."""
        if self.mode == "embedded":
            return f"sqlite:///{self.home.resolve() / 'mlflow' / 'mlflow.db'}"
        if not self.mlflow_tracking_uri:
            raise ConfigError("NEXUS_MODE=production needs MLFLOW_TRACKING_URI (the MLflow tracking server)")
        return self.mlflow_tracking_uri

    @property
    def app_database_url(self) -> str:
        """The app database: `NEXUS_APP_DB_URL`, else the embedded SQLite file."""
        return self.app_db_url or f"sqlite:///{self.home.resolve() / 'app.db'}"

    @property
    def lineage(self) -> bool:
        """OpenLineage is off until a transport is configured the way its clients read one."""
        configured = self.openlineage_url or self.openlineage_config or self.openlineage_transport
        return bool(configured) and not self.openlineage_disabled


def load_settings() -> Settings:
    """The settings of the environment now; a bad value names the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"NEXUS_{'_'.join(map(str, error['loc'])).upper()}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"bad environment: {problems}") from None


class RegistryMissing(RuntimeError):
    """The tracking store's database file is not there: an outage to wait out, never a store to create."""


def reader_uri(tracking_uri: str) -> str:
    """`tracking_uri` as a reader of the registry opens it, never creating or migrating a store: a SQLite file is
    opened read-only, and a missing one raises `RegistryMissing` (MLflow would create an empty store in its place,
    which every reader would then trust). The file's inode is part of the URI, so a file restored at the same path
    is read afresh instead of through connections to the old one (MLflow keeps one store per URI)."""
    if not tracking_uri.startswith("sqlite:///"):
        return tracking_uri
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        raise RegistryMissing(f"the tracking store {path} is missing") from None
    return f"sqlite:///file:{path}?mode=ro&uri=true&nexus_inode={inode}"


def reader_client(settings: Settings) -> MlflowClient:
    """A read-only client of the tracking store and registry (see `reader_uri`), which MLflow's module-level
    loaders use too: all the service needs of MLflow."""
    uri = reader_uri(settings.tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)
