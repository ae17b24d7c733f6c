"""`batch_predictions`, `ground_truth` and `model_performance`: the champion scores each day, labels arrive
later, and each day's predictions are judged against them."""

import datetime as dt
from functools import partial

import dagster as dg
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from nexus_assets.data.sources import labels_known
from nexus_assets.lib import reference as reference_sample
from nexus_assets.lib.background import Background
from nexus_assets.monitoring import drift, performance
from nexus_assets.partitions import partitions_def
from nexus_assets.training.metrics import metrics_for
from nexus_core import registry
from nexus_core.config import NexusConfig
from nexus_core.features import feature_spec, model_inputs
from nexus_core.inference import predict
from nexus_resources.app_db import AppDatabase
from nexus_resources.mlflow import MlflowResource
from nexus_resources.reports import ReportStore


class LabelsConfig(dg.Config):
    as_of: str | None = None  # ISO date the labels are read as of; default today


def build_monitoring_assets(config: NexusConfig) -> list[dg.AssetsDefinition]:
    read_labels = partial(labels_known, config)  # `ground_truth`'s own run config is named `config`
    dataset, name = config.dataset, config.model.registered_name
    partitions = partitions_def(config)
    metric = metrics_for(dataset.task)[config.metric]
    id_column = dataset.id_column or "row"

    @dg.asset(
        group_name="monitoring",
        kinds={"scikit-learn", "sql", "parquet"},
        code_version="2",
        partitions_def=partitions,
        io_manager_key="parquet_io_manager",
    )
    def batch_predictions(
        context: dg.AssetExecutionContext, features: pd.DataFrame, mlflow: MlflowResource, app_db: AppDatabase
    ) -> dg.MaterializeResult[pd.DataFrame]:
        """The champion's prediction for every validated row of a day, also stored in the app database."""
        client = mlflow.client()
        with mlflow.reporting_failures("load the champion"):
            version = registry.aliases(client, name).get(registry.CHAMPION)
            if version is None:
                raise dg.Failure(f"{name} has no champion yet; run the training chain before scoring")
            pipeline = registry.load_pipeline(f"models:/{name}/{version}")
        spec, step = feature_spec(config, features), config.monitoring.score_chunk_rows
        ids = _ids(features, id_column).to_numpy()  # in their source type here and in Parquet; text in the app DB
        parts = []
        # Rows are written to the app database on a thread while the next chunk is scored.
        with Background(
            lambda chunks: app_db.replace_predictions(name, context.partition_key, version, chunks)
        ) as store:
            for start in range(0, len(features), step):
                chunk = model_inputs(features.iloc[start : start + step], spec)
                scored = _score(pipeline, chunk).assign(id=ids[start : start + step])
                store.put(scored)
                parts.append(scored)
                if len(features) > step:
                    context.log.info(f"scored {start + len(chunk):,} of {len(features):,} rows")
        rows = (
            pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["prediction", "probability", "id"])
        )
        rows = rows.assign(model_version=version)
        app_db.record_health(name, context.partition_key, version, predictions=len(rows))
        counts = rows["prediction"].value_counts().rename_axis("prediction").rename("rows").to_frame()
        return dg.MaterializeResult(
            value=rows,
            metadata={
                "dagster/row_count": dg.MetadataValue.int(len(rows)),
                "model_version": version,
                "predictions": dg.MetadataValue.md(counts.to_markdown()),
            },
        )

    @dg.asset(group_name="monitoring", kinds={"pandas"}, code_version="1", partitions_def=partitions)
    def ground_truth(
        context: dg.AssetExecutionContext, config: LabelsConfig, features: pd.DataFrame
    ) -> dg.MaterializeResult[pd.DataFrame]:
        """The labels of a partition's rows that are known so far (they arrive after the predictions)."""
        key = context.partition_key
        as_of = dt.date.fromisoformat(config.as_of) if config.as_of else dt.date.today()
        known = read_labels(key, features.assign(**{id_column: _ids(features, id_column)}), as_of)
        labels = known[[id_column, dataset.target]].rename(columns={dataset.target: "label"})
        note = f"{len(labels)} labels known as of {as_of}" if len(labels) else f"no labels for {key} yet as of {as_of}"
        context.log.info(note)
        return dg.MaterializeResult(
            value=labels, metadata={"dagster/row_count": dg.MetadataValue.int(len(labels)), "labels": note}
        )

    @dg.asset(
        group_name="monitoring",
        kinds={"pandas"},
        code_version="1",
        partitions_def=partitions,
        deps=[batch_predictions],
        check_specs=[
            dg.AssetCheckSpec(
                "no_degradation",
                asset="model_performance",
                description="Each version scores within the tolerance of its own holdout score.",
            )
        ],
    )
    def model_performance(
        context: dg.AssetExecutionContext, ground_truth: pd.DataFrame, mlflow: MlflowResource, app_db: AppDatabase
    ):
        """The selection metric of a day's stored predictions against the labels known so far, per model version."""
        stored = app_db.predictions_for(name, context.partition_key)
        labels = ground_truth.assign(id=ground_truth[id_column].astype(str))[["id", "label"]]
        joined = stored.merge(labels, on="id", how="inner")
        unknown = int(len(labels) - labels["id"].isin(stored["id"]).sum())
        if unknown:
            context.log.warning(
                f"{unknown} labels of {context.partition_key} match no stored prediction and are left out; "
                "check the label source's id column"
            )
        judgement = performance.judge(config, metric, joined, lambda version: _holdout(mlflow, name, metric, version))
        table = judgement.table
        metadata = {
            "dagster/row_count": dg.MetadataValue.int(len(joined)),
            "performance": dg.MetadataValue.md(
                table.to_markdown(index=False, floatfmt=".4f") if len(table) else "no labelled predictions yet"
            ),
            "labels_without_prediction": dg.MetadataValue.int(unknown),
        }
        judged = table[table["degraded"].notna()]
        if len(judged):
            metadata[config.metric] = float(judged[config.metric].iloc[-1])
        for row in table.itertuples():
            app_db.record_health(
                name,
                context.partition_key,
                row.model_version,
                metric=config.metric,
                metric_value=float(getattr(row, config.metric)),
                degraded=row.degraded,
                labelled_rows=int(row.rows),
            )
        return dg.MaterializeResult(
            value=table,
            metadata=metadata,
            check_results=[
                dg.AssetCheckResult(
                    check_name="no_degradation",
                    passed=not judgement.degraded,
                    description=judgement.description,
                    severity=dg.AssetCheckSeverity.WARN,
                )
            ],
        )

    @dg.asset(
        group_name="monitoring",
        kinds={"evidently"},
        code_version="1",
        partitions_def=partitions,
        check_specs=[
            dg.AssetCheckSpec(
                "drift_share",
                asset="drift_report",
                description="The share of drifted columns stays under monitoring.drift_share_threshold.",
            )
        ],
    )
    def drift_report(
        context: dg.AssetExecutionContext,
        features: pd.DataFrame,
        batch_predictions: pd.DataFrame,
        mlflow: MlflowResource,
        reports: ReportStore,
        app_db: AppDatabase,
    ):
        """Evidently drift of a day's features and prediction scores against the champion's training sample."""
        threshold, minimum = config.monitoring.drift_share_threshold, config.monitoring.min_drift_rows
        if len(features) < minimum:
            description = (
                f"not judged: {len(features)} row(s) < monitoring.min_drift_rows={minimum}; longer partitions "
                "(dataset.partitions) give each one more rows"
            )
            context.log.info(f"drift of {context.partition_key} {description}")
            rows = {"rows_compared": dg.MetadataValue.int(len(features)), "model_version": _version(batch_predictions)}
            return _drift_result(True, description, rows, {"judged": False})
        client = mlflow.client()
        version = str(batch_predictions["model_version"].iloc[0]) if len(batch_predictions) else None
        if version is None:
            raise dg.Failure(f"no predictions stored for {context.partition_key}: nothing to compare yet")
        with mlflow.reporting_failures(f"load the reference of version {version}"):
            reference = reference_sample.load_reference(client, name, version)
            pipeline = registry.load_pipeline(f"models:/{name}/{version}")
        if reference.empty:
            raise dg.Failure(
                f"version {version} has no reference sample ({reference_sample.REFERENCE_ARTIFACT} missing or "
                "empty in its training run), so drift cannot be measured; retrain through the platform so the next "
                f"champion logs one. The predictions of {context.partition_key} stay stored."
            )
        spec = feature_spec(config, features)
        reference = reference.assign(**{drift.PREDICTION: _prediction_score(_score(pipeline, reference[spec.columns]))})
        current = model_inputs(features, spec).assign(
            **{drift.PREDICTION: _prediction_score(batch_predictions).to_numpy()}
        )
        result = drift.measure(reference, current, spec, threshold)
        where = reports.save(f"drift/{context.partition_key}.html", result.html)
        passed = result.share <= threshold
        app_db.record_health(name, context.partition_key, version, drift_share=result.share, drifted=not passed)
        description = f"{result.share:.0%} of columns drifted (threshold {threshold:.0%})" + (
            f": {', '.join(result.drifted)}" if result.drifted else ""
        )
        metadata = {
            "drift_share": result.share,
            "drifted_columns": dg.MetadataValue.json(result.drifted),
            "columns": dg.MetadataValue.md(result.columns.to_markdown(index=False, floatfmt=".4f")),
            "report": dg.MetadataValue.url(where) if where.startswith("s3://") else dg.MetadataValue.path(where),
            "model_version": version,
            "rows_compared": dg.MetadataValue.int(min(len(current), drift.CURRENT_ROWS)),
        }
        return _drift_result(passed, description, metadata, {"drift_share": result.share})

    return [batch_predictions, ground_truth, model_performance, drift_report]


