"""Links in materialization metadata to the Dagster UI's own pages (an asset's partition, a materialization, a
run) and to the MLflow version a prediction came from. Dagster links are relative, so they open on whatever host
and port the UI is served from."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import dagster as dg

from nexus_core.config import NexusConfig
from nexus_core.settings import load_settings
from nexus_resources.mlflow import MlflowResource


def asset_link(
    config: NexusConfig, name: str, partition: str | None = None, at: float | None = None
) -> dg.UrlMetadataValue:
    """The page of this dataset's asset `name`: one partition, or the materialization at timestamp `at`."""
    query = {"view": "partitions", "partition": partition} if partition else {"view": "events"}
    if at is not None:
        query["asOf"] = str(int(at * 1000))
    path = "/".join(quote(part) for part in config.asset(name))
    return dg.MetadataValue.url(f"{load_settings().dagster_ui_path.rstrip('/')}/assets/{path}?{urlencode(query)}")


def run_link(run_id: str) -> dg.UrlMetadataValue:
    return dg.MetadataValue.url(f"{load_settings().dagster_ui_path.rstrip('/')}/runs/{run_id}")


def version_links(
    config: NexusConfig, instance: dg.DagsterInstance, mlflow: MlflowResource, version: str
) -> dict[str, dg.UrlMetadataValue]:
    """From a registered version to where it came from: the version in MLflow, the Dagster run that trained it, and
    that run's training set and gate decision."""
    name = config.model.registered_name
    links = {"mlflow_version": dg.MetadataValue.url(mlflow.version_url(name, version))}
    client = mlflow.client()
    run = client.get_run(client.get_model_version(name, version).run_id)
    trained_by = run.data.tags.get("dagster.run_id")
    if trained_by is None:  # registered outside the platform
        return links
    links["training_run"] = run_link(trained_by)
    when = {
        entry.dagster_event.asset_key.path[-1]: entry.timestamp
        for entry in instance.all_logs(trained_by, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    }
    for asset in ("training_dataset", "champion_model"):
        if asset in when:
            links[asset] = asset_link(config, asset, at=when[asset])
    return links
