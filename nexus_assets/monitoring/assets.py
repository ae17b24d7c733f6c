"""The monitoring assets: `batch_predictions` (scoring.py) and `ground_truth` (labels.py) per partition, then
`model_performance`, each partition's stored predictions judged against its labels, and `drift_report`."""

import dagster as dg
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from nexus_assets.lib import reference as reference_sample
from nexus_assets.monitoring import drift, performance
from nexus_assets.monitoring.labels import build_ground_truth
from nexus_assets.monitoring.scoring import build_batch_predictions, model_spec, score
from nexus_assets.monitoring.shadow import build_shadow_comparison
from nexus_assets.partitions import partitions_def
from nexus_assets.training.metrics import metrics_for
from nexus_core import registry
from nexus_core.config import NexusConfig
from nexus_core.features import model_inputs
from nexus_resources.app_db import AppDatabase
from nexus_resources.mlflow import MlflowResource
from nexus_resources.reports import ReportStore


def build_monitoring_assets(config: NexusConfig) -> list[dg.AssetsDefinition]:
    dataset, name = config.dataset, config.model.registered_name
    partitions = partitions_def(config)
    periods = isinstance(partitions, dg.TimeWindowPartitionsDefinition)
    metric = metrics_for(dataset.task)[config.metric]
    id_column = dataset.id_column or "row"

    @dg.asset(
        group_name="monitoring",
        kinds={"pandas"},
        code_version="1",
        partitions_def=partitions,
        deps=["batch_predictions"],
        check_specs=[
            dg.AssetCheckSpec(
                "no_degradation",
                asset="model_performance",
                partitions_def=partitions,
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
                # "—" where a value is not known (the interval of a day that did not fall, an unjudged day)
                table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=".4f", missingval="—")
                if len(table)
                else "no labelled predictions yet"
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
                    metadata={"labelled_rows": dg.MetadataValue.int(len(joined))},
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
                partitions_def=partitions,
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
        spec = model_spec(pipeline, name, version)
        # by position: a sampled reference keeps its rows' original index, the scores come numbered from 0
        scores = _prediction_score(score(pipeline, reference[spec.columns])).to_numpy()
        reference = reference.assign(**{drift.PREDICTION: scores})
        current = model_inputs(features, spec).assign(
            **{drift.PREDICTION: _prediction_score(batch_predictions).to_numpy()}
        )
        result = drift.measure(reference, current, spec, threshold)
        key = context.partition_key
        where = reports.save(f"drift/{key}.html", result.html)
        with mlflow.reporting_failures(f"log the drift report of {key}"):
            run_id = mlflow.monitoring_run(config.dataset.name, name, version)
            client.log_text(run_id, result.html, f"drift/{key}.html")
            # One point per partition, at the partition's own time, so MLflow charts drift over the data's days.
            window = context.partition_time_window if periods else None
            client.log_metric(
                run_id,
                "drift_share",
                result.share,
                timestamp=int(window.start.timestamp() * 1000) if window else None,
                step=partitions.get_partition_keys().index(key) if window else 0,
            )
        passed = result.share <= threshold
        app_db.record_health(name, context.partition_key, version, drift_share=result.share, drifted=not passed)
        description = f"{result.share:.0%} of columns drifted (threshold {threshold:.0%})" + (
            f": {', '.join(result.drifted)}" if result.drifted else ""
        )
        metadata = {
            # A percentage people read at a glance, and still a number Dagster plots over materializations.
            "drifted_percent": dg.MetadataValue.float(round(100 * result.share, 1)),
            "drifted_columns": dg.MetadataValue.text(", ".join(result.drifted) or "none"),
            "columns": dg.MetadataValue.md(result.columns.to_markdown(index=False, floatfmt=".4f")),
            "report": dg.MetadataValue.url(mlflow.artifact_url(run_id, f"drift/{key}.html")),
            "report_file": dg.MetadataValue.url(where) if where.startswith("s3://") else dg.MetadataValue.path(where),
            "mlflow_monitoring_run": dg.MetadataValue.url(mlflow.run_url(run_id)),
            "model_version": version,
            "rows_compared": dg.MetadataValue.int(min(len(current), drift.CURRENT_ROWS)),
            "recent_partitions": _recent(app_db.health(name)),
        }
        return _drift_result(passed, description, metadata, {"drifted_percent": round(100 * result.share, 1)})

    return [
        build_batch_predictions(config, partitions),
        build_ground_truth(config, partitions),
        model_performance,
        drift_report,
        build_shadow_comparison(config, partitions),
    ]


def _drift_result(passed: bool, description: str, metadata: dict, check_metadata: dict) -> dg.MaterializeResult:
    check = dg.AssetCheckResult(
        check_name="drift_share",
        passed=passed,
        description=description,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=check_metadata,
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def _recent(health: pd.DataFrame, count: int = 14) -> dg.MetadataValue:
    """The last partitions' monitoring at a glance: drift, and performance once their labels arrived."""
    columns = ["partition", "model_version", "drift_share", "metric", "metric_value", "labelled_rows", "degraded"]
    recent = health[columns].tail(count).assign(drift_share=lambda f: (100 * f["drift_share"]).round(1))
    return dg.MetadataValue.md(recent.rename(columns={"drift_share": "drifted %"}).to_markdown(index=False))


def _version(scored: pd.DataFrame) -> str:
    return str(scored["model_version"].iloc[0]) if len(scored) else ""


def _prediction_score(scored: pd.DataFrame) -> pd.Series:
    """The number whose drift we watch: the probability for classifiers, the prediction for regression."""
    return scored["probability"] if scored["probability"].notna().any() else scored["prediction"].astype(float)


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
