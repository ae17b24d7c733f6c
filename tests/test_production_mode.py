"""Production mode, chosen by environment variables: Dagster storage on the real PostgreSQL, asset values on
an S3 endpoint, a real `mlflow server` (PostgreSQL backend, S3 artifacts) and the app database on PostgreSQL."""

import shutil
from pathlib import Path

import boto3
import dagster as dg
import sqlalchemy as sa

from nexus_cli.runs import materialize
from nexus_core import registry
from nexus_defs.definitions import build_definitions
from nexus_resources.modes import build_resources
from tests.conftest import TRAINING_CHAIN

REPO = Path(__file__).resolve().parent.parent
NAME = "nexus-churn-test"


def test_whole_chain_runs_on_the_production_services(
    tmp_path, monkeypatch, write_config, postgres_database, s3_endpoint, mlflow_server
):
    dagster_db, app_db = postgres_database("dagster"), postgres_database("app")
    monkeypatch.setenv("NEXUS_MODE", "production")
    monkeypatch.setenv("NEXUS_DAGSTER_PG_URL", dagster_db)
    monkeypatch.setenv("NEXUS_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("NEXUS_S3_BUCKET", "nexus-assets")
    monkeypatch.setenv("NEXUS_APP_DB_URL", app_db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="nexus-assets")
    home = tmp_path / "dagster-home"
    home.mkdir()
    shutil.copy(REPO / "docker" / "dagster.production.yaml", home / "dagster.yaml")

    defs = build_definitions(write_config())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for day in ("2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"):
            assert materialize(defs, instance, ["raw_data", "features"], day).success
        assert materialize(defs, instance, TRAINING_CHAIN).success
        champion = defs.load_asset_value("champion_model", instance=instance)
        assert materialize(defs, instance, ["batch_predictions"], "2026-01-04").success
        scored = defs.load_asset_value("batch_predictions", partition_key="2026-01-04", instance=instance)

    stored = {o["Key"] for o in s3.list_objects_v2(Bucket="nexus-assets")["Contents"]}
    assert {
        "nexus/raw_data/2026-01-02",
        "nexus/features/2026-01-03.parquet",
        "nexus/training_dataset",
        "nexus/batch_predictions/2026-01-04.parquet",
    } <= stored
    with sa.create_engine(dagster_db).connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM runs")).scalar_one() == 6
    assert not (tmp_path / "nexus-home" / "storage").exists(), "production mode must not write the embedded folder"

    resources = build_resources()
    mlflow, audit = (
        resources["mlflow"].process_config_and_initialize(),
        resources["app_db"].process_config_and_initialize(),
    )
    mlflow.activate()
    client = mlflow.client()
    assert champion == {"name": NAME, "version": "1", "promoted": True, "reason": champion["reason"]}
    assert registry.aliases(client, NAME) == {"challenger": "1", "champion": "1"}
    assert client.get_model_version(NAME, "1").tags["nexus.gate.decision"] == "promoted"
    assert registry.load_pipeline(f"models:/{NAME}/1").predict is not None  # a version: aliases can move
    artifacts = s3.list_objects_v2(Bucket="mlflow")["Contents"]
    assert any(obj["Key"].endswith("model.skops") for obj in artifacts)
    assert audit.decisions(NAME)[0]["decision"] == "promoted"
    assert len(scored) == 300 and set(audit.predictions_for(NAME, "2026-01-04")["id"]) == set(scored["id"].astype(str))
