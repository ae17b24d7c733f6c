"""The monitoring assets: `batch_predictions` (scoring.py) and `ground_truth` (labels.py) per partition, then
`model_performance`, each partition's stored predictions judged against its labels, and `drift_report`. Each runs
for one partition or a range of them (a backfill) in one step, judging every partition on its own."""

import functools
import time
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from nexus_assets.lib import reference as reference_sample
from nexus_assets.lib.ranges import by_partition, checked, output
from nexus_assets.monitoring import drift, performance
from nexus_assets.monitoring.labels import build_ground_truth
from nexus_assets.monitoring.scoring import build_batch_predictions, model_spec
from nexus_assets.monitoring.shadow import build_shadow_comparison
from nexus_assets.partitions import partitions_def
from nexus_assets.training.metrics import metrics_for
from nexus_core import registry
from nexus_core.config import NexusConfig
from nexus_core.features import FeatureSpec, model_inputs
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
        backfill_policy=dg.BackfillPolicy.single_run(),
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
            values[key] = table = judgement.table
            metadata[key] = {
                "dagster/row_count": dg.MetadataValue.int(len(joined)),
                "performance": dg.MetadataValue.md(
                    # "—" where a value is not known (the interval of a day that did not fall, an unjudged day)
                    table.astype(object)
                    .where(table.notna(), None)
                    .to_markdown(index=False, floatfmt=".4f", missingval="—")
                    if len(table)
                    else "no labelled predictions yet"
                ),
                "labels_without_prediction": dg.MetadataValue.int(unknown),
            }
            judged = table[table["degraded"].notna()]
            if len(judged):
                metadata[key][config.metric] = float(judged[config.metric].iloc[-1])
            for row in table.itertuples():
                app_db.record_health(
                    name,
                    key,
                    row.model_version,
                    metric=config.metric,
                    metric_value=float(getattr(row, config.metric)),
                    degraded=row.degraded,
                    labelled_rows=int(row.rows),
                )
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

    @dg.asset(
        group_name="monitoring",
        kinds={"evidently"},
        code_version="3",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
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
        features: Any,
        batch_predictions: Any,
        mlflow: MlflowResource,
        reports: ReportStore,
        app_db: AppDatabase,
    ):
        """Evidently drift of a day's features and prediction scores against the champion's training sample."""
        threshold, minimum = config.monitoring.drift_share_threshold, config.monitoring.min_drift_rows
        frames, scored = by_partition(context, features), by_partition(context, batch_predictions)
        newest, client = list(frames)[-1], mlflow.client()
        trained = _trained_version(mlflow, name) if not all(map(_version, scored.values())) else None
        references = _References(config, mlflow)
        steps = {key: step for step, key in enumerate(partitions.get_partition_keys())} if periods else {}
        points: dict[str, list[Metric]] = {}  # drift shares to log, per monitoring run
        values, metadata, results = {}, {}, {}
        for key, frame in frames.items():
            values[key], version = None, _version(scored[key])
            if len(frame) < minimum:
                description = (
                    f"not judged: {len(frame)} row(s) < monitoring.min_drift_rows={minimum}; longer partitions "
                    "(dataset.partitions) give each one more rows"
                )
                context.log.info(f"drift of {key} {description}")
                metadata[key] = {"rows_compared": dg.MetadataValue.int(len(frame)), "model_version": version}
                results[key] = [_drift_check(True, description, {"judged": False})]
                continue
            served = bool(version)
            version = version or trained
            if not version:
                description = "not judged: no model is trained yet, so there is no training data to compare with"
                metadata[key] = {"rows_compared": dg.MetadataValue.int(len(frame)), "model_version": ""}
                results[key] = [_drift_check(True, description, {"judged": False})]
                continue
            reference, spec, run_id, run_url, usual = references.of(version, key)
            current = model_inputs(frame, spec)
            if served:
                current[drift.PREDICTION] = drift.prediction_score(scored[key]).to_numpy()
            result = drift.measure(reference, current, spec, usual)
            passed = result.share <= threshold
            app_db.record_health(name, key, version, drift_share=result.share, drifted=not passed)
            description = f"{result.share:.0%} of columns drifted (threshold {threshold:.0%})" + (
                f": {', '.join(result.drifted)}" if result.drifted else ""
            )
            if not served:
                description += f" (against the training data of version {version}; no champion is served yet)"
            # One point per partition, at the partition's own time, so MLflow charts drift over the data's days.
            window = partitions.time_window_for_partition_key(key) if periods else None
            at = int(window.start.timestamp() * 1000) if window else int(time.time() * 1000)
            step = steps[key] if window else 0
            points.setdefault(run_id, []).append(Metric("drift_share", result.share, at, step))
            metadata[key] = {
                # A percentage people read at a glance, and still a number Dagster plots over materializations.
                "drifted_percent": dg.MetadataValue.float(round(100 * result.share, 1)),
                "drifted_columns": dg.MetadataValue.text(", ".join(result.drifted) or "none"),
                "columns": dg.MetadataValue.md(result.columns.to_markdown(index=False, floatfmt=".4f")),
                "mlflow_monitoring_run": dg.MetadataValue.url(run_url),
                "model_version": version,
                "rows_compared": dg.MetadataValue.int(min(len(current), drift.CURRENT_ROWS)),
            }
            if key == newest:  # the report with its plots: every new partition's, and the newest of a backfill
                html = drift.report_html(reference, current, spec, threshold)
                where = reports.save(f"drift/{key}.html", html)
                with mlflow.reporting_failures(f"log the drift report of {key}"):
                    client.log_text(run_id, html, f"drift/{key}.html")
                metadata[key] |= {
                    "report": dg.MetadataValue.url(mlflow.artifact_url(run_id, f"drift/{key}.html")),
                    "report_file": (
                        dg.MetadataValue.url(where) if where.startswith("s3://") else dg.MetadataValue.path(where)
                    ),
                    "recent_partitions": _recent(app_db.health(name)),
                }
            results[key] = [_drift_check(passed, description, {"drifted_percent": round(100 * result.share, 1)})]
        with mlflow.reporting_failures("log the drift shares"):
            for run_id, metrics in points.items():
                client.log_batch(run_id, metrics=metrics)
        yield output(context, values, metadata)
        yield from checked(context, results)

    return [
        build_batch_predictions(config, partitions),
        build_ground_truth(config, partitions),
        model_performance,
        drift_report,
        build_shadow_comparison(config, partitions),
    ]


