"""`model_performance`: each partition's stored predictions judged against its labels, per model version."""

import functools
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from nexus_assets.lib.keys import inputs
from nexus_assets.lib.metadata import table as metadata_table
from nexus_assets.lib.ranges import by_partition, checked, output
from nexus_assets.monitoring import performance
from nexus_assets.training.metrics import metrics_for
from nexus_core.config import NexusConfig
from nexus_resources.app_db import AppDatabase
from nexus_resources.mlflow import MlflowResource


def build_model_performance(config: NexusConfig, partitions: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    name, id_column = config.model.registered_name, config.dataset.id_column or "row"
    metric = metrics_for(config.dataset.task)[config.metric]

    @dg.asset(
        key=config.asset("model_performance"),
        ins=inputs(config, "ground_truth"),
        group_name="monitoring",
        kinds={"pandas"},
        code_version="1",
        partitions_def=partitions,
        deps=[config.asset("batch_predictions")],
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
        context: dg.AssetExecutionContext, ground_truth: Any, mlflow: MlflowResource, app_db: AppDatabase
    ):
        """The selection metric of a day's stored predictions against the labels known so far, per model version."""
        holdout = functools.cache(lambda version: _holdout(mlflow, name, metric, version))  # once per version a run
        values, metadata, results = {}, {}, {}
        for key, truth in by_partition(context, ground_truth).items():
            stored = app_db.predictions_for(name, key)
            labels = truth.assign(id=truth[id_column].astype(str))[["id", "label"]]
            joined = stored.merge(labels, on="id", how="inner")
            unknown = int(len(labels) - labels["id"].isin(stored["id"]).sum())
            if unknown:
                context.log.warning(
                    f"{unknown} labels of {key} match no stored prediction and are left out; "
                    "check the label source's id column"
                )
            judgement = performance.judge(config, metric, joined, holdout)
            values[key] = judgement.table
            metadata[key] = _metadata(config, judgement.table, len(joined), unknown)
            _record(config, app_db, key, judgement.table)
            results[key] = [
                dg.AssetCheckResult(
                    check_name="no_degradation",
                    passed=not judgement.degraded,
                    description=judgement.description,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={"labelled_rows": dg.MetadataValue.int(len(joined))},
                )
            ]
        yield output(context, values, metadata)
        yield from checked(context, results)

    return model_performance


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


def _holdout(mlflow: MlflowResource, name: str, metric, version: str) -> float:
    """The version's holdout score from its training run; NaN for a version deleted from the registry."""
    client = mlflow.client()
    try:
        run_id = client.get_model_version(name, version).run_id
        return client.get_run(run_id).data.metrics.get(f"holdout_{metric.name}", np.nan)
    except MlflowException as exc:  # a deleted version keeps its stored rows, not its score
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return np.nan
