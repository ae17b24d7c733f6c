"""The two modes, chosen by environment variables: embedded (one local folder) or production."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3PickleIOManager, S3Resource

from nexus_resources.app_db import AppDatabase
from nexus_resources.config import REPO_ROOT, ConfigError
from nexus_resources.mlflow import MlflowResource
from nexus_resources.parquet_io import ParquetIOManager
from nexus_resources.reports import ReportStore

PRODUCTION_ENV = {
    "NEXUS_S3_BUCKET": "the bucket that holds asset values",
    "NEXUS_APP_DB_URL": "SQLAlchemy URL of the app database (audit log, predictions)",
    "MLFLOW_TRACKING_URI": "the MLflow tracking server, e.g. http://mlflow:5000",
}


def mode() -> str:
    value = os.environ.get("NEXUS_MODE", "embedded")
    if value not in ("embedded", "production"):
        raise ConfigError(f"NEXUS_MODE must be 'embedded' or 'production', not {value!r}")
    return value


def nexus_home() -> Path:
    """The embedded mode's folder: SQLite stores, MLflow files, asset values and the app database."""
    return Path(os.environ.get("NEXUS_HOME") or REPO_ROOT / ".nexus").resolve()


def build_resources() -> dict[str, object]:
    """Resources for the current mode; production reads every endpoint and credential from the environment."""
    if mode() == "embedded":
        home = nexus_home()
        (home / "mlflow").mkdir(parents=True, exist_ok=True)
        # BentoML reads its store location from the environment when the store is first used.
        os.environ.setdefault("BENTOML_HOME", str(home / "bentoml"))
        return {
            "io_manager": dg.FilesystemIOManager(base_dir=str(home / "storage")),
            "parquet_io_manager": ParquetIOManager(location=str(home / "storage")),
            "mlflow": MlflowResource(
                tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
                artifact_location=(home / "mlflow" / "artifacts").as_uri(),
            ),
            "app_db": AppDatabase(url=os.environ.get("NEXUS_APP_DB_URL") or f"sqlite:///{home / 'app.db'}"),
            "reports": ReportStore(location=str(home / "reports")),
        }
    missing = [f"{name} ({why})" for name, why in PRODUCTION_ENV.items() if not os.environ.get(name)]
    if missing:
        raise ConfigError("NEXUS_MODE=production needs these environment variables: " + ", ".join(missing))
    s3 = S3Resource(
        endpoint_url=os.environ.get("NEXUS_S3_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=dg.EnvVar("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=dg.EnvVar("AWS_SECRET_ACCESS_KEY"),
    )
    bucket, prefix = os.environ["NEXUS_S3_BUCKET"], os.environ.get("NEXUS_S3_PREFIX", "nexus")
    return {
        "io_manager": S3PickleIOManager(s3_resource=s3, s3_bucket=bucket, s3_prefix=prefix),
        "parquet_io_manager": ParquetIOManager(
            location=f"s3://{bucket}/{prefix}", endpoint_url=os.environ.get("NEXUS_S3_ENDPOINT_URL")
        ),
        "mlflow": MlflowResource(tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI")),
        "app_db": AppDatabase(url=dg.EnvVar("NEXUS_APP_DB_URL")),
        "reports": ReportStore(
            location=f"s3://{bucket}/{prefix}/reports",
            endpoint_url=os.environ.get("NEXUS_S3_ENDPOINT_URL"),
        ),
    }