def _drift_check(passed: bool, description: str, metadata: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="drift_share",
        passed=passed,
        description=description,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


class _References:
    """Each model version's reference sample (scored by the version itself), feature spec and MLflow monitoring
    run (its id and page), loaded once per run however many partitions it judges."""

    def __init__(self, config: NexusConfig, mlflow: MlflowResource) -> None:
        self.config, self.mlflow, self.loaded = config, mlflow, {}

    def of(self, version: str, key: str) -> tuple[pd.DataFrame, FeatureSpec, str, str, dict | None]:
        if version not in self.loaded:
            self.loaded[version] = self._load(version, key)
        return self.loaded[version]

    def _load(self, version: str, key: str) -> tuple[pd.DataFrame, FeatureSpec, str, str, dict | None]:
        name, client = self.config.model.registered_name, self.mlflow.client()
        with self.mlflow.reporting_failures(f"load the reference of version {version}"):
            reference, usual = reference_sample.load_reference(client, name, version)
            pipeline = registry.load_pipeline(f"models:/{name}/{version}")
        if reference.empty:
            raise dg.Failure(
                f"version {version} has no reference sample ({reference_sample.REFERENCE_ARTIFACT} missing or "
                "empty in its training run), so drift cannot be measured; retrain through the platform so the next "
                f"champion logs one. The predictions of {key} stay stored."
            )
        spec = model_spec(pipeline, name, version)
        # by position: a sampled reference keeps its rows' original index, the scores come numbered from 0
        run_id = self.mlflow.monitoring_run(self.config.dataset.name, name, version)
        return drift.scored(pipeline, reference, spec), spec, run_id, self.mlflow.run_url(run_id), usual


def _recent(health: pd.DataFrame, count: int = 14) -> dg.MetadataValue:
    """The last partitions' monitoring at a glance: drift, and performance once their labels arrived."""
    columns = ["partition", "model_version", "drift_share", "metric", "metric_value", "labelled_rows", "degraded"]
    recent = health[columns].tail(count).assign(drift_share=lambda f: (100 * f["drift_share"]).round(1))
    return dg.MetadataValue.md(recent.rename(columns={"drift_share": "drifted %"}).to_markdown(index=False))


def _trained_version(mlflow: MlflowResource, name: str) -> str | None:
    """The version drift is measured against while none is served: the challenger, trained on the newest window."""
    with mlflow.reporting_failures("read the registry"):
        return registry.aliases(mlflow.client(), name).get(registry.CHALLENGER)


def _version(scored: pd.DataFrame) -> str:
    return str(scored["model_version"].iloc[0]) if len(scored) else ""


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
