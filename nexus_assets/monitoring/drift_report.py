"""`drift_report`: each partition's features and prediction scores against the serving model's training sample,
judged column by column beyond what the training partitions themselves showed (Evidently, `drift.py`).

Each partition is one task (`current_sample`, in the run's process or on a Dask worker) that reads the day's
features and scores and returns a bounded sample of them, the same rows the test would sample; the run judges the
samples, so its memory does not grow with the days' size."""

import time
from dataclasses import dataclass
from functools import cached_property

import dagster as dg
import pandas as pd
from mlflow.entities import Metric

from nexus_assets.lib import reference as reference_sample
from nexus_assets.lib.metadata import table
from nexus_assets.lib.ranges import checked, partition_keys, written
from nexus_assets.monitoring import drift
from nexus_assets.monitoring.scoring import model_spec
from nexus_core import registry
from nexus_core.config import NexusConfig
from nexus_core.features import FeatureSpec, model_inputs
from nexus_resources.app_db import AppDatabase
from nexus_resources.compute import Compute
from nexus_resources.frame_io import ParquetIOManager, PartitionFiles
from nexus_resources.mlflow import MlflowResource
from nexus_resources.reports import ReportStore


def build_drift_report(config: NexusConfig, partitions: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    @dg.asset(
        key=config.asset("drift_report"),
        deps=[config.asset("features"), config.asset("batch_predictions")],
        group_name="monitoring",
        kinds={"evidently"},
        code_version="4",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            dg.AssetCheckSpec(
                "drift_share",
                asset=config.asset("drift_report"),
                partitions_def=partitions,
                description="The share of drifted columns stays under monitoring.drift_share_threshold.",
            )
        ],
    )
    def drift_report(
        context: dg.AssetExecutionContext,
        mlflow: MlflowResource,
        reports: ReportStore,
        app_db: AppDatabase,
        parquet_io_manager: dg.ResourceParam[ParquetIOManager],
        compute: Compute,
    ):
        """Evidently drift of a day's features and prediction scores against the champion's training sample."""
        keys, files = partition_keys(context), parquet_io_manager.files()
        judge = _DriftJudge(config, partitions, mlflow, reports, app_db)
        job = _Days(files, tuple(config.asset("features")), tuple(config.asset("batch_predictions")))
        metadata, results = {}, {}
        for key, day in compute.each(config, current_sample, keys, job, what="drift sample of partition"):
            metadata[key], check = judge.partition(key, day, newest=key == keys[-1])
            results[key] = [check]
        judge.log_points()
        yield written(context, {key: metadata[key] for key in keys})
        yield from checked(context, results)

    return drift_report


@dataclass(frozen=True)
class _Days:
    """Where a task finds a day's features and scores."""

    files: PartitionFiles
    features: tuple[str, ...]
    predictions: tuple[str, ...]


@dataclass(frozen=True)
class Day:
    """A partition as drift sees it: its rows, the version that scored it ("" if none), and a bounded sample of its
    features with the prediction score beside them."""

    rows: int
    version: str
    sample: pd.DataFrame


def current_sample(key: str | None, days: _Days) -> Day:
    """The partition's rows that drift compares: the same sample `drift.measure` would draw from all of them."""
    frame, scored = days.files.read(days.features, key), days.files.read(days.predictions, key)
    version = _version(scored)
    if version:
        frame = frame.assign(**{drift.PREDICTION: drift.prediction_score(scored).to_numpy()})
    return Day(len(frame), version, reference_sample.sample(frame, drift.CURRENT_ROWS))