def _drift_result(passed: bool, description: str, metadata: dict, check_metadata: dict) -> dg.MaterializeResult:
    check = dg.AssetCheckResult(
        check_name="drift_share",
        passed=passed,
        description=description,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=check_metadata,
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def _version(scored: pd.DataFrame) -> str:
    return str(scored["model_version"].iloc[0]) if len(scored) else ""


def _ids(frame: pd.DataFrame, id_column: str) -> pd.Series:
    """The rows' ids, or their position in the day when the dataset has no id column."""
    return frame[id_column] if id_column in frame else pd.Series(frame.index, index=frame.index)


def _prediction_score(scored: pd.DataFrame) -> pd.Series:
    """The number whose drift we watch: the probability for classifiers, the prediction for regression."""
    return scored["probability"] if scored["probability"].notna().any() else scored["prediction"].astype(float)


def _score(pipeline, inputs: pd.DataFrame) -> pd.DataFrame:
    labels, probabilities = predict(pipeline, inputs)
    if probabilities is None:
        return pd.DataFrame({"prediction": _text(labels), "probability": np.nan})
    # binary: the positive class's probability, so AUC can be computed later from stored rows
    score = probabilities[:, 1] if probabilities.shape[1] == 2 else probabilities.max(axis=1)
    return pd.DataFrame({"prediction": _text(labels), "probability": score})


def _text(labels: np.ndarray) -> np.ndarray:
    """Labels as strings, converting each distinct label once (a tenth of the cost of `astype(str)` per row)."""
    codes, distinct = pd.factorize(labels, use_na_sentinel=False)
    return distinct.astype(str).astype(object)[codes]


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
