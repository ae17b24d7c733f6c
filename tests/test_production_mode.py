"""Production mode: Dagster storage on the real PostgreSQL, asset values on an S3 endpoint, chosen by env vars."""

import shutil
from pathlib import Path

import boto3
import dagster as dg
import sqlalchemy as sa

from nexus_assets.cli import materialize
from nexus_assets.definitions import build_definitions

REPO = Path(__file__).resolve().parent.parent


def test_assets_materialize_on_postgres_and_s3(tmp_path, monkeypatch, write_config, postgres_database, s3_endpoint):
    dagster_db = postgres_database("dagster")
    monkeypatch.setenv("NEXUS_MODE", "production")
    monkeypatch.setenv("NEXUS_DAGSTER_PG_URL", dagster_db.replace("postgresql+psycopg2", "postgresql"))
    monkeypatch.setenv("NEXUS_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("NEXUS_S3_BUCKET", "nexus-assets")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="nexus-assets")
    home = tmp_path / "dagster-home"
    home.mkdir()
    shutil.copy(REPO / "docker" / "dagster.production.yaml", home / "dagster.yaml")

    defs = build_definitions(write_config())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
            assert materialize(defs, instance, ["raw_data", "features"], day).success
        assert materialize(defs, instance, ["training_dataset"]).success
        assert instance.get_materialized_partitions(dg.AssetKey("features")) == {
            "2026-01-01",
            "2026-01-02",
            "2026-01-03",
        }
        holdout = defs.load_asset_value("training_dataset", instance=instance).holdout

    stored = {o["Key"] for o in s3.list_objects_v2(Bucket="nexus-assets")["Contents"]}
    assert {"nexus/raw_data/2026-01-02", "nexus/features/2026-01-03", "nexus/training_dataset"} <= stored
    assert len(holdout) == 300
    with sa.create_engine(dagster_db).connect() as connection:
        runs = connection.execute(sa.text("SELECT count(*) FROM runs")).scalar_one()
    assert runs == 4
    assert not (tmp_path / "nexus-home" / "storage").exists(), "production mode must not write the embedded folder"