class _DriftJudge:
    """Judges a run's partitions one by one, loading each model version's reference once, and logs the drift
    shares to each version's MLflow monitoring run at the partitions' own times."""

    def __init__(
        self,
        config: NexusConfig,
        partitions: dg.PartitionsDefinition | None,
        mlflow: MlflowResource,
        reports: ReportStore,
        app_db: AppDatabase,
    ) -> None:
        self.config, self.mlflow, self.reports, self.app_db = config, mlflow, reports, app_db
        self.periods = partitions if isinstance(partitions, dg.TimeWindowPartitionsDefinition) else None
        self.steps = {key: step for step, key in enumerate(partitions.get_partition_keys())} if self.periods else {}
        self.references = _References(config, mlflow)
        self.points: dict[str, list[Metric]] = {}  # drift shares to log, per monitoring run

    def partition(self, key: str, day: Day, newest: bool) -> tuple[dict, dg.AssetCheckResult]:
        """The partition's metadata and check: judged against the served version, or the trained one before any is
        served; not judged with too few rows or no model."""
        minimum, version = self.config.monitoring.min_drift_rows, day.version
        rows = {"rows_compared": dg.MetadataValue.int(day.rows)}
        if day.rows < minimum:
            why = (
                f"not judged: {day.rows} row(s) < monitoring.min_drift_rows={minimum}; longer partitions "
                "(dataset.partitions) give each one more rows"
            )
            return rows | {"model_version": version}, _drift_check(True, why, {"judged": False})
        if not (version or self.trained):
            why = "not judged: no model is trained yet, so there is no training data to compare with"
            return rows | {"model_version": ""}, _drift_check(True, why, {"judged": False})
        return self._judged(key, day, version or self.trained, served=bool(version), newest=newest)

    @cached_property
    def trained(self) -> str | None:
        """The version drift is measured against while none is served: the challenger, trained on the newest
        window (read when a partition first needs it)."""
        with self.mlflow.reporting_failures("read the registry"):
            return registry.aliases(self.mlflow.client(), self.config.model.registered_name).get(registry.CHALLENGER)

    def _judged(self, key: str, day: Day, version: str, served: bool, newest: bool) -> tuple[dict, dg.AssetCheckResult]:
        name, threshold = self.config.model.registered_name, self.config.monitoring.drift_share_threshold
        reference, spec, run_id, run_url, usual = self.references.of(version, key)
        current = model_inputs(day.sample, spec)
        if served:
            current[drift.PREDICTION] = day.sample[drift.PREDICTION].to_numpy()
        result = drift.measure(reference, current, spec, usual)
        passed = result.share <= threshold
        self.app_db.record_health(name, key, version, drift_share=result.share, drifted=not passed)
        description = f"{result.share:.0%} of columns drifted (threshold {threshold:.0%})" + (
            f": {', '.join(result.drifted)}" if result.drifted else ""
        )
        if not served:
            description += f" (against the training data of version {version}; no champion is served yet)"
        self._point(run_id, key, result.share)
        metadata = {
            # A percentage people read at a glance, and still a number Dagster plots over materializations.
            "drifted_percent": dg.MetadataValue.float(round(100 * result.share, 1)),
            "drifted_columns": dg.MetadataValue.text(", ".join(result.drifted) or "none"),
            "columns": table(result.columns),
            "mlflow_monitoring_run": dg.MetadataValue.url(run_url),
            "model_version": version,
            "rows_compared": dg.MetadataValue.int(min(day.rows, drift.CURRENT_ROWS)),
        }
        if newest:  # the report with its plots: every new partition's, and the newest of a backfill
            metadata |= self._report(key, run_id, reference, current, spec)
        check = _drift_check(passed, description, {"drifted_percent": round(100 * result.share, 1)})
        return metadata, check

    def _point(self, run_id: str, key: str, share: float) -> None:
        """One point per partition, at the partition's own time, so MLflow charts drift over the data's days."""
        window = self.periods.time_window_for_partition_key(key) if self.periods else None
        at = int(window.start.timestamp() * 1000) if window else int(time.time() * 1000)
        self.points.setdefault(run_id, []).append(Metric("drift_share", share, at, self.steps[key] if window else 0))

    def _report(self, key: str, run_id: str, reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec) -> dict:
        html = drift.report_html(reference, current, spec, self.config.monitoring.drift_share_threshold)
        where = self.reports.save("/".join([*self.config.prefix, "drift", f"{key}.html"]), html)
        with self.mlflow.reporting_failures(f"log the drift report of {key}"):
            self.mlflow.client().log_text(run_id, html, f"drift/{key}.html")
        return {
            "report": dg.MetadataValue.url(self.mlflow.artifact_url(run_id, f"drift/{key}.html")),
            "report_file": dg.MetadataValue.url(where) if where.startswith("s3://") else dg.MetadataValue.path(where),
            "recent_partitions": _recent(self.app_db.health(self.config.model.registered_name)),
        }

    def log_points(self) -> None:
        with self.mlflow.reporting_failures("log the drift shares"):
            for run_id, metrics in self.points.items():
                self.mlflow.client().log_batch(run_id, metrics=metrics)


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
    return table(recent.rename(columns={"drift_share": "drifted %"}), missing="not judged")


def _version(scored: pd.DataFrame) -> str:
    return str(scored["model_version"].iloc[0]) if len(scored) else ""
