"""The resources of the settings' mode: embedded (one local folder) or production (S3, PostgreSQL, MLflow)."""

from __future__ import annotations

import dagster as dg

from nexus_core.config import ConfigError
from nexus_core.settings import Settings, load_settings
from nexus_resources.app_db import AppDatabase
from nexus_resources.compute import Compute
from nexus_resources.frame_io import ParquetIOManager, PickleIOManager
from nexus_resources.mlflow import MlflowResource
from nexus_resources.reports import ReportStore

PRODUCTION_ENV = {
    "NEXUS_S3_BUCKET": "the bucket that holds asset values",
    "NEXUS_APP_DB_URL": "SQLAlchemy URL of the app database (audit log, predictions)",
    "MLFLOW_TRACKING_URI": "the MLflow tracking server, e.g. http://mlflow:5000",
}


def build_resources(settings: Settings | None = None) -> dict[str, object]:
    """Resources for the settings' mode; production reads every endpoint and credential from the environment."""
    settings = settings or load_settings()
    if settings.mode == "embedded":
        home = settings.home.resolve()
        (home / "mlflow").mkdir(parents=True, exist_ok=True)
        settings.use_embedded_bentoml_store()
        return {
            "io_manager": PickleIOManager(location=str(home / "storage")),
            "parquet_io_manager": ParquetIOManager(location=str(home / "storage")),
            "mlflow": MlflowResource(
                tracking_uri=settings.tracking_uri,
                artifact_location=(home / "mlflow" / "artifacts").as_uri(),
                ui_url=settings.mlflow_ui,
            ),
            "app_db": AppDatabase(url=settings.app_database_url),
            "reports": ReportStore(location=str(home / "reports")),
            "compute": Compute(),
        }
    found = {
        "NEXUS_S3_BUCKET": settings.s3_bucket,
        "NEXUS_APP_DB_URL": settings.app_db_url,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
    }
    missing = [f"{name} ({why})" for name, why in PRODUCTION_ENV.items() if not found[name]]
    if missing:
        raise ConfigError("NEXUS_MODE=production needs these environment variables: " + ", ".join(missing))
    store, endpoint = f"s3://{settings.s3_bucket}/{settings.s3_prefix}", settings.s3_endpoint_url
    return {
        "io_manager": PickleIOManager(location=store, endpoint_url=endpoint),
        "parquet_io_manager": ParquetIOManager(location=store, endpoint_url=endpoint),
        "mlflow": MlflowResource(tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI"), ui_url=settings.mlflow_ui),
        "app_db": AppDatabase(url=dg.EnvVar("NEXUS_APP_DB_URL")),
        "reports": ReportStore(location=f"{store}/reports", endpoint_url=endpoint),
        "compute": Compute(),
    }
