"""What runs by itself under the Dagster daemon, and the named jobs the sensors request.

Each closed period of a time-partitioned dataset is ingested by `ingest_schedule`, which also fills the periods it
missed (downtime, a daemon started later than the data) within `automation.catch_up_partitions`, oldest first (a
file source's files arrive through `source_files_sensor`). The assets that follow a new partition (`follows`) are
materialized by `monitoring_automation` once their upstream partition is in and its blocking checks passed.
Training and deploying stay with the retraining and champion alias sensors, as the `training` and `deploy` jobs;
labels that arrive late are read again by `late_labels_sensor`, as the `labels` job.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

from nexus_assets.partitions import partitioning
from nexus_core.config import NexusConfig
from nexus_core.names import (
    DEPLOY,
    DEPLOY_JOB,
    GATE,
    GATE_JOB,
    INGEST,
    INGEST_JOB,
    INGEST_SCHEDULE,
    LABELS,
    LABELS_JOB,
    MONITORING_AUTOMATION,
    PARTITION,
    RANGE_END,
    RANGE_START,
    REASON,
    TRAINING_CHAIN,
    TRAINING_JOB,
)

FOLLOWERS = ["features", "batch_predictions", "ground_truth", "model_performance", "drift_report", "shadow_comparison"]


def follows(config: NexusConfig) -> dg.AutomationCondition:
    """Dagster's `eager()` over the catch-up window rather than the newest partition alone (so the partitions the
    ingest schedule catches up on are monitored too), and only once the blocking checks upstream passed (`eager()`
    ignores failed checks: a partition whose data contract failed must stop here)."""
    partitions = partitioning(config)
    window = partitions.span(config.automation.catch_up_partitions + 1) if partitions.periods else None
    return (
        dg.AutomationCondition.in_latest_time_window(window)
        & (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("eager within the catch-up window, once blocking checks passed")


def automate(config: NexusConfig, assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """The assets, with `follows(config)` on the ones that follow a new partition."""
    condition = follows(config)
    return dg.map_asset_specs(
        lambda spec: (
            spec.replace_attributes(automation_condition=condition) if spec.key.path[-1] in FOLLOWERS else spec
        ),
        assets,
    )


FRESH = ["raw_data", "drift_report", "model_performance"]  # late when a period passes without them
GRACE = dt.timedelta(hours=6)


def expect_freshness(config: NexusConfig, assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """For time partitions, a freshness policy on the assets each new period must bring: warn a period (and some
    grace) after their last materialization, fail after two; the same window as the NexusMonitoringStale alert
    (docker/prometheus/alerts.yml), so the Dagster UI and the alerts agree."""
    partitions = partitioning(config)
    if not partitions.periods:
        return assets
    period = partitions.span(1)
    policy = dg.FreshnessPolicy.time_window(fail_window=2 * period + GRACE, warn_window=period + GRACE)
    return dg.map_asset_specs(
        lambda spec: spec.replace_attributes(freshness_policy=policy) if spec.key.path[-1] in FRESH else spec, assets
    )


def build_jobs(config: NexusConfig) -> dict[str, dg.UnresolvedAssetJobDefinition]:
    """The named jobs, keyed by their plain names (`INGEST_JOB`, ...); each job carries the dataset's scope."""
    name = config.model.registered_name
    jobs = {
        INGEST_JOB: (INGEST, "One partition of the source, read and checked."),
        TRAINING_JOB: (TRAINING_CHAIN, f"Candidates of {name} trained and judged at the gate."),
        LABELS_JOB: (LABELS, "One partition's labels read again and its performance judged."),
        DEPLOY_JOB: (DEPLOY, f"Package the champion of {name} and serve it."),
        GATE_JOB: (GATE, f"The promotion gate again, for the challenger of {name}."),
    }
    return {
        job: dg.define_asset_job(config.named(job), selection=_assets(config, assets), description=description)
        for job, (assets, description) in jobs.items()
    }


def _assets(config: NexusConfig, names: list[str]) -> dg.AssetSelection:
    return dg.AssetSelection.assets(*(config.asset(name) for name in names))


def build_schedules(config: NexusConfig, ingest: dg.UnresolvedAssetJobDefinition) -> list[dg.ScheduleDefinition]:
    """Each closed period ingested, for time partitions (files arrive through `source_files_sensor`)."""
    partitions = partitioning(config)
    if not partitions.periods:
        return []
    definition = partitions.definition()
    window = config.automation.catch_up_partitions
    raw_data = dg.AssetKey(config.asset("raw_data"))

    @dg.schedule(
        name=config.named(INGEST_SCHEDULE),
        cron_schedule=definition.get_cron_schedule(),
        execution_timezone=partitions.timezone,
        job=ingest,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Ingests each {partitions.cadence} partition of {config.dataset.name} once its period has "
        f"closed, and up to {window} missed before it (automation.catch_up_partitions), oldest first.",
    )
    def ingest_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        closed = definition.get_partition_keys(current_time=context.scheduled_execution_time)
        if not closed:
            return dg.SkipReason("no period of the range has closed yet")
        newest, due = closed[-1], _missing(context.instance, raw_data, ingest.name, closed[-1 - window :])
        if not due:
            return dg.SkipReason(f"every partition up to {newest} is ingested or being ingested")
        return [
            dg.RunRequest(
                run_key=key,
                partition_key=key,
                tags={REASON: "the newest closed period" if key == newest else f"missed: catching up to {newest}"},
            )
            for key in due
        ]

    return [ingest_schedule]


def _missing(instance: dg.DagsterInstance, raw_data: dg.AssetKey, job: str, keys: list[str]) -> list[str]:
    """The partitions of `keys` that `raw_data` has never materialized and no run (of one partition, or of a range
    as a single-run backfill) is materializing now."""
    done = instance.get_materialized_partitions(raw_data)
    running = [
        run
        for run in instance.get_runs(dg.RunsFilter(statuses=NOT_FINISHED_STATUSES))
        if run.job_name == job or raw_data in (run.asset_selection or ())
    ]
    spans = [
        (run.tags.get(RANGE_START, run.tags.get(PARTITION)), run.tags.get(RANGE_END, run.tags.get(PARTITION)))
        for run in running
    ]
    # Keys of time partitions have one fixed format: they sort as text.
    return [key for key in keys if key not in done and not any(a and b and a <= key <= b for a, b in spans)]


def build_automation_sensor(config: NexusConfig, interval: int | None = None) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        config.named(MONITORING_AUTOMATION),
        target=_assets(config, FOLLOWERS),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30 if interval is None else interval,
        description="Materializes features and monitoring for each new partition once its blocking checks passed.",
    )
