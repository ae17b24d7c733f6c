"""`model_performance`: each partition's stored predictions judged against its labels, per model version. Each
partition is one task (`judge_partition`) that reads its stored predictions and labels and records its judgement
itself: in the run's process, or on a Dask worker (`Compute`)."""

import functools
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from nexus_assets.lib.metadata import table as metadata_table
from nexus_assets.lib.ranges import checked, output, partition_keys
from nexus_assets.monitoring import performance
from nexus_assets.training.metrics import Metric, metrics_for
from nexus_core.config import NexusConfig
from nexus_resources.app_db import AppDatabase
from nexus_resources.compute import Compute
from nexus_resources.frame_io import PartitionFiles, PickleIOManager
from nexus_resources.mlflow import MlflowResource


@dataclass(frozen=True)
class _Judging:
    """What a task needs to judge a partition, as plain data that travels to a worker."""

    config: NexusConfig
    labels: PartitionFiles
    app_db_url: str
    tracking_uri: str
    registry_uri: str


@dataclass(frozen=True)
class Judged:
    """A task's result: the partition's judgement per version, and how many labels matched a prediction or not."""

    judgement: performance.Judgement
    labelled: int
    unknown: int


def build_model_performance(config: NexusConfig, partitions: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    @dg.asset(
        key=config.asset("model_performance"),
        deps=[config.asset("ground_truth"), config.asset("batch_predictions")],
        group_name="monitoring",
        kinds={"pandas"},
        code_version="2",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            dg.AssetCheckSpec(
                "no_degradation",
                asset=config.asset("model_performance"),
                partitions_def=partitions,
                description="Each version scores within the tolerance of its own holdout score.",
            )
        ],
    )
    def model_performance(
        context: dg.AssetExecutionContext,
        mlflow: MlflowResource,
        app_db: AppDatabase,
        compute: Compute,
        io_manager: dg.ResourceParam[PickleIOManager],
    ):
        """The selection metric of a day's stored predictions against the labels known so far, per model version."""
        job = _Judging(
            config, io_manager.files(), app_db.url, mlflow.tracking_uri, mlflow.registry_uri or mlflow.tracking_uri
        )
        keys = partition_keys(context)
        judged = dict(compute.each(config, judge_partition, keys, job, what="performance of partition"))
        values, metadata, results = {}, {}, {}
        for key in keys:
            result = judged[key]
            if result.unknown:
                context.log.warning(
                    f"{result.unknown} labels of {key} match no stored prediction and are left out; "
                    "check the label source's id column"
                )
            table = result.judgement.table
            values[key] = table
            metadata[key] = _metadata(config, table, result.labelled, result.unknown)
            results[key] = [
                dg.AssetCheckResult(
                    check_name="no_degradation",
                    passed=not result.judgement.degraded,
                    description=result.judgement.description,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={"labelled_rows": dg.MetadataValue.int(result.labelled)},
                )
            ]
        yield output(context, values, metadata)
        yield from checked(context, results)

    return model_performance


def judge_partition(key: str | None, job: _Judging) -> Judged:
    """Judges a partition's stored predictions against its known labels and records the judgement per version."""
    config = job.config
    name, id_column = config.model.registered_name, config.dataset.id_column or "row"
    metric = metrics_for(config.dataset.task)[config.metric]
    app_db = AppDatabase(url=job.app_db_url)
    truth = job.labels.read(config.asset("ground_truth"), key)
    stored = app_db.predictions_for(name, key)
    labels = truth.assign(id=truth[id_column].astype(str))[["id", "label"]]
    joined = stored.merge(labels, on="id", how="inner")
    unknown = int(len(labels) - labels["id"].isin(stored["id"]).sum())
    client = MlflowClient(tracking_uri=job.tracking_uri, registry_uri=job.registry_uri)
    holdout = functools.cache(lambda version: _holdout(client, name, metric, version))  # once per version
    judgement = performance.judge(config, metric, joined, holdout)
    _record(config, app_db, key, judgement.table)
    return Judged(judgement, len(joined), unknown)


def _metadata(config: NexusConfig, table: pd.DataFrame, labelled: int, unknown: int) -> dict:
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(labelled),
        # "not judged" where a value is not known (the interval of a day too small to judge)
        "performance": metadata_table(table, missing="not judged")
        if len(table)
        else dg.MetadataValue.text("no labelled predictions yet"),
        "labels_without_prediction": dg.MetadataValue.int(unknown),
    }
    judged = table[table["degraded"].notna()]
    if len(judged):
        metadata[config.metric] = float(judged[config.metric].iloc[-1])
    return metadata


def _record(config: NexusConfig, app_db: AppDatabase, key: str, table: pd.DataFrame) -> None:
    """Each version's judgement of the partition, for the retraining sensor and the exporter."""
    for row in table.itertuples():
        app_db.record_health(
            config.model.registered_name,
            key,
            row.model_version,
            metric=config.metric,
            metric_value=float(getattr(row, config.metric)),
            degraded=row.degraded,
            labelled_rows=int(row.rows),
        )


def _holdout(client: MlflowClient, name: str, metric: Metric, version: str) -> float:
    """The version's holdout score from its training run; NaN for a version deleted from the registry."""
    try:
        run_id = client.get_model_version(name, version).run_id
        return client.get_run(run_id).data.metrics.get(f"holdout_{metric.name}", np.nan)
    except MlflowException as exc:  # a deleted version keeps its stored rows, not its score
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return np.nan
