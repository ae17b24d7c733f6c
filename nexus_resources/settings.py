"""The two modes, chosen by environment variables: embedded (one local folder) or production."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3PickleIOManager, S3Resource

from nexus_resources.config import REPO_ROOT, ConfigError

PRODUCTION_ENV = {
    "NEXUS_S3_BUCKET": "the bucket that holds asset values",
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
        return {"io_manager": dg.FilesystemIOManager(base_dir=str(nexus_home() / "storage"))}
    missing = [f"{name} ({why})" for name, why in PRODUCTION_ENV.items() if not os.environ.get(name)]
    if missing:
        raise ConfigError("NEXUS_MODE=production needs these environment variables: " + ", ".join(missing))
    s3 = S3Resource(
        endpoint_url=os.environ.get("NEXUS_S3_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=dg.EnvVar("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=dg.EnvVar("AWS_SECRET_ACCESS_KEY"),
    )
    return {
        "io_manager": S3PickleIOManager(
            s3_resource=s3, s3_bucket=dg.EnvVar("NEXUS_S3_BUCKET"), s3_prefix=os.environ.get("NEXUS_S3_PREFIX", "nexus")
        )
    }
